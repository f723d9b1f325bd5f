import { describe, expect, it } from 'vitest';
import {
  TYPE,
  WeightedRandomPicker,
  definition,
} from '../../../../src/epp/plugins/picker/weighted-random.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

function picker(params: unknown = {}, seed = 1): WeightedRandomPicker {
  return create<WeightedRandomPicker>(definition, params, testHandle([], seed));
}

function pickSlots(p: WeightedRandomPicker, scores: number[]): number[] {
  const eps = makeEndpoints(scores.length);
  return p.pick(makeRequest(), { endpoints: eps, scores: Float64Array.from(scores) }).map((e) => e.slot);
}

function firstPicks(p: WeightedRandomPicker, scores: number[], runs: number): number[] {
  const wins = scores.map(() => 0);
  for (let i = 0; i < runs; i++) wins[pickSlots(p, scores)[0]!]!++;
  return wins;
}

describe('weighted-random-picker', () => {
  it('picks in proportion to score', () => {
    const wins = firstPicks(picker({}, 3), [1, 3], 8000);
    expect(wins[1]! / 8000).toBeGreaterThan(0.72);
    expect(wins[1]! / 8000).toBeLessThan(0.78);
  });

  it('handles totals above 1 (weighted sums of several scorers)', () => {
    const wins = firstPicks(picker({}, 8), [2.5, 0.5, 2], 10000);
    expect(wins[0]! / 10000).toBeCloseTo(0.5, 1);
    expect(wins[1]! / 10000).toBeCloseTo(0.1, 1);
    expect(wins[2]! / 10000).toBeCloseTo(0.4, 1);
  });

  it('never picks a zero score first while a positive one exists', () => {
    const wins = firstPicks(picker(), [0, 0.01, 0, -1], 2000);
    expect(wins).toEqual([0, 2000, 0, 0]);
  });

  it('fills up with zero scores after the positive ones', () => {
    const got = pickSlots(picker({ maxNumOfEndpoints: 3 }), [0, 0.5, 0]);
    expect(got[0]).toBe(1);
    expect(got.slice(1).sort()).toEqual([0, 2]);
  });

  it('picks uniformly at random when no score is above 0', () => {
    const wins = firstPicks(picker({}, 4), [0, 0, -2], 3000);
    for (const w of wins) expect(w).toBeGreaterThan(850);
  });

  it('samples without replacement', () => {
    const p = picker({ maxNumOfEndpoints: 3 }, 6);
    for (let i = 0; i < 200; i++) expect(new Set(pickSlots(p, [0.2, 0.4, 0.6, 0.8])).size).toBe(3);
  });

  it('returns nothing for no candidates and everything when asked for more', () => {
    expect(pickSlots(picker(), [])).toEqual([]);
    expect(pickSlots(picker({ maxNumOfEndpoints: 9 }), [0.3, 0.6]).sort()).toEqual([0, 1]);
  });

  it('is deterministic for a given seed', () => {
    const run = (seed: number): number[] => {
      const p = picker({ maxNumOfEndpoints: 2 }, seed);
      return Array.from({ length: 50 }, () => pickSlots(p, [0.1, 0.5, 0.5, 0.9])).flat();
    };
    expect(run(12)).toEqual(run(12));
    expect(run(12)).not.toEqual(run(13));
  });

  it('returns a new array', () => {
    const eps = makeEndpoints(2);
    const got = picker({ maxNumOfEndpoints: 2 }).pick(makeRequest(), {
      endpoints: eps,
      scores: Float64Array.from([1, 1]),
    });
    expect(got).not.toBe(eps);
  });

  it('is named by its config name and rejects bad maxNumOfEndpoints', () => {
    expect(create<WeightedRandomPicker>(definition, {}, testHandle(), 'w').typedName).toEqual({
      type: TYPE,
      name: 'w',
    });
    expect(() => create(definition, { maxNumOfEndpoints: 0 })).toThrow();
    expect(() => create(definition, { maxNumOfEndpoints: 2.5 })).toThrow();
    expect(() => create(definition, { temperature: 1 })).toThrow();
  });
});
