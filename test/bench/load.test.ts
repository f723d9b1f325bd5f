import { describe, expect, it } from 'vitest';
import { flagsToOptions } from '../../src/bench/command.js';
import { BenchConfigError } from '../../src/bench/errors.js';
import { arrivals, constantArrivals, poisson, poissonArrivals } from '../../src/bench/load.js';
import { mergeOptions, parseBenchOptions, parseStagesFlag } from '../../src/bench/options.js';
import { Rng } from '../../src/core/rng.js';

describe('arrival schedules', () => {
  it('constant: exactly rate × duration requests, increasing, the last at the end', () => {
    const t = constantArrivals(10, 5, new Rng(1));
    expect(t.length).toBe(50);
    for (let i = 1; i < t.length; i++) expect(t[i]!).toBeGreaterThan(t[i - 1]!);
    expect(t[0]!).toBeGreaterThan(0);
    expect(t[49]!).toBeCloseTo(5, 9);
    // Exponential gaps, not even spacing.
    const gaps = Array.from(t.subarray(1), (v, i) => v - t[i]!);
    expect(Math.max(...gaps) / Math.min(...gaps)).toBeGreaterThan(5);
  });

  it('poisson: seeded, per-second counts of mean ≈ rate, all within their second', () => {
    const a = poissonArrivals(20, 200, new Rng(42));
    const b = poissonArrivals(20, 200, new Rng(42));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(poissonArrivals(20, 200, new Rng(43)))).not.toEqual(Array.from(a));
    // 4000 expected; the sd of the total is sqrt(4000) ≈ 63.
    expect(Math.abs(a.length - 4000)).toBeLessThan(300);
    const perSecond = new Array<number>(200).fill(0);
    for (let i = 0; i < a.length; i++) {
      if (i > 0) expect(a[i]!).toBeGreaterThanOrEqual(a[i - 1]!);
      perSecond[Math.min(199, Math.floor(a[i]! - 1e-9))]!++;
    }
    const mean = perSecond.reduce((x, y) => x + y, 0) / 200;
    const variance = perSecond.reduce((x, y) => x + (y - mean) ** 2, 0) / 200;
    // Poisson: variance ≈ mean.
    expect(variance / mean).toBeGreaterThan(0.7);
    expect(variance / mean).toBeLessThan(1.3);
  });

  it('poisson sampling stays exact for large means (sum of parts)', () => {
    const rng = new Rng(5);
    let sum = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) sum += poisson(100, rng);
    expect(sum / n).toBeGreaterThan(98);
    expect(sum / n).toBeLessThan(102);
    expect(poisson(0, rng)).toBe(0);
  });

  it('a last partial second draws from its share of the rate', () => {
    const t = poissonArrivals(1000, 1.5, new Rng(9));
    expect(t[t.length - 1]!).toBeLessThanOrEqual(1.5);
    expect(t.length).toBeGreaterThan(1350);
    expect(t.length).toBeLessThan(1650);
  });

  it('dispatches on the stage type', () => {
    expect(arrivals({ type: 'constant', rate: 2, duration: 3, warmup: false }, new Rng(0)).length).toBe(6);
  });
});

const base = {
  url: 'http://127.0.0.1:8000',
  model: 'm',
  workload: { type: 'random', input_len: 10, output_len: 5 },
};

describe('options', () => {
  it('normalizes stages, puts the warm-up first and reads durations with units', () => {
    const o = parseBenchOptions({
      ...base,
      load: {
        type: 'poisson',
        stages: [
          { rate: 3, duration: '20s' },
          { rate: 10, duration: 20 },
        ],
        warmup: '1m',
      },
      slo: { ttft_ms: 200 },
    });
    expect(o.stages).toEqual([
      { type: 'poisson', rate: 3, duration: 60, warmup: true },
      { type: 'poisson', rate: 3, duration: 20, warmup: false },
      { type: 'poisson', rate: 10, duration: 20, warmup: false },
    ]);
    expect(o.slo.ttftMs).toBe(200);
    expect(o.requestTimeoutS).toBe(300);
    expect(o.ignoreEos).toBe(true);
    expect(o.api).toBe('completions');
  });

  it('concurrency loads take concurrency stages', () => {
    const o = parseBenchOptions({
      ...base,
      load: { type: 'concurrency', stages: [{ concurrency: 8, num_requests: 100 }] },
    });
    expect(o.stages[0]).toEqual({
      type: 'concurrency',
      concurrency: 8,
      num_requests: 100,
      duration: undefined,
      warmup: false,
    });
    expect(() =>
      parseBenchOptions({ ...base, load: { type: 'concurrency', stages: [{ rate: 1, duration: 1 }] } }),
    ).toThrow(BenchConfigError);
  });

  it('names the bad field', () => {
    try {
      parseBenchOptions({
        ...base,
        workload: { type: 'shared-prefix', num_groups: 0 },
        load: { stages: [{ rate: 1, duration: 1 }] },
      });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(BenchConfigError);
      expect((err as BenchConfigError).message).toMatch(/workload\.num_groups/);
    }
    expect(() => parseBenchOptions({ ...base, load: { stages: [{ rate: 1, duration: 'soon' }] } })).toThrow(
      /duration/,
    );
    expect(() =>
      parseBenchOptions({ ...base, bogus: 1, load: { stages: [{ rate: 1, duration: 1 }] } }),
    ).toThrow(/bogus/);
  });

  it('parses --stages', () => {
    expect(parseStagesFlag('3:20, 10:30s', false)).toEqual([
      { rate: 3, duration: '20' },
      { rate: 10, duration: '30s' },
    ]);
    expect(parseStagesFlag('4:100,8:200', true)).toEqual([
      { concurrency: 4, num_requests: 100 },
      { concurrency: 8, num_requests: 200 },
    ]);
    expect(() => parseStagesFlag('3', false)).toThrow(BenchConfigError);
    expect(() => parseStagesFlag('', false)).toThrow(BenchConfigError);
  });

  it('maps flags onto the YAML shape, flags winning over the file', () => {
    const flags = flagsToOptions({
      url: 'http://x:1',
      model: 'M',
      workload: 'shared-prefix',
      numGroups: 150,
      numPromptsPerGroup: 5,
      systemPromptLen: 6000,
      questionLen: 1200,
      outputLen: 1000,
      load: 'poisson',
      stages: '15:50,3:20',
      sloTtftMs: 500,
      output: '/tmp/x',
    });
    const file = {
      url: 'http://file:1',
      model: 'F',
      seed: 9,
      workload: {
        type: 'shared-prefix',
        num_groups: 2,
        num_prompts_per_group: 2,
        system_prompt_len: 1,
        question_len: 1,
        output_len: 1,
      },
      load: { type: 'constant', stages: [{ rate: 1, duration: 1 }], interval: 2 },
    };
    const o = parseBenchOptions(mergeOptions(file, flags));
    expect(o.url).toBe('http://x:1');
    expect(o.seed).toBe(9);
    expect(o.workload).toMatchObject({ num_groups: 150, system_prompt_len: 6000, output_len: 1000 });
    expect(o.loadType).toBe('poisson');
    expect(o.stages.map((s) => (s.type === 'concurrency' ? 0 : s.rate))).toEqual([15, 3]);
    expect(o.intervalS).toBe(2);
    expect(o.output).toBe('/tmp/x');
    // Another workload type replaces the file's workload instead of merging into it.
    const r = parseBenchOptions(
      mergeOptions(file, flagsToOptions({ workload: 'random', inputLen: 5000, outputLen: 250 })),
    );
    expect(r.workload).toEqual({ type: 'random', input_len: 5000, output_len: 250, range_ratio: 0 });
  });
});

describe('docs/bench.md', () => {
  it('its bench.yaml example is valid', async () => {
    const { readFile } = await import('node:fs/promises');
    const { parse } = await import('yaml');
    const doc = await readFile(new URL('../../docs/bench.md', import.meta.url), 'utf8');
    const block = /```yaml\n([\s\S]*?)```/.exec(doc)![1]!;
    const o = parseBenchOptions(parse(block));
    expect(o.stages).toHaveLength(17);
    expect(o.stages[0]).toEqual({ type: 'poisson', rate: 15, duration: 50, warmup: true });
  });
});
