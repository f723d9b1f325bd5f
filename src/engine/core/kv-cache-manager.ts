/**
 * Per-request KV block bookkeeping for a single full-attention group, as vLLM v1's `KVCacheManager` with
 * its `FullAttentionManager` (`vllm/v1/core/kv_cache_manager.py`, `single_type_kv_cache_manager.py`):
 * prefix-cache lookup, slot allocation for the tokens of a step, caching of full blocks, and freeing.
 */
import { BlockPool, type KvBlock } from './block-pool.js';
import type { EngineRequest } from './request.js';

export interface KvCacheManagerConfig {
  readonly blockSize: number;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  readonly enablePrefixCaching: boolean;
  readonly enableKvEvents: boolean;
}

export class KvCacheManager {
  readonly pool: BlockPool;
  readonly blockSize: number;
  readonly enableCaching: boolean;
  private readonly maxModelLen: number;
  /** Prompt tokens looked up and found in the prefix cache, as vLLM's `prefix_cache_queries/hits`. */
  prefixCacheQueries = 0;
  prefixCacheHits = 0;
  /**
   * The blocks found by the last `getComputedBlocks`; valid until the next call. Reused so that a lookup
   * allocates nothing.
   */
  readonly computedBlocks: KvBlock[] = [];

  constructor(config: KvCacheManagerConfig) {
    this.blockSize = config.blockSize;
    this.maxModelLen = config.maxModelLen;
    this.enableCaching = config.enablePrefixCaching;
    this.pool = new BlockPool(config.numGpuBlocks, config.enablePrefixCaching, config.enableKvEvents);
  }

  get usage(): number {
    return this.pool.usage;
  }

  /**
   * The longest run of cached full blocks at the start of the request, into `computedBlocks`; returns the
   * number of tokens they hold. The hit stops one token short of the whole sequence, because the last token
   * must be computed to sample the next one. Lookups of requests that were preempted are not counted, as in
   * vLLM's `PrefixCacheStats.record`.
   */
  getComputedBlocks(request: EngineRequest): number {
    const out = this.computedBlocks;
    out.length = 0;
    if (!this.enableCaching) return 0;
    const maxBlocks = Math.floor((request.numTokens - 1) / this.blockSize);
    const hashes = request.blockHashes;
    const n = Math.min(maxBlocks, hashes.length);
    for (let i = 0; i < n; i++) {
      const block = this.pool.getCachedBlock(hashes[i]!);
      if (block === undefined) break;
      out.push(block);
    }
    const hitTokens = out.length * this.blockSize;
    if (request.numPreemptions === 0) {
      this.prefixCacheQueries += request.numTokens;
      this.prefixCacheHits += hitTokens;
    }
    return hitTokens;
  }

  /**
   * Gives the request slots for `numNewTokens` more tokens, after adopting `numNewComputedTokens` tokens
   * of prefix-cache hits from `computedBlocks` (new requests only). Returns false, changing nothing, when
   * the pool has too few free blocks. With caching on, the full blocks covered by this step are registered
   * right away, as vLLM does, so a request scheduled later in the same step can hit them.
   */
  allocateSlots(request: EngineRequest, numNewTokens: number, numNewComputedTokens = 0): boolean {
    const bs = this.blockSize;
    const pool = this.pool;
    const blocks = request.blocks;
    const numNewComputedBlocks = numNewComputedTokens > 0 ? numNewComputedTokens / bs : 0;
    const numComputedTokens = request.numComputedTokens + numNewComputedTokens;
    const numTokensNeedSlot = Math.min(numComputedTokens + numNewTokens, this.maxModelLen);
    const numRequired = Math.ceil(numTokensNeedSlot / bs);
    const numNewBlocks = numRequired - numNewComputedBlocks - blocks.length;

    if (numNewComputedBlocks > 0 || numNewBlocks > 0) {
      const computed = this.computedBlocks;
      let numEvictableComputed = 0;
      for (let i = 0; i < numNewComputedBlocks; i++) {
        const b = computed[i] as KvBlock;
        if (b.refCnt === 0 && !b.isNull) numEvictableComputed++;
      }
      if (Math.max(0, numNewBlocks) + numEvictableComputed > pool.numFreeBlocks) return false;
      if (numNewComputedBlocks > 0) {
        if (blocks.length !== 0) throw new Error(`request ${request.requestId} already holds blocks`);
        pool.touch(computed, numNewComputedBlocks);
        for (let i = 0; i < numNewComputedBlocks; i++) blocks.push(computed[i] as KvBlock);
        request.numCachedBlocks = numNewComputedBlocks;
      }
      if (numNewBlocks > 0) pool.getNewBlocks(numNewBlocks, blocks);
    }

    if (this.enableCaching)
      this.cacheBlocks(request, Math.min(numComputedTokens + numNewTokens, request.numTokens));
    return true;
  }

  /** Registers the request's full blocks among its first `numTokens` tokens in the prefix cache. */
  cacheBlocks(request: EngineRequest, numTokens: number): void {
    const numFullBlocks = Math.floor(numTokens / this.blockSize);
    if (numFullBlocks <= request.numCachedBlocks) return;
    this.pool.cacheFullBlocks(
      request.blocks,
      request.blockHashes,
      request.numCachedBlocks,
      numFullBlocks,
      this.blockSize,
      request.allTokenIds,
      request.loraName,
      request.cacheSalt,
    );
    request.numCachedBlocks = numFullBlocks;
  }

  /** Releases the request's blocks, tail first, so the end of a sequence is evicted before its prefix. */
  free(request: EngineRequest): void {
    this.pool.freeBlocksReversed(request.blocks);
    request.blocks.length = 0;
    request.numCachedBlocks = 0;
  }

  resetPrefixCache(): boolean {
    return this.pool.resetPrefixCache();
  }
}
