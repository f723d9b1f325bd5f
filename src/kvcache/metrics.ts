/**
 * The KV-cache indexer's Prometheus metrics, as llm-d-router names them (`pkg/kvcache/metrics`): the
 * index's admissions, evictions and lookups under `llm_d_epp_kv_cache_index_*` with the deprecated
 * `kvcache_index_*` names emitted alongside, and the event pipeline's counters under
 * `llm_d_epp_kv_cache_events_*` (`llmd_kv_cache_*` where the router has no counter). The write path
 * keeps plain numbers (`events/stats.ts`); they are read when the page is scraped, so the hot path
 * never touches a metric object. Shared by `llmd kv-indexer` and the EPP's precise producer.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { IngestStats } from './events/stats.js';
import type { FieldCacheStats } from './index/redis-field-cache.js';

/** What the read path counts. */
export class LookupCounters {
  lookups = 0;
  /** Σ over lookups of the longest prefix any server holds, in blocks. */
  bestPrefixBlocks = 0;
  /** Lookups that failed (the index was unavailable). */
  failures = 0;
  /** Lookups answered by the approximate fallback instead. */
  fallbacks = 0;
}

export interface KvCacheMetricsSources {
  readonly ingest?: () => IngestStats;
  readonly lookups?: LookupCounters;
  /** Whether the index answers (Redis up); absent = always. */
  readonly indexAvailable?: () => boolean;
  /** Request keys held, when the backend knows cheaply. */
  readonly indexSize?: () => number | null;
  /** The Redis index's client-side cache counters (null: not a Redis index, or the cache is off). */
  readonly clientCache?: () => FieldCacheStats | null;
}

const LATENCY_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/** The lookup latency histograms (current and deprecated name); observe both through `observe`. */
export interface LookupLatency {
  observe(seconds: number): void;
}

type Read = (s: IngestStats) => number;

/** Registers every metric on `registry`; returns the latency observer for the read path. */
export function registerKvCacheMetrics(registry: Registry, src: KvCacheMetricsSources): LookupLatency {
  const counter = (names: readonly string[], help: string, read: () => number | undefined): void => {
    for (const name of names) {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          const v = read();
          this.reset();
          if (v !== undefined && v > 0) this.inc(v);
        },
      });
    }
  };
  const gauge = (name: string, help: string, read: () => number | undefined): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const v = read();
        if (v !== undefined) this.set(v);
      },
    });
  };
  const fromIngest = (r: Read) => () => (src.ingest === undefined ? undefined : r(src.ingest()));

  counter(
    ['llm_d_epp_kv_cache_index_admissions_total', 'kvcache_index_admissions_total'],
    'Total number of KV-block admissions',
    fromIngest((s) => s.blocksStored),
  );
  counter(
    ['llm_d_epp_kv_cache_index_evictions_total', 'kvcache_index_evictions_total'],
    'Total number of KV-block evictions',
    fromIngest((s) => s.blocksRemoved),
  );
  const l = src.lookups;
  counter(
    ['llm_d_epp_kv_cache_index_lookup_requests_total', 'kvcache_index_lookup_requests_total'],
    'Total number of lookup calls',
    () => l?.lookups,
  );
  counter(
    ['llm_d_epp_kv_cache_index_lookup_hits_total', 'kvcache_index_lookup_hits_total'],
    'Contiguous prefix blocks matched by the best pod per lookup',
    () => l?.bestPrefixBlocks,
  );
  counter(
    ['llm_d_epp_kv_cache_index_max_pod_hit_count_total', 'kvcache_index_max_pod_hit_count_total'],
    'Longest contiguous per-pod prefix chain observed per lookup',
    () => l?.bestPrefixBlocks,
  );
  counter(
    ['llmd_kv_cache_index_lookup_failures_total'],
    'Lookups that failed because the index was unavailable',
    () => l?.failures,
  );
  counter(
    ['llmd_kv_cache_index_lookup_fallbacks_total'],
    'Lookups answered by the approximate prefix index because the precise index was unavailable',
    () => l?.fallbacks,
  );
  if (src.indexAvailable !== undefined) {
    const up = src.indexAvailable;
    gauge(
      'llmd_kv_cache_index_available',
      '1 while the KV-block index answers (Redis reachable), else 0',
      () => (up() ? 1 : 0),
    );
  }
  if (src.indexSize !== undefined) {
    const size = src.indexSize;
    gauge(
      'llmd_kv_cache_index_request_keys',
      'Request keys held by the KV-block index',
      () => size() ?? undefined,
    );
  }
  if (src.clientCache !== undefined) {
    const cc = src.clientCache;
    counter(
      ['llmd_kv_cache_index_client_cache_hits_total'],
      'Request keys a Redis score read from the client-side cache',
      () => cc()?.hits,
    );
    counter(
      ['llmd_kv_cache_index_client_cache_misses_total'],
      'Redis scores the client-side cache could not answer (read from Redis, then cached)',
      () => cc()?.misses,
    );
    counter(
      ['llmd_kv_cache_index_client_cache_invalidations_total'],
      'Cached request keys dropped because Redis reported a change',
      () => cc()?.invalidations,
    );
    counter(
      ['llmd_kv_cache_index_client_cache_flushes_total'],
      'Times the client-side cache was emptied (tracking connection lost, FLUSHALL, a pod cleared)',
      () => cc()?.flushes,
    );
    gauge(
      'llmd_kv_cache_index_client_cache_keys',
      'Request keys held by the Redis index client-side cache',
      () => cc()?.size,
    );
  }
  const hists = [
    'llm_d_epp_kv_cache_index_lookup_latency_seconds',
    'kvcache_index_lookup_latency_seconds',
  ].map(
    (name) =>
      new Histogram({
        name,
        help: 'Duration of lookups in seconds',
        buckets: LATENCY_BUCKETS,
        registers: [registry],
      }),
  );

  if (src.ingest !== undefined) {
    const e = (names: string | readonly string[], help: string, r: Read): void =>
      counter(typeof names === 'string' ? [names] : names, help, fromIngest(r));
    e(
      'llm_d_epp_kv_cache_events_messages_received_total',
      'Total number of messages received from ZMQ subscribers',
      (s) => s.messagesReceived,
    );
    e(
      'llm_d_epp_kv_cache_events_zmq_errors_total',
      'Total number of ZMQ subscriber errors',
      (s) => s.zmqErrors,
    );
    e(
      'llm_d_epp_kv_cache_events_subscriber_reconnections_total',
      'Total number of ZMQ subscriber reconnection attempts',
      (s) => s.reconnections,
    );
    e(
      'llm_d_epp_kv_cache_events_replay_completed_total',
      'Replays from a server’s replay endpoint that completed',
      (s) => s.replaysCompleted,
    );
    e(
      'llm_d_epp_kv_cache_events_replay_failures_total',
      'Replays that failed or timed out',
      (s) => s.replaysFailed,
    );
    e(
      'llm_d_epp_kv_cache_events_replay_processed_total',
      'Messages received by replay',
      (s) => s.replayedMessages,
    );
    e(
      [
        'llm_d_epp_kv_cache_events_dedup_removed_hashes_forwarded_total',
        'kvcache_kvevents_dedup_removed_hashes_forwarded_total',
      ],
      'Block hashes forwarded for eviction after the KV-event dedup filter',
      (s) => s.dedupForwarded,
    );
    e(
      [
        'llm_d_epp_kv_cache_events_dedup_removed_hashes_suppressed_total',
        'kvcache_kvevents_dedup_removed_hashes_suppressed_total',
      ],
      'Block hashes whose removal was suppressed by the KV-event dedup filter',
      (s) => s.dedupSuppressed,
    );
    e(
      'llmd_kv_cache_events_messages_malformed_total',
      'Messages that were not three frames with an 8-byte sequence',
      (s) => s.messagesMalformed,
    );
    e(
      'llmd_kv_cache_events_messages_dropped_total',
      'Messages dropped because a server’s queue was full',
      (s) => s.messagesDropped,
    );
    e(
      'llmd_kv_cache_events_topic_unparsed_total',
      'Messages whose topic is not kv@<server>@<model>',
      (s) => s.topicsUnparsed,
    );
    e(
      'llmd_kv_cache_events_duplicates_total',
      'Messages dropped as already seen (sequence not new)',
      (s) => s.duplicates,
    );
    e('llmd_kv_cache_events_sequence_gaps_total', 'Gaps in a server’s sequence numbers', (s) => s.gaps);
    e(
      'llmd_kv_cache_events_missed_sequences_total',
      'Sequence numbers missed in gaps',
      (s) => s.missedSequences,
    );
    e(
      'llmd_kv_cache_events_sequence_resets_total',
      'Sequence resets (a server restarted): its entries were rebuilt',
      (s) => s.resets,
    );
    e('llmd_kv_cache_events_batches_total', 'Event batches decoded', (s) => s.batches);
    e(
      'llmd_kv_cache_events_batches_malformed_total',
      'Event batches that could not be decoded at all',
      (s) => s.batchesMalformed,
    );
    e(
      'llmd_kv_cache_events_events_malformed_total',
      'Events skipped as malformed (the rest of their batch was applied)',
      (s) => s.eventsMalformed,
    );
    e(
      'llmd_kv_cache_events_apply_errors_total',
      'Index updates that failed (the index was unavailable)',
      (s) => s.applyErrors,
    );
    const ingest = src.ingest;
    new Counter({
      name: 'llmd_kv_cache_events_events_total',
      help: 'Events applied, by type',
      labelNames: ['type'],
      registers: [registry],
      collect() {
        const s = ingest();
        this.reset();
        this.inc({ type: 'BlockStored' }, s.eventsStored);
        this.inc({ type: 'BlockRemoved' }, s.eventsRemoved);
        this.inc({ type: 'AllBlocksCleared' }, s.eventsCleared);
      },
    });
    new Counter({
      name: 'llm_d_epp_kv_cache_events_stores_skipped_total',
      help: 'Total number of KV-cache store events skipped before prefix indexing',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        const s = ingest();
        this.reset();
        for (const [reason, n] of Object.entries(s.storesSkipped)) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: 'llm_d_epp_kv_cache_events_removals_skipped_total',
      help: 'Total number of KV-cache removal events skipped for groups excluded from prefix indexing',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        const s = ingest();
        this.reset();
        for (const [reason, n] of Object.entries(s.removalsSkipped)) this.inc({ reason }, n);
      },
    });
    gauge(
      'llm_d_epp_kv_cache_events_active_subscribers',
      'Number of ZMQ subscribers currently managed',
      fromIngest((s) => s.activeSubscribers),
    );
    gauge(
      'llm_d_epp_kv_cache_events_pool_queue_depth',
      'Messages queued across all servers',
      fromIngest((s) => s.queueDepth),
    );
    gauge(
      'llm_d_epp_kv_cache_events_pool_capacity',
      'Messages a server’s queue holds',
      fromIngest((s) => s.queueCapacity),
    );
    gauge(
      'llm_d_epp_kv_cache_events_replay_active',
      'Replays in progress',
      fromIngest((s) => s.replaysActive),
    );
    gauge(
      'llmd_kv_cache_events_servers',
      'Servers whose events are being indexed',
      fromIngest((s) => s.servers),
    );
  }

  return {
    observe(seconds: number) {
      for (const h of hists) h.observe(seconds);
    },
  };
}
