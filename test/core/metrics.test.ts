import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastHistogram } from '../../src/core/metrics.js';
import { Rng } from '../../src/core/rng.js';

const BUCKETS = [0.001, 0.01, 0.1, 1, 10];
const LABELS = { model_name: 'm', engine: '0' };

describe('FastHistogram', () => {
  it("renders exactly what prom-client's Histogram renders for the same observations", async () => {
    const fastReg = new Registry();
    const promReg = new Registry();
    const fast = new FastHistogram('x_seconds', 'Help text.', BUCKETS, LABELS, fastReg);
    const prom = new Histogram({
      name: 'x_seconds',
      help: 'Help text.',
      labelNames: ['model_name', 'engine'],
      buckets: BUCKETS,
      registers: [promReg],
    });
    const rng = new Rng(7);
    // Values on bucket bounds too: Prometheus buckets are inclusive (`le`).
    const values = [...BUCKETS, 0, 100, ...Array.from({ length: 500 }, () => rng.next() * 20)];
    for (const v of values) {
      fast.observe(v);
      prom.observe(LABELS, v);
    }
    expect(await fastReg.metrics()).toBe(await promReg.metrics());
    expect(fast.totalCount).toBe(values.length);
  });

  it('counts observations at most a bound and ignores non-finite values', () => {
    const h = new FastHistogram('y', 'h', BUCKETS, LABELS, new Registry());
    for (const v of [0.0005, 0.001, 0.002, 5, 50, NaN, Infinity]) h.observe(v);
    expect(h.countAtMost(0.001)).toBe(2);
    expect(h.countAtMost(0.01)).toBe(3);
    expect(h.countAtMost(10)).toBe(4);
    expect(h.countAtMost(Infinity)).toBe(5);
    h.reset();
    expect(h.totalCount).toBe(0);
  });

  it('refuses buckets that do not increase', () => {
    expect(() => new FastHistogram('z', 'h', [1, 1], LABELS, new Registry())).toThrow(/increase/);
  });
});
