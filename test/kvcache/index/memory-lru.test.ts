/**
 * What only the in-memory index has: its bounds (most keys, most entries per key, least recently used
 * dropped first), growth of its arrays, its footprint, and a seeded differential check of `score`
 * against the reference scorer over random operations. The shared contract runs in memory.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { KeyType, scoreLookup, type PodEntry } from '../../../src/kvcache/index/index.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';

const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false, groupIdx: null });
const cpu = (pod: string): PodEntry => ({ pod, tier: 'cpu', speculative: false, groupIdx: null });

/** Keys 1..n (hi = 0) as a KeyList, offset by `base`. */
function keys(n: number, base = 0): Uint32Array {
  const k = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    k[2 * i] = (base * 7 + i) >>> 20;
    k[2 * i + 1] = (base * 1_000_003 + i + 1) >>> 0;
  }
  return k;
}

describe('MemoryIndex bounds', () => {
  it('drops the least recently used request key when full, counting it', () => {
    const idx = new MemoryIndex({ maxKeys: 3 });
    const k = keys(4);
    idx.add(null, k.subarray(0, 6), [gpu('a')]);
    // Using key 0 makes key 1 the least recently used.
    expect(idx.lookup(k.subarray(0, 2))).toHaveLength(1);
    idx.add(null, k.subarray(6, 8), [gpu('a')]);
    expect(idx.stats()).toMatchObject({ requestKeys: 3, evictedKeys: 1 });
    expect(idx.lookup(k.subarray(2, 4))).toHaveLength(0);
    expect(idx.lookup(k.subarray(0, 2))).toHaveLength(1);
    expect(idx.lookup(k.subarray(6, 8))).toHaveLength(1);
  });

  it('keeps at most podCacheSize entries per key, dropping the least recently added', () => {
    const idx = new MemoryIndex({ podCacheSize: 2 });
    const k = keys(1);
    idx.add(null, k, [gpu('a')]);
    idx.add(null, k, [gpu('b')]);
    idx.add(null, k, [gpu('a')]); // refreshes a
    idx.add(null, k, [gpu('c')]); // drops b
    expect(
      idx
        .lookup(k)[0]!
        .map((e) => e.pod)
        .sort(),
    ).toEqual(['a', 'c']);
    expect(idx.stats().entries).toBe(2);
  });

  it('grows past its initial arrays and keeps every key reachable', () => {
    const idx = new MemoryIndex();
    const k = keys(50_000);
    idx.add(k, k, [gpu('a')]);
    expect(idx.stats()).toMatchObject({ requestKeys: 50_000, engineKeys: 50_000, entries: 50_000 });
    expect(idx.lookup(k)).toHaveLength(50_000);
    for (let i = 0; i < 50_000; i += 997)
      expect(idx.getRequestKey(k[2 * i]!, k[2 * i + 1]!)).toEqual([k[2 * i], k[2 * i + 1]]);
    idx.evict(KeyType.Engine, k, [gpu('a')]);
    expect(idx.stats()).toMatchObject({ requestKeys: 0, engineKeys: 0, entries: 0 });
  });

  it('costs under 100 bytes per indexed block (request key, engine key, one entry)', () => {
    const idx = new MemoryIndex();
    const k = keys(300_000);
    const e = keys(300_000, 99);
    // Wherever the arrays are in their growth.
    for (let n = 0; n < 300_000; n += 25_000) {
      idx.add(e.subarray(2 * n, 2 * (n + 25_000)), k.subarray(2 * n, 2 * (n + 25_000)), [gpu('a')]);
      expect(idx.stats().bytes / (n + 25_000)).toBeLessThan(100);
    }
  });

  it('refuses nonsense bounds', () => {
    expect(() => new MemoryIndex({ maxKeys: 0 })).toThrow(/maxKeys/);
    expect(() => new MemoryIndex({ podCacheSize: 0 })).toThrow(/podCacheSize/);
    expect(() => new MemoryIndex({ podCacheSize: 256 })).toThrow(/podCacheSize/);
  });
});

describe('MemoryIndex scoring', () => {
  it('scores tier-weighted consecutive prefixes, best tier per block, and honours the pod filter', () => {
    const idx = new MemoryIndex();
    const k = keys(4);
    idx.add(null, k, [gpu('a')]);
    idx.add(null, k.subarray(0, 4), [cpu('b')]);
    idx.add(null, k.subarray(0, 2), [gpu('b')]);
    const w = { gpu: 1, cpu: 0.8 };
    const s = idx.score(k, w);
    expect(s.get('a')).toEqual({ score: 4, blocks: 4 });
    expect(s.get('b')!.blocks).toBe(2);
    expect(s.get('b')!.score).toBeCloseTo(1.8, 12);
    expect([...idx.score(k, w, new Set(['b'])).keys()]).toEqual(['b']);
    expect(idx.score(k, w, new Set(['nobody'])).size).toBe(0);
    expect(idx.score(keys(2, 5), w).size).toBe(0);
  });

  it('agrees with the reference scorer over random operations (seeded)', () => {
    const rng = new Rng(7);
    const idx = new MemoryIndex({ maxKeys: 400, podCacheSize: 3 });
    const pods = ['p0', 'p1', 'p2', 'p3', 'p4'];
    const tiers = ['gpu', 'cpu', ''];
    const chain = keys(60);
    const w = { gpu: 1, cpu: 0.5 };
    for (let step = 0; step < 3000; step++) {
      const pod = pods[rng.int(0, pods.length - 1)]!;
      const entry: PodEntry = {
        pod,
        tier: tiers[rng.int(0, 2)]!,
        speculative: rng.int(0, 5) === 0,
        groupIdx: null,
      };
      const from = rng.int(0, 59);
      const to = Math.min(60, from + rng.int(1, 20));
      const slice = chain.subarray(2 * from, 2 * to);
      const op = rng.int(0, 9);
      if (op < 6) idx.add(op < 3 ? slice : null, slice, [entry]);
      else if (op < 8) idx.evict(op === 6 ? KeyType.Engine : KeyType.Request, slice, [entry]);
      else if (op === 8 && rng.int(0, 20) === 0) idx.clear(pod);
      const len = rng.int(1, 60);
      const q = chain.subarray(0, 2 * len);
      const filter = rng.int(0, 3) === 0 ? new Set(pods.slice(0, 3)) : undefined;
      const expected = scoreLookup(idx.lookup(q, filter), w);
      expect(idx.score(q, w, filter)).toEqual(expected);
    }
  });
});
