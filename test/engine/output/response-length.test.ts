import { describe, expect, it } from 'vitest';

import { Rng } from '../../../src/core/rng.js';
import {
  bucketEnd,
  bucketStart,
  histogramLength,
  MAX_EQUAL_BUCKETS_RANGE,
  randomLength,
  sampleResponseLength,
} from '../../../src/engine/output/response-length.js';

function buckets(min: number, max: number): [number, number][] {
  const out: [number, number][] = [];
  for (let b = 0; b < 5; b++) out.push([bucketStart(min, max, b), bucketEnd(min, max, b)]);
  return out;
}

describe('histogram buckets', () => {
  it('are 20 tokens wide with a stretched fourth bucket for a wide range', () => {
    // The last bucket is max alone; the fifth ends just before it.
    expect(buckets(1, 200)).toEqual([
      [1, 20],
      [21, 40],
      [41, 60],
      [61, 180],
      [181, 199],
    ]);
  });

  it('split a narrow range equally', () => {
    expect(buckets(1, 101)).toEqual([
      [1, 20],
      [21, 40],
      [41, 60],
      [61, 80],
      [81, 100],
    ]);
    expect(buckets(1, 11)).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
      [9, 10],
    ]);
  });

  it('switch from equal to fixed widths above a 101-token range', () => {
    expect(MAX_EQUAL_BUCKETS_RANGE).toBe(101);
    expect(buckets(1, 102)[3]).toEqual([61, 82]);
    expect(buckets(1, 102)[4]).toEqual([83, 101]);
  });

  it('cover the range without gaps or overlaps for every width', () => {
    for (let max = 7; max <= 400; max++) {
      const bs = buckets(1, max);
      expect(bs[0]?.[0]).toBe(1);
      for (let b = 1; b < 5; b++) expect(bs[b]?.[0]).toBe((bs[b - 1]?.[1] as number) + 1);
      expect(bs[4]?.[1]).toBe(max - 1);
    }
  });
});

describe('sampled response lengths', () => {
  it('stay in [min, max] and hit max about 15% of the time', () => {
    const rng = new Rng(7);
    const counts = new Map<number, number>();
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const len = histogramLength(rng, 1, 200);
      expect(len).toBeGreaterThanOrEqual(1);
      expect(len).toBeLessThanOrEqual(200);
      counts.set(len, (counts.get(len) ?? 0) + 1);
    }
    const share = (lo: number, hi: number): number => {
      let c = 0;
      for (let v = lo; v <= hi; v++) c += counts.get(v) ?? 0;
      return c / n;
    };
    expect(share(200, 200)).toBeCloseTo(0.15, 1);
    expect(share(1, 20)).toBeCloseTo(0.2, 1);
    expect(share(21, 40)).toBeCloseTo(0.3, 1);
    expect(share(41, 60)).toBeCloseTo(0.2, 1);
    expect(share(61, 180)).toBeCloseTo(0.05, 1);
    expect(share(181, 199)).toBeCloseTo(0.1, 1);
  });

  it('use the equal buckets when max_tokens is small', () => {
    const rng = new Rng(11);
    let atMax = 0;
    for (let i = 0; i < 5000; i++) {
      const len = sampleResponseLength(rng, { maxTokens: 50, room: 1000 });
      expect(len).toBeGreaterThanOrEqual(1);
      expect(len).toBeLessThanOrEqual(50);
      if (len === 50) atMax++;
    }
    expect(atMax / 5000).toBeCloseTo(0.15, 1);
  });

  it('pick uniformly when the range has at most six values', () => {
    const rng = new Rng(3);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) seen.add(sampleResponseLength(rng, { maxTokens: 4, room: 100 }));
    expect([...seen].sort()).toEqual([1, 2, 3, 4]);
  });

  it('give exactly max_tokens with ignore_eos', () => {
    const rng = new Rng(1);
    for (const max of [1, 7, 120, 500]) {
      expect(sampleResponseLength(rng, { maxTokens: max, ignoreEos: true, room: 10_000 })).toBe(max);
    }
  });

  it('fill the context with ignore_eos and no max_tokens', () => {
    expect(sampleResponseLength(new Rng(1), { ignoreEos: true, room: 321 })).toBe(321);
  });

  it('respect min_tokens', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 2000; i++) {
      const len = sampleResponseLength(rng, { maxTokens: 300, minTokens: 150, room: 10_000 });
      expect(len).toBeGreaterThanOrEqual(150);
      expect(len).toBeLessThanOrEqual(300);
    }
    for (let i = 0; i < 200; i++) {
      expect(sampleResponseLength(rng, { minTokens: 500, room: 10_000 })).toBeGreaterThanOrEqual(500);
    }
  });

  it('never exceed the room left in the context', () => {
    const rng = new Rng(9);
    for (let i = 0; i < 2000; i++) {
      expect(sampleResponseLength(rng, { maxTokens: 1000, room: 30 })).toBeLessThanOrEqual(30);
      expect(sampleResponseLength(rng, { room: 30 })).toBeLessThanOrEqual(30);
    }
    expect(sampleResponseLength(rng, { maxTokens: 10, room: 0 })).toBe(0);
  });

  it('centre on 40 tokens without max_tokens', () => {
    const rng = new Rng(21);
    let sum = 0;
    const n = 5000;
    for (let i = 0; i < n; i++) {
      const len = sampleResponseLength(rng, { room: 100_000 });
      expect(len).toBeGreaterThanOrEqual(1);
      sum += len;
    }
    expect(sum / n).toBeGreaterThan(38);
    expect(sum / n).toBeLessThan(44);
  });

  it('are uniform in a context window under 20 tokens', () => {
    const rng = new Rng(2);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(randomLength(rng, 1, 10));
    expect(seen.size).toBe(10);
  });
});
