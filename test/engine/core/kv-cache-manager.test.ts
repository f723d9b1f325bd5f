import { describe, expect, it } from 'vitest';
import { computeNoneHash } from '../../../src/engine/core/block-hash.js';
import { KvCacheManager } from '../../../src/engine/core/kv-cache-manager.js';
import { EngineRequest } from '../../../src/engine/core/request.js';
import type { EngineRequestInit } from '../../../src/engine/core/types.js';
import { request, tokens } from './engine-fixtures.js';

const noneHash = computeNoneHash('sha256_cbor', '0');

function makeManager(numGpuBlocks = 16, enablePrefixCaching = true): KvCacheManager {
  return new KvCacheManager({
    blockSize: 4,
    numGpuBlocks,
    maxModelLen: 1024,
    enablePrefixCaching,
    enableKvEvents: true,
  });
}

function req(init: EngineRequestInit): EngineRequest {
  return new EngineRequest(init, 'sha256_cbor', noneHash, 4, true);
}

/** What the scheduler does for a waiting request: look up, allocate, take the hit. */
function admit(kv: KvCacheManager, r: EngineRequest, numNewTokens?: number): number {
  const hit = kv.getComputedBlocks(r);
  const n = numNewTokens ?? r.numTokens - hit;
  if (!kv.allocateSlots(r, n, hit)) return -1;
  r.numComputedTokens = hit + n;
  return hit;
}

describe('KvCacheManager', () => {
  it('serves the longest cached prefix of full blocks but always leaves one token to compute', () => {
    const kv = makeManager();
    const a = req(request('a', tokens(1, 12), [1]));
    expect(admit(kv, a)).toBe(0);
    kv.free(a);
    // 12 tokens: the hit is capped at floor((12 − 1) / 4) = 2 blocks.
    expect(admit(kv, req(request('b', tokens(1, 12), [1])))).toBe(8);
    // 13 tokens sharing the first 12: all three cached blocks hit.
    expect(admit(kv, req(request('c', [...tokens(1, 12), 7], [1])))).toBe(12);
    // The hit stops at the first block that differs.
    const d = tokens(1, 12);
    d[5] = 99;
    expect(admit(kv, req(request('d', d, [1])))).toBe(4);
  });

  it('counts prefix-cache queries and hits in tokens, skipping lookups of preempted requests', () => {
    const kv = makeManager();
    const a = req(request('a', tokens(1, 12), [1]));
    admit(kv, a);
    const b = req(request('b', tokens(1, 10), [1]));
    admit(kv, b);
    expect(kv.prefixCacheQueries).toBe(22);
    expect(kv.prefixCacheHits).toBe(8);
    kv.free(b);
    b.numComputedTokens = 0;
    b.numPreemptions = 1;
    admit(kv, b);
    expect(kv.prefixCacheQueries).toBe(22);
  });

  it('shares cached blocks between requests by reference count', () => {
    const kv = makeManager();
    const a = req(request('a', tokens(1, 9), [1]));
    admit(kv, a);
    const b = req(request('b', tokens(1, 9), [1]));
    expect(admit(kv, b)).toBe(8);
    expect(b.blocks.slice(0, 2)).toEqual(a.blocks.slice(0, 2));
    expect(a.blocks[0]?.refCnt).toBe(2);
    expect(kv.pool.numFreeBlocks).toBe(15 - 4);
  });

  it('refuses an allocation the pool cannot hold and leaves the request untouched', () => {
    const kv = makeManager(4); // 3 usable blocks
    const a = req(request('a', tokens(1, 8), [1]));
    admit(kv, a);
    const b = req(request('b', tokens(2, 8), [1]));
    expect(kv.getComputedBlocks(b)).toBe(0);
    expect(kv.allocateSlots(b, 8, 0)).toBe(false);
    expect(b.blocks).toEqual([]);
    expect(kv.pool.numFreeBlocks).toBe(1);
  });

  it('counts evictable cache hits against the free blocks when admitting', () => {
    const kv = makeManager(4); // 3 usable blocks
    const a = req(request('a', tokens(1, 8), [1]));
    admit(kv, a);
    kv.free(a);
    const filler = req(request('f', tokens(2, 4), [1]));
    admit(kv, filler); // takes the one never-used block
    // 9 tokens: 2 cached (free, evictable) + 1 new block = 3 > 2 free.
    const b = req(request('b', [...tokens(1, 8), 5], [1]));
    expect(kv.getComputedBlocks(b)).toBe(8);
    expect(kv.allocateSlots(b, 1, 8)).toBe(false);
    kv.free(filler);
    expect(admit(kv, b)).toBe(8);
  });

  it('frees a request tail first, so its last blocks are evicted before its prefix', () => {
    const kv = makeManager(5); // 4 usable blocks
    const a = req(request('a', tokens(1, 16), [1]));
    admit(kv, a);
    kv.free(a);
    kv.pool.drainEvents();
    admit(kv, req(request('b', tokens(2, 4), [1])));
    const removed = kv.pool.drainEvents().filter((e) => e.type === 'BlockRemoved');
    expect(removed).toHaveLength(1);
    // The head three blocks of a are still cached.
    const d = req(request('d', [...tokens(1, 12), 1], [1]));
    expect(kv.getComputedBlocks(d)).toBe(12);
  });

  it('caches nothing and counts nothing with prefix caching off', () => {
    const kv = makeManager(16, false);
    const a = req(request('a', tokens(1, 12), [1]));
    admit(kv, a);
    kv.free(a);
    expect(admit(kv, req(request('b', tokens(1, 12), [1])))).toBe(0);
    expect(kv.prefixCacheQueries).toBe(0);
    expect(kv.pool.drainEvents()).toEqual([]);
  });

  it('reports usage as the fraction of usable blocks in use', () => {
    const kv = makeManager(5);
    expect(kv.usage).toBe(0);
    const a = req(request('a', tokens(1, 6), [1]));
    admit(kv, a);
    expect(kv.usage).toBe(0.5);
    kv.free(a);
    expect(kv.usage).toBe(0);
  });
});
