import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { EventDedupFilter, HashCounter } from '../../../src/kvcache/events/dedup.js';
import { bigIntToKey, keysToBigInts, type KeyList } from '../../../src/kvcache/keys.js';

function keyList(hashes: readonly bigint[]): KeyList {
  const out = new Uint32Array(2 * hashes.length);
  hashes.forEach((h, i) => out.set(bigIntToKey(h), 2 * i));
  return out;
}

describe('HashCounter', () => {
  it('counts references per 64-bit hash; a decrement past the last, or of an unknown hash, says so', () => {
    const c = new HashCounter();
    c.increment(1, 2);
    c.increment(1, 2);
    c.increment(2, 1);
    expect([c.get(1, 2), c.get(2, 1), c.get(0, 3), c.size]).toEqual([2, 1, 0, 2]);
    expect(c.decrement(1, 2)).toBe(1);
    expect(c.decrement(1, 2)).toBe(0);
    expect(c.decrement(1, 2)).toBe(-1);
    expect(c.decrement(7, 7)).toBe(-1);
    expect(c.size).toBe(1);
  });

  it('agrees with a Map under seeded churn (growth, removals shifting slots back, reuse)', () => {
    const rng = new Rng(7);
    const c = new HashCounter(4);
    const ref = new Map<string, number>();
    // Few distinct hashes, so that the same ones come and go and their slots are reused.
    let mismatches = 0;
    const pool = Array.from({ length: 3000 }, () => [rng.nextU32(), rng.nextU32()] as const);
    for (let i = 0; i < 60_000; i++) {
      const [hi, lo] = pool[rng.int(0, pool.length - 1)]!;
      const k = `${hi}:${lo}`;
      if (rng.next() < 0.55) {
        c.increment(hi, lo);
        ref.set(k, (ref.get(k) ?? 0) + 1);
      } else {
        const had = ref.get(k) ?? 0;
        if (c.decrement(hi, lo) !== (had === 0 ? -1 : had - 1)) mismatches++;
        if (had > 1) ref.set(k, had - 1);
        else ref.delete(k);
      }
    }
    for (const [hi, lo] of pool) if (c.get(hi, lo) !== (ref.get(`${hi}:${lo}`) ?? 0)) mismatches++;
    expect(mismatches).toBe(0);
    expect(c.size).toBe(ref.size);
  });
  it('agrees with a Map in a table that never grows: runs that wrap around its end, shifted back', () => {
    const rng = new Rng(11);
    // 16 slots and at most 8 live hashes: long runs, many of them across the end of the table.
    const c = new HashCounter(4);
    const ref = new Map<string, number>();
    const pool = Array.from({ length: 64 }, () => [rng.nextU32(), rng.nextU32()] as const);
    let mismatches = 0;
    for (let i = 0; i < 20_000; i++) {
      const [hi, lo] = pool[rng.int(0, pool.length - 1)]!;
      const k = `${hi}:${lo}`;
      const had = ref.get(k) ?? 0;
      if (had === 0 && ref.size >= 8) continue;
      if (had === 0 || rng.next() < 0.4) {
        c.increment(hi, lo);
        ref.set(k, had + 1);
      } else {
        if (c.decrement(hi, lo) !== had - 1) mismatches++;
        if (had > 1) ref.set(k, had - 1);
        else ref.delete(k);
      }
      for (const [h, l] of pool) if (c.get(h, l) !== (ref.get(`${h}:${l}`) ?? 0)) mismatches++;
    }
    expect(mismatches).toBe(0);
    expect(c.size).toBe(ref.size);
  });
});

describe('EventDedupFilter', () => {
  it('forwards a removal only when no announcement of the hash is left in its scope', () => {
    const counters = { dedupForwarded: 0, dedupSuppressed: 0 };
    const f = new EventDedupFilter(counters);
    f.trackStore('gpu', null, keyList([1n, 2n, 1n]));
    expect(f.count('gpu', null, ...bigIntToKey(1n))).toBe(2);
    // 1 has another copy, 2 goes, 3 was never seen (passes through).
    expect(keysToBigInts(f.filterRemove('gpu', null, keyList([1n, 2n, 3n])))).toEqual([2n, 3n]);
    expect(counters).toEqual({ dedupForwarded: 2, dedupSuppressed: 1 });
    expect(keysToBigInts(f.filterRemove('gpu', null, keyList([1n])))).toEqual([1n]);
    expect(f.count('gpu', null, ...bigIntToKey(1n))).toBe(0);
  });

  it('returns the removal itself when every hash passes (no copy)', () => {
    const f = new EventDedupFilter();
    const unseen = keyList([5n, 6n]);
    expect(f.filterRemove('gpu', null, unseen)).toBe(unseen);
    f.trackStore('gpu', null, keyList([5n]));
    const all = keyList([5n, 6n]);
    expect(f.filterRemove('gpu', null, all)).toBe(all);
  });

  it('keeps tiers and groups apart, and forgets everything on clear', () => {
    const f = new EventDedupFilter();
    f.trackStore('gpu', null, keyList([1n, 1n]));
    f.trackStore('cpu', null, keyList([1n]));
    f.trackStore('gpu', 3, keyList([1n, 1n]));
    expect(keysToBigInts(f.filterRemove('cpu', null, keyList([1n])))).toEqual([1n]);
    expect(keysToBigInts(f.filterRemove('gpu', null, keyList([1n])))).toEqual([]);
    expect(f.count('gpu', 3, ...bigIntToKey(1n))).toBe(2);
    f.clear();
    expect(f.count('gpu', null, ...bigIntToKey(1n))).toBe(0);
    expect(keysToBigInts(f.filterRemove('gpu', 3, keyList([1n])))).toEqual([1n]);
  });
});
