/**
 * The KV-cache indexer's read side (llm-d's `kvcache.Indexer`): token ids → request keys → the index's
 * longest-prefix score per server, plus speculative entries for just-routed requests. It owns the
 * index (in memory, or Redis) and the token processor; the write side (KV events) feeds the same
 * index. Used embedded by the EPP's precise-prefix-cache producer and by `llmd kv-indexer`.
 */
import type { FieldCacheStats } from './index/redis-field-cache.js';
import type { RedisIndex } from './index/redis.js';
import type { Logger } from '../core/log.js';
import type { IndexBackendConfig } from './config.js';
import type { KvBlockIndex, PrefixScore, TierWeights } from './index/index.js';
import { MemoryIndex } from './index/memory.js';
import { requestExtras } from './events/extra-keys.js';
import { TokenProcessor, type KeyList, type TokenProcessorConfig } from './keys.js';
import { SpeculativeIndexer } from './speculative.js';

export interface KvCacheIndexerOptions {
  readonly tokenProcessor: TokenProcessorConfig;
  /** Memory or Redis; `remote` backends are served by `RemoteIndexer`, not here. */
  readonly backend: Exclude<IndexBackendConfig, { kind: 'remote' }>;
  readonly weights: TierWeights;
  /** Speculative entries' lifetime; 0 turns speculative indexing off. */
  readonly speculativeTtlMs?: number;
  readonly logger: Logger;
  /** How long a start waits for Redis to answer before going on without it. */
  readonly redisStartupWaitMs?: number;
  /** Monotonic milliseconds. */
  readonly clock?: () => number;
}

export class KvCacheIndexer {
  readonly tp: TokenProcessor;
  readonly weights: TierWeights;
  readonly speculative: SpeculativeIndexer | null;

  private constructor(
    readonly index: KvBlockIndex,
    o: KvCacheIndexerOptions,
  ) {
    this.tp = new TokenProcessor(o.tokenProcessor);
    this.weights = o.weights;
    const ttl = o.speculativeTtlMs ?? 0;
    this.speculative =
      ttl > 0 ? new SpeculativeIndexer(index, ttl, o.clock ?? (() => performance.now()), o.logger) : null;
  }

  static async create(o: KvCacheIndexerOptions): Promise<KvCacheIndexer> {
    let index: KvBlockIndex;
    if (o.backend.kind === 'memory') {
      index = new MemoryIndex({ maxKeys: o.backend.maxKeys, podCacheSize: o.backend.podCacheSize });
    } else {
      // Only deployments that name Redis load its client. A Redis that is down does not stop the
      // start: calls fail with KvIndexUnavailableError (callers fall back) until it answers.
      const { RedisIndex } = await import('./index/redis.js');
      const redis = new RedisIndex({ address: o.backend.address, logger: o.logger });
      await redis.whenAvailable(o.redisStartupWaitMs ?? 5000).catch((err: unknown) => {
        o.logger.warn(
          { err: err instanceof Error ? err.message : String(err), address: redis.address.display },
          'redis is not answering yet; prefix scores are unavailable until it does',
        );
      });
      index = redis;
    }
    return new KvCacheIndexer(index, o);
  }

  /** The Redis index's client-side cache counters; null for the memory index or with the cache off. */
  clientCacheStats(): FieldCacheStats | null {
    const index = this.index as Partial<Pick<RedisIndex, 'clientCacheStats'>>;
    return typeof index.clientCacheStats === 'function' ? index.clientCacheStats() : null;
  }

  /** Request keys of a prompt's full blocks for `model`, with the cache salt folded in. */
  requestKeys(tokens: ArrayLike<number>, model: string, cacheSalt?: string | null): KeyList {
    return this.tp.keys(tokens, model, null, requestExtras(cacheSalt, this.tp.blocksIn(tokens.length)));
  }

  /** Each server's cached prefix of the prompt: tier-weighted score and block count. */
  score(
    keys: KeyList,
    pods?: ReadonlySet<string>,
  ): Map<string, PrefixScore> | Promise<Map<string, PrefixScore>> {
    return this.index.score(keys, this.weights, pods);
  }

  scoreTokens(
    tokens: ArrayLike<number>,
    model: string,
    opts: { cacheSalt?: string | null; pods?: ReadonlySet<string> } = {},
  ): Map<string, PrefixScore> | Promise<Map<string, PrefixScore>> {
    return this.score(this.requestKeys(tokens, model, opts.cacheSalt), opts.pods);
  }

  async close(): Promise<void> {
    this.speculative?.close();
    await this.index.close();
  }
}
