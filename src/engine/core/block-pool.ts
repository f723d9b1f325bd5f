/**
 * The GPU KV block pool, as vLLM v1's `BlockPool` (`vllm/v1/core/block_pool.py`): reference-counted blocks,
 * a free queue that evicts the least recently freed block first, and the map from block hash to cached
 * block that prefix caching looks up. It also produces the KV events vLLM publishes.
 */
import { externalBlockHash, type BlockHash } from './block-hash.js';
import type { KvEvent } from './types.js';

export class KvBlock {
  refCnt = 0;
  /** Set while the block is full and registered in the cached-block map. */
  hash: BlockHash | null = null;
  prevFree: KvBlock | null = null;
  nextFree: KvBlock | null = null;

  constructor(
    readonly blockId: number,
    readonly isNull = false,
  ) {}
}

/**
 * Free blocks as an intrusive doubly linked list (vLLM's `FreeKVCacheBlockQueue`): O(1) removal from the
 * middle when a cached block is hit again, and no allocation when blocks move in and out.
 */
export class FreeBlockQueue {
  numFree = 0;
  private readonly head = new KvBlock(-1);
  private readonly tail = new KvBlock(-1);

  constructor(blocks: readonly KvBlock[]) {
    this.head.nextFree = this.tail;
    this.tail.prevFree = this.head;
    for (const b of blocks) this.append(b);
  }

  popLeft(): KvBlock {
    const first = this.head.nextFree as KvBlock;
    if (first === this.tail) throw new Error('no free KV blocks');
    this.unlink(first);
    return first;
  }

  remove(block: KvBlock): void {
    if (block.prevFree === null || block.nextFree === null)
      throw new Error(`block ${block.blockId} is not free`);
    this.unlink(block);
  }

  append(block: KvBlock): void {
    const last = this.tail.prevFree as KvBlock;
    last.nextFree = block;
    block.prevFree = last;
    block.nextFree = this.tail;
    this.tail.prevFree = block;
    this.numFree++;
  }

  /** Free blocks from the next to be evicted to the last; for tests. */
  toArray(): KvBlock[] {
    const out: KvBlock[] = [];
    for (let b = this.head.nextFree; b !== null && b !== this.tail; b = b.nextFree) out.push(b);
    return out;
  }

  private unlink(block: KvBlock): void {
    (block.prevFree as KvBlock).nextFree = block.nextFree;
    (block.nextFree as KvBlock).prevFree = block.prevFree;
    block.prevFree = null;
    block.nextFree = null;
    this.numFree--;
  }
}

export class BlockPool {
  readonly blocks: readonly KvBlock[];
  /** vLLM reserves block 0 as a placeholder that is never cached nor freed (used by windowed attention). */
  readonly nullBlock: KvBlock;
  private readonly freeQueue: FreeBlockQueue;
  /**
   * Hash key → cached block. Two requests that compute the same block at once each get their own copy, so a
   * key can map to several blocks; the rare extra ones live in `duplicates`.
   */
  private readonly cached = new Map<string, KvBlock>();
  private readonly duplicates = new Map<string, KvBlock[]>();
  private events: KvEvent[] = [];

  constructor(
    readonly numGpuBlocks: number,
    readonly enableCaching: boolean,
    readonly enableKvEvents: boolean,
  ) {
    if (!Number.isInteger(numGpuBlocks) || numGpuBlocks < 2) {
      throw new RangeError(`numGpuBlocks must be an integer ≥ 2, got ${numGpuBlocks}`);
    }
    const blocks: KvBlock[] = [new KvBlock(0, true)];
    for (let i = 1; i < numGpuBlocks; i++) blocks.push(new KvBlock(i));
    this.blocks = blocks;
    this.nullBlock = blocks[0] as KvBlock;
    this.freeQueue = new FreeBlockQueue(blocks.slice(1));
  }

  get numFreeBlocks(): number {
    return this.freeQueue.numFree;
  }

  /** Fraction of usable blocks in use, as vLLM's `get_usage` (the null block does not count). */
  get usage(): number {
    const total = this.numGpuBlocks - 1;
    return total > 0 ? 1 - this.freeQueue.numFree / total : 0;
  }

  getCachedBlock(hash: BlockHash): KvBlock | undefined {
    return this.cached.get(hash.key);
  }

  /**
   * Takes `n` blocks off the front of the free queue (evicting their cached hashes) and appends them to
   * `out` with one reference each. The caller has checked `numFreeBlocks`.
   */
  getNewBlocks(n: number, out: KvBlock[]): void {
    if (n > this.freeQueue.numFree) throw new Error(`cannot get ${n} free blocks from the pool`);
    for (let i = 0; i < n; i++) {
      const block = this.freeQueue.popLeft();
      if (this.enableCaching && block.hash !== null) this.evictCachedBlock(block);
      block.refCnt++;
      out.push(block);
    }
  }

  /** Takes a reference on prefix-cache hits, pulling free ones out of the free queue. */
  touch(blocks: readonly KvBlock[], count: number): void {
    for (let i = 0; i < count; i++) {
      const block = blocks[i] as KvBlock;
      if (block.refCnt === 0 && !block.isNull) this.freeQueue.remove(block);
      block.refCnt++;
    }
  }

  /**
   * Drops one reference on each block, in the given order; blocks left unreferenced join the free queue's
   * tail in that order, so the first of them is evicted first.
   */
  freeBlocksReversed(blocks: readonly KvBlock[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) {
      const block = blocks[i] as KvBlock;
      block.refCnt--;
      if (block.refCnt === 0 && !block.isNull) this.freeQueue.append(block);
    }
  }

  /**
   * Registers `blocks[numCachedBlocks, numFullBlocks)` under the request's block hashes (vLLM's
   * `cache_full_blocks`) and, with events on, reports them in one `BlockStored`.
   */
  cacheFullBlocks(
    blocks: readonly KvBlock[],
    blockHashes: readonly BlockHash[],
    numCachedBlocks: number,
    numFullBlocks: number,
    blockSize: number,
    tokenIds: readonly number[],
    loraName: string | undefined,
    cacheSalt?: string | undefined,
  ): void {
    if (numCachedBlocks >= numFullBlocks) return;
    if (blockHashes.length < numFullBlocks) throw new Error('block hashes lag behind the full blocks');
    for (let i = numCachedBlocks; i < numFullBlocks; i++) {
      const block = blocks[i] as KvBlock;
      if (block.isNull) continue;
      if (block.hash !== null) throw new Error(`block ${block.blockId} is already cached`);
      const hash = blockHashes[i] as BlockHash;
      block.hash = hash;
      const existing = this.cached.get(hash.key);
      if (existing === undefined) {
        this.cached.set(hash.key, block);
      } else {
        const dups = this.duplicates.get(hash.key);
        if (dups === undefined) this.duplicates.set(hash.key, [block]);
        else dups.push(block);
      }
    }
    if (!this.enableKvEvents) return;
    const hashes: bigint[] = [];
    for (let i = numCachedBlocks; i < numFullBlocks; i++) {
      const block = blocks[i] as KvBlock;
      if (!block.isNull) hashes.push(externalBlockHash((blockHashes[i] as BlockHash).digest));
    }
    const parent = numCachedBlocks > 0 ? (blocks[numCachedBlocks - 1] as KvBlock).hash : null;
    let extraKeys: (string[] | null)[] | null = null;
    if (loraName !== undefined || (cacheSalt !== undefined && numCachedBlocks === 0)) {
      extraKeys = [];
      for (let i = numCachedBlocks; i < numFullBlocks; i++) {
        if (blocks[i]!.isNull) continue;
        const keys: string[] = [];
        if (loraName !== undefined) keys.push(loraName);
        if (i === 0 && cacheSalt !== undefined) keys.push(cacheSalt);
        extraKeys.push(keys.length > 0 ? keys : null);
      }
    }
    this.events.push({
      type: 'BlockStored',
      blockHashes: hashes,
      parentBlockHash: parent === null ? null : externalBlockHash(parent.digest),
      tokenIds: tokenIds.slice(numCachedBlocks * blockSize, numFullBlocks * blockSize),
      blockSize,
      loraName: loraName ?? null,
      medium: 'GPU',
      extraKeys,
    });
  }

  /** Forgets every cached hash; only allowed when no block is in use (vLLM's `reset_prefix_cache`). */
  resetPrefixCache(): boolean {
    if (this.freeQueue.numFree !== this.numGpuBlocks - 1) return false;
    this.cached.clear();
    this.duplicates.clear();
    for (const b of this.blocks) b.hash = null;
    if (this.enableKvEvents) this.events.push({ type: 'AllBlocksCleared' });
    return true;
  }

  drainEvents(): KvEvent[] {
    if (this.events.length === 0) return [];
    const out = this.events;
    this.events = [];
    return out;
  }

  /** The free queue in eviction order; for tests. */
  freeBlocksInEvictionOrder(): KvBlock[] {
    return this.freeQueue.toArray();
  }

  /** External (64-bit) hash → number of blocks cached under it: what KV events should add up to. */
  cachedExternalHashes(): Map<bigint, number> {
    const out = new Map<bigint, number>();
    const add = (b: KvBlock): void => {
      const h = externalBlockHash((b.hash as BlockHash).digest);
      out.set(h, (out.get(h) ?? 0) + 1);
    };
    for (const b of this.cached.values()) add(b);
    for (const dups of this.duplicates.values()) for (const b of dups) add(b);
    return out;
  }

  get numCachedBlocks(): number {
    let n = this.cached.size;
    for (const d of this.duplicates.values()) n += d.length;
    return n;
  }

  private evictCachedBlock(block: KvBlock): void {
    const hash = block.hash as BlockHash;
    const key = hash.key;
    const dups = this.duplicates.get(key);
    if (this.cached.get(key) === block) {
      if (dups === undefined) {
        this.cached.delete(key);
      } else {
        this.cached.set(key, dups.pop() as KvBlock);
        if (dups.length === 0) this.duplicates.delete(key);
      }
    } else if (dups !== undefined) {
      const i = dups.indexOf(block);
      if (i >= 0) dups.splice(i, 1);
      if (dups.length === 0) this.duplicates.delete(key);
    }
    block.hash = null;
    if (this.enableKvEvents) {
      this.events.push({
        type: 'BlockRemoved',
        blockHashes: [externalBlockHash(hash.digest)],
        medium: 'GPU',
      });
    }
  }
}
