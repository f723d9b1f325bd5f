/**
 * `precise-prefix-cache-producer` (upstream `dataproducer/preciseprefixcache`): each endpoint's cached
 * prefix of the request as the servers themselves report it in their KV events, instead of the
 * approximate producer's guess from past routing. It owns a KV-cache indexer (`src/kvcache`): an
 * in-memory or Redis index fed by ZMQ — bound centrally (`kvEventsConfig.zmqEndpoint`) and/or dialled
 * per endpoint from discovery (`discoverPods`) — or a remote `llmd kv-indexer`. It writes the same
 * `PrefixCacheMatchInfo` the approximate producer writes, so `prefix-cache-scorer` consumes either.
 *
 * Token ids come from the `token-producer`; request keys are computed from them exactly as from the
 * events' tokens, so they match only when the ids are the model server's (the `vllm` render backend,
 * or `local` with the server's tokenizer). When the index cannot answer (Redis down, remote indexer
 * slow), or the ids are only estimated, the request is scored by an embedded approximate producer
 * that tracks every routing decision, so routing keeps its prefix affinity; the switch is logged
 * and counted, and precise scores return with the source.
 */
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { ConfigError } from '../../../core/errors.js';
import type { Logger } from '../../../core/log.js';
import {
  KvEventsConfigSchema,
  TokenProcessorConfigSchema,
  goDuration,
  resolveIndexerConfig,
  type KvEventsConfig,
  type ResolvedIndexerConfig,
} from '../../../kvcache/config.js';
import type { KvEventIngest } from '../../../kvcache/events/ingest.js';
import type { EventEndpoint } from '../../../kvcache/events/subscriber.js';
import type { PrefixScore } from '../../../kvcache/index/index.js';
import { KvCacheIndexer } from '../../../kvcache/indexer.js';
import type { KeyList, TokenProcessorConfig } from '../../../kvcache/keys.js';
import { LookupCounters, registerKvCacheMetrics, type LookupLatency } from '../../../kvcache/metrics.js';
import { RemoteIndexer } from '../../../kvcache/remote.js';
import { DataKey } from '../../framework/cycle-state.js';
import {
  PREFIX_CACHE_MATCH_INFO,
  TOKENIZED_REQUEST,
  type PrefixCacheMatchInfo,
} from '../../framework/data-keys.js';
import type { Endpoint, EndpointSource } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { DataConsumer, DataProducer, PreRequest } from '../../framework/requestcontrol.js';
import type { SchedulingResult } from '../../framework/scheduling.js';
import { ApproxPrefixCacheProducer, params as approxParams } from './approx-prefix-cache.js';
import { TokenProducer } from './token.js';

export const TYPE = 'precise-prefix-cache-producer';

/** Per-endpoint override of where its KV events are published (`tcp://host:port`), for discovery. */
export const KV_EVENTS_ENDPOINT_LABEL = 'llm-d.ai/kv-events-endpoint';
/** Upstream's P/D convention: the prefill profile is the one named so. */
const PREFILL_PROFILE = 'prefill';
/** How often the dialled set is compared with discovery (an identity check when nothing changed). */
const ENDPOINT_SYNC_MS = 250;

export const params = z
  .object({
    tokenProcessorConfig: z.unknown().optional(),
    indexerConfig: z.unknown().optional(),
    kvEventsConfig: z.unknown().optional(),
    speculativeIndexing: z.boolean().default(false),
    speculativeTTL: goDuration('speculativeTTL', true).default('2s'),
  })
  .strict()
  .transform((p, ctx) => {
    const part = <T>(field: string, parse: () => T): T => {
      try {
        return parse();
      } catch (err) {
        if (!(err instanceof z.ZodError)) throw err;
        for (const i of err.issues) ctx.addIssue({ ...i, path: [field, ...i.path] });
        return z.NEVER;
      }
    };
    return {
      tokenProcessor: part<TokenProcessorConfig>('tokenProcessorConfig', () =>
        TokenProcessorConfigSchema.parse(p.tokenProcessorConfig ?? {}),
      ),
      indexer: part<ResolvedIndexerConfig>('indexerConfig', () => resolveIndexerConfig(p.indexerConfig)),
      kvEvents: part<KvEventsConfig>('kvEventsConfig', () =>
        KvEventsConfigSchema.parse(p.kvEventsConfig ?? {}),
      ),
      speculativeTtlMs: p.speculativeIndexing ? p.speculativeTTL : 0,
    };
  });

export type PrecisePrefixCacheParams = z.output<typeof params>;

export const definition = definePlugin({
  type: TYPE,
  params,
  create: (name, p, handle) => new PrecisePrefixCacheProducer(name, p, handle),
});

/** What Produce leaves for PreRequest: the request keys, for speculative entries. */
interface KeyedRequest {
  readonly keys: readonly KeyList[];
  readonly prompts: readonly Uint32Array[];
  readonly model: string;
  readonly salt: string | undefined;
}

export class PrecisePrefixCacheProducer implements DataProducer, DataConsumer, PreRequest {
  readonly typedName: TypedName;
  readonly produces = [PREFIX_CACHE_MATCH_INFO];
  readonly consumes = [TOKENIZED_REQUEST];
  readonly lookups = new LookupCounters();
  /** Scores requests while the precise source cannot. */
  readonly fallback: ApproxPrefixCacheProducer;
  private readonly log: Logger;
  private readonly endpoints: EndpointSource;
  private readonly keyed: DataKey<KeyedRequest>;
  private indexer: KvCacheIndexer | null = null;
  private remote: RemoteIndexer | null = null;
  private ingest: KvEventIngest | null = null;
  private latency: LookupLatency | null = null;
  private syncTimer: NodeJS.Timeout | null = null;
  private syncedList: readonly Endpoint[] | null = null;
  private syncing: Promise<void> | null = null;
  private degraded: string | null = null;

  constructor(
    name: string,
    readonly p: PrecisePrefixCacheParams,
    private readonly handle: PluginHandle,
  ) {
    this.typedName = { type: TYPE, name };
    this.log = handle.logger.child({ plugin: name });
    this.endpoints = handle.endpoints;
    this.keyed = new DataKey<KeyedRequest>(`${TYPE}/${name}/keys`);
    this.fallback = new ApproxPrefixCacheProducer(
      `${name}/approximate`,
      approxParams.parse({ blockSizeTokens: p.tokenProcessor.blockSizeTokens }),
      handle,
    );
  }

  /** The token ids must be the model server's: an auto-added token-producer renders with it. */
  producerParams(key: DataKey<unknown>): Record<string, unknown> | undefined {
    return key.name === TOKENIZED_REQUEST.name ? { backend: 'vllm' } : undefined;
  }

  init(): void {
    for (const p of this.handle.plugins()) {
      if (p instanceof TokenProducer && p.backend === 'estimate') {
        throw new ConfigError(
          `plugin "${this.typedName.name}" (${TYPE}) needs real token ids, but token-producer "${p.typedName.name}" only estimates them: set its backend to vllm (or local, with the model server's tokenizer)`,
          'plugins',
        );
      }
    }
  }

  /** Opens the index (a Redis that is down is waited for briefly, then used when it answers) and the event sockets. */
  async open(): Promise<void> {
    const backend = this.p.indexer.backend;
    if (backend.kind === 'remote') {
      this.remote = new RemoteIndexer({ url: backend.url, timeoutMs: backend.timeoutMs });
      return;
    }
    this.indexer = await KvCacheIndexer.create({
      tokenProcessor: this.p.tokenProcessor,
      backend,
      weights: this.p.indexer.weights,
      speculativeTtlMs: this.p.speculativeTtlMs,
      logger: this.log,
      clock: this.handle.clock,
    });
    const ev = this.p.kvEvents;
    const { KvEventIngest } = await import('../../../kvcache/events/ingest.js');
    this.ingest = new KvEventIngest({
      index: this.indexer.index,
      tokenProcessor: this.indexer.tp,
      bindEndpoint: ev.zmqEndpoint === '' ? null : ev.zmqEndpoint,
      topicFilter: ev.topicFilter,
      dialect: ev.engineType,
      replayEndpointFor:
        ev.podDiscoveryConfig.replaySocketPort === 0 ? undefined : (server) => this.replayEndpointOf(server),
      logger: this.log,
    });
    await this.ingest.start();
    if (ev.discoverPods) {
      await this.syncEndpoints();
      this.syncTimer = setInterval(() => void this.syncEndpoints(), ENDPOINT_SYNC_MS);
      this.syncTimer.unref();
    }
    this.log.info(
      {
        backend: this.indexer.index.backend,
        zmq_endpoint: this.ingest.boundEndpoint,
        discover_pods: ev.discoverPods,
        block_size: this.p.tokenProcessor.blockSizeTokens,
      },
      'precise prefix-cache index ready',
    );
  }

  /** The central endpoint as bound, when there is one. */
  get boundEndpoint(): string | null {
    return this.ingest?.boundEndpoint ?? null;
  }

  /** The embedded indexer (null with a remote one). */
  get kvIndexer(): KvCacheIndexer | null {
    return this.indexer;
  }

  get eventIngest(): KvEventIngest | null {
    return this.ingest;
  }

  /** Registers the indexer's metrics (`kvcache_*` and `llm_d_epp_kv_cache_*`) on the EPP's registry. */
  registerMetrics(registry: Registry): void {
    const ingest = this.ingest;
    this.latency = registerKvCacheMetrics(registry, {
      ingest: ingest === null ? undefined : () => ingest.stats(),
      lookups: this.lookups,
      indexAvailable: () => this.sourceAvailable(),
      clientCache: () => this.indexer?.clientCacheStats() ?? null,
    });
  }

  async produce(req: InferenceRequest, endpoints: readonly Endpoint[]): Promise<void> {
    // The approximate index sees every request, so it is warm whenever it has to stand in.
    this.fallback.produce(req, endpoints);
    const tokenized = req.state.read(TOKENIZED_REQUEST);
    if (tokenized === undefined || tokenized.prompts.length === 0) return this.keepFallback(req);
    if (tokenized.backend === 'estimate') {
      this.degrade('token ids are estimated (the render server did not answer); using the approximate index');
      return this.keepFallback(req);
    }
    const t0 = performance.now();
    const model = req.targetModel;
    const salt =
      req.body.cacheSalt === undefined || req.body.cacheSalt === '' ? undefined : req.body.cacheSalt;
    let slots = 0;
    for (let i = 0; i < endpoints.length; i++) slots = Math.max(slots, endpoints[i]!.slot + 1);
    const matchBlocks = new Int32Array(slots);
    const keys: KeyList[] = [];
    let totalBlocks = 0;
    try {
      for (const prompt of tokenized.prompts) {
        let scores: Map<string, PrefixScore>;
        if (this.remote !== null) {
          scores = await this.remote.scoreTokens(prompt, model, salt);
          totalBlocks += Math.floor(prompt.length / this.p.tokenProcessor.blockSizeTokens);
        } else {
          const ix = this.indexer!;
          const k = ix.requestKeys(prompt, model, salt);
          keys.push(k);
          totalBlocks += k.length >>> 1;
          scores = await ix.score(k);
        }
        if (scores.size === 0) continue;
        for (let i = 0; i < endpoints.length; i++) {
          const ep = endpoints[i]!;
          const s = scores.get(ep.meta.hostPort) ?? scores.get(ep.meta.address);
          // Tier-weighted blocks: a block only in CPU memory counts 0.8 of one on the GPU.
          if (s !== undefined) matchBlocks[ep.slot] = matchBlocks[ep.slot]! + Math.floor(s.score + 1e-9);
        }
      }
    } catch (err) {
      this.lookups.failures++;
      this.lookups.fallbacks++;
      this.degrade(
        `the KV-cache index is unavailable (${(err as Error).message}); using the approximate index`,
      );
      return this.keepFallback(req);
    } finally {
      this.latency?.observe((performance.now() - t0) / 1000);
    }
    this.recover();
    this.lookups.lookups++;
    let best = 0;
    for (let i = 0; i < matchBlocks.length; i++) if (matchBlocks[i]! > best) best = matchBlocks[i]!;
    this.lookups.bestPrefixBlocks += best;
    const info: PrefixCacheMatchInfo = {
      totalBlocks,
      blockSizeTokens: this.p.tokenProcessor.blockSizeTokens,
      matchBlocks,
    };
    req.state.write(PREFIX_CACHE_MATCH_INFO, info);
    req.state.writeAs(PREFIX_CACHE_MATCH_INFO, this.typedName.name, info);
    if (this.p.speculativeTtlMs > 0) {
      req.state.write(this.keyed, { keys, prompts: tokenized.prompts, model, salt });
    }
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    this.fallback.preRequest(req, result);
    const keyed = req.state.read(this.keyed);
    if (keyed === undefined) return;
    const target = result.profileResults.get(result.primaryProfileName)?.targetEndpoints[0];
    if (target === undefined) return;
    this.speculate(keyed, target.meta.hostPort);
    const prefill = result.profileResults.get(PREFILL_PROFILE)?.targetEndpoints[0];
    if (prefill !== undefined && prefill.meta.hostPort !== target.meta.hostPort) {
      this.speculate(keyed, prefill.meta.hostPort);
    }
  }

  async close(): Promise<void> {
    if (this.syncTimer !== null) clearInterval(this.syncTimer);
    this.syncTimer = null;
    await this.syncing;
    await this.ingest?.close();
    await this.indexer?.close();
  }

  private speculate(keyed: KeyedRequest, pod: string): void {
    if (this.remote !== null) {
      for (const prompt of keyed.prompts) this.remote.speculative(prompt, keyed.model, keyed.salt, pod);
      return;
    }
    const spec = this.indexer?.speculative;
    if (spec === null || spec === undefined) return;
    for (const k of keyed.keys) spec.add(k, pod);
  }

  /** The approximate producer's info stands, under this plugin's name too. */
  private keepFallback(req: InferenceRequest): void {
    const info = req.state.read(PREFIX_CACHE_MATCH_INFO);
    if (info !== undefined) req.state.writeAs(PREFIX_CACHE_MATCH_INFO, this.typedName.name, info);
  }

  private sourceAvailable(): boolean {
    if (this.remote !== null) return this.remote.available;
    const index = this.indexer?.index as { available?: boolean } | undefined;
    return index?.available ?? true;
  }

  private degrade(why: string): void {
    if (this.degraded === why) return;
    this.degraded = why;
    this.log.warn(why);
  }

  private recover(): void {
    if (this.degraded === null) return;
    this.log.info({ was: this.degraded }, 'precise prefix-cache scores are back');
    this.degraded = null;
  }

  private eventEndpointOf(ep: Endpoint): string {
    return (
      ep.meta.labels[KV_EVENTS_ENDPOINT_LABEL] ??
      `tcp://${ep.meta.address}:${this.p.kvEvents.podDiscoveryConfig.socketPort}`
    );
  }

  private replayEndpointOf(server: string): string | null {
    const port = this.p.kvEvents.podDiscoveryConfig.replaySocketPort;
    if (port === 0) return null;
    const ep = this.endpoints.list().find((e) => e.meta.hostPort === server || e.meta.address === server);
    let host = ep?.meta.address;
    if (host === undefined) {
      const colon = server.lastIndexOf(':');
      host = colon > 0 && !server.endsWith(']') ? server.slice(0, colon) : server;
    }
    return `tcp://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  }

  /** Dials each discovered endpoint's publisher; one that leaves is unsubscribed and cleared. */
  private syncEndpoints(): Promise<void> {
    const list = this.endpoints.list();
    if (list === this.syncedList || this.ingest === null) return Promise.resolve();
    if (this.syncing !== null) return this.syncing;
    this.syncedList = list;
    const want: EventEndpoint[] = list.map((ep) => ({
      id: ep.meta.hostPort,
      endpoint: this.eventEndpointOf(ep),
      replayEndpoint: this.replayEndpointOf(ep.meta.hostPort),
    }));
    this.syncing = this.ingest
      .setEndpoints(want)
      .catch((err: unknown) => {
        this.syncedList = null;
        this.log.warn({ err }, 'cannot subscribe to the endpoints’ KV events; retrying');
      })
      .finally(() => {
        this.syncing = null;
      });
    return this.syncing;
  }
}
