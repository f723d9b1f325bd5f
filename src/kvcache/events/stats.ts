/**
 * The write path's counters: plain numbers, bumped in place on the hot path (no labels, no metric
 * objects), read as a snapshot by whoever exports them. The metrics module maps them to Prometheus as
 * below: llm-d-router's names (`llm_d_epp_` subsystem, spec/kvcache.md §5), with the deprecated
 * `kvcache_kvevents_*` aliases where the router still dual-emits one; `llmd_` names are ours (the
 * router has no counter for them).
 *
 * | field                         | Prometheus                                                                     | labels / notes                        |
 * |-------------------------------|--------------------------------------------------------------------------------|---------------------------------------|
 * | messagesReceived              | llm_d_epp_kv_cache_events_messages_received_total                              | router labels by pod_identifier       |
 * | messagesMalformed             | llmd_kv_cache_events_messages_malformed_total                                  | not 3 frames / seq frame not 8 bytes  |
 * | zmqErrors                     | llm_d_epp_kv_cache_events_zmq_errors_total                                     | operation: bind/connect/recv/replay-* |
 * | reconnections                 | llm_d_epp_kv_cache_events_subscriber_reconnections_total                       |                                       |
 * | activeSubscribers (gauge)     | llm_d_epp_kv_cache_events_active_subscribers                                   |                                       |
 * | queueDepth (gauge)            | llm_d_epp_kv_cache_events_pool_queue_depth                                     |                                       |
 * | queueCapacity (gauge)         | llm_d_epp_kv_cache_events_pool_capacity                                        | ours: messages per server, not shards |
 * | messagesDropped               | llmd_kv_cache_events_messages_dropped_total                                    | reason: queue_full, too_many_servers  |
 * | topicsUnparsed                | llmd_kv_cache_events_topic_unparsed_total                                      | topic not kv@<pod>@<model>            |
 * | duplicates                    | llmd_kv_cache_events_duplicates_total                                          |                                       |
 * | gaps / missedSequences        | llmd_kv_cache_events_sequence_gaps_total / _missed_sequences_total             |                                       |
 * | resets                        | llmd_kv_cache_events_sequence_resets_total                                     | engine restarts, rebuilds             |
 * | replaysActive (gauge)         | llm_d_epp_kv_cache_events_replay_active                                        | router: per pod_identifier            |
 * | replaysCompleted              | llm_d_epp_kv_cache_events_replay_completed_total                               |                                       |
 * | replaysFailed                 | llm_d_epp_kv_cache_events_replay_failures_total                                |                                       |
 * | replayedMessages              | llm_d_epp_kv_cache_events_replay_processed_total                               |                                       |
 * | batches                       | llmd_kv_cache_events_batches_total                                             |                                       |
 * | batchesMalformed              | llmd_kv_cache_events_batches_malformed_total                                   | reason: msgpack/schema/too-large      |
 * | eventsMalformed               | llmd_kv_cache_events_events_malformed_total                                    | reason: schema/unknown-tag/msgpack    |
 * | events.{stored,removed,cleared} | llmd_kv_cache_events_events_total                                           | type                                  |
 * | blocksStored / blocksRemoved  | kvcache_index_admissions_total / kvcache_index_evictions_total (and llm_d_epp_kv_cache_index_*) | engine blocks |
 * | storesSkipped.<reason>        | llm_d_epp_kv_cache_events_stores_skipped_total                                 | reason (+ cache_kind in the router)   |
 * | removalsSkipped.<reason>      | llm_d_epp_kv_cache_events_removals_skipped_total                               | reason                                |
 * | dedupForwarded                | llm_d_epp_kv_cache_events_dedup_removed_hashes_forwarded_total                 | alias kvcache_kvevents_dedup_removed_hashes_forwarded_total |
 * | dedupSuppressed               | llm_d_epp_kv_cache_events_dedup_removed_hashes_suppressed_total                | alias kvcache_kvevents_dedup_removed_hashes_suppressed_total |
 * | applyErrors                   | llmd_kv_cache_events_apply_errors_total                                        | an index call failed                  |
 */

/** Why a `BlockStored` was not indexed (label values of `stores_skipped_total{reason}`). */
export interface StoresSkipped {
  /** Its parent's engine hash is not in the index: the chain cannot continue (llm-d skips it too). */
  parent_unknown: number;
  /** An HMA group of a kind that is not prefix-indexable (sliding window, mamba, …). */
  unsupported_cache_kind: number;
  /** HMA: the tokens do not span exactly the announced blocks. */
  non_dense_block_span: number;
  /** Fewer tokens than one indexer block: no request key. */
  no_full_block: number;
  /** A tokenless tier update none of whose hashes is indexed. */
  unknown_engine_keys: number;
}

/** Why a `BlockRemoved` was not applied. */
export interface RemovalsSkipped {
  unknown_group: number;
  unsupported_cache_kind: number;
}

export class IngestCounters {
  // Subscriber.
  messagesReceived = 0;
  messagesMalformed = 0;
  zmqErrors = 0;
  reconnections = 0;
  // Pool: servers, queues and sequences.
  messagesDropped = 0;
  serversRejected = 0;
  topicsUnparsed = 0;
  duplicates = 0;
  gaps = 0;
  missedSequences = 0;
  resets = 0;
  // Replay.
  replaysStarted = 0;
  replaysCompleted = 0;
  replaysFailed = 0;
  replayedMessages = 0;
  // Decoding.
  batches = 0;
  batchesMalformed = 0;
  eventsMalformed = 0;
  // Applying.
  eventsStored = 0;
  eventsRemoved = 0;
  eventsCleared = 0;
  blocksStored = 0;
  blocksRemoved = 0;
  tierUpdates = 0;
  readonly storesSkipped: StoresSkipped = {
    parent_unknown: 0,
    unsupported_cache_kind: 0,
    non_dense_block_span: 0,
    no_full_block: 0,
    unknown_engine_keys: 0,
  };
  readonly removalsSkipped: RemovalsSkipped = { unknown_group: 0, unsupported_cache_kind: 0 };
  dedupForwarded = 0;
  dedupSuppressed = 0;
  applyErrors = 0;
}

/** A point-in-time copy, with the gauges. */
export interface IngestStats extends Omit<IngestCounters, 'storesSkipped' | 'removalsSkipped'> {
  readonly storesSkipped: Readonly<StoresSkipped>;
  readonly removalsSkipped: Readonly<RemovalsSkipped>;
  readonly queueDepth: number;
  readonly queueCapacity: number;
  readonly servers: number;
  readonly activeSubscribers: number;
  readonly replaysActive: number;
}

export function snapshotCounters(
  c: IngestCounters,
): Omit<IngestStats, 'queueDepth' | 'queueCapacity' | 'servers' | 'activeSubscribers' | 'replaysActive'> {
  return { ...c, storesSkipped: { ...c.storesSkipped }, removalsSkipped: { ...c.removalsSkipped } };
}
