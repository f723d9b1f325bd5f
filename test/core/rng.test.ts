import { describe, expect, it } from 'vitest';
import { Rng, seedFrom } from '../../src/core/rng.js';

describe('Rng', () => {
  it('repeats its sequence for the same seed and differs for another', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 20 }, () => a.nextU32());
    expect(Array.from({ length: 20 }, () => b.nextU32())).toEqual(sa);
    expect(Array.from({ length: 20 }, () => c.nextU32())).not.toEqual(sa);
  });

  it('stays in range and is roughly uniform', () => {
    const r = new Rng(1);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 40_000; i++) {
      const x = r.next();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      counts[Math.floor(x * 4)]!++;
      const k = r.int(3, 5);
      expect(k >= 3 && k <= 5).toBe(true);
    }
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });

  it('draws normal samples with the requested mean and spread', () => {
    const r = new Rng(9);
    let sum = 0;
    let sq = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const x = r.normal(40, 20);
      sum += x;
      sq += x * x;
    }
    const mean = sum / n;
    expect(Math.abs(mean - 40)).toBeLessThan(1);
    expect(Math.abs(Math.sqrt(sq / n - mean * mean) - 20)).toBeLessThan(1);
  });

  it('derives distinct seeds from text', () => {
    expect(seedFrom('abc', 1)).toBe(seedFrom('abc', 1));
    expect(seedFrom('abc', 1)).not.toBe(seedFrom('abd', 1));
    expect(seedFrom('abc', 1)).not.toBe(seedFrom('abc', 2));
  });
});
