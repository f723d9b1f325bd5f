import { describe, expect, it } from 'vitest';
import { RandomPicker, TYPE, definition } from '../../../../src/epp/plugins/picker/random.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

function picker(params: unknown = {}, seed = 1): RandomPicker {
  return create<RandomPicker>(definition, params, testHandle([], seed));
}

function pickSlots(p: RandomPicker, scores: number[]): number[] {
  const eps = makeEndpoints(scores.length);
  return p.pick(makeRequest(), { endpoints: eps, scores: Float64Array.from(scores) }).map((e) => e.slot);
}

describe('random-picker', () => {
  it('ignores scores: every candidate is picked about equally often', () => {
    const p = picker({}, 2);
    const wins = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) wins[pickSlots(p, [1, 0, 0, 0.5])[0]!]!++;
    for (const w of wins) {
      expect(w).toBeGreaterThan(850);
      expect(w).toBeLessThan(1150);
    }
  });

  it('picks maxNumOfEndpoints distinct endpoints', () => {
    const p = picker({ maxNumOfEndpoints: 3 });
    for (let i = 0; i < 100; i++) {
      const got = pickSlots(p, [0, 0, 0, 0, 0]);
      expect(got).toHaveLength(3);
      expect(new Set(got).size).toBe(3);
    }
  });

  it('returns every candidate when there are fewer than maxNumOfEndpoints, and nothing for none', () => {
    expect(pickSlots(picker({ maxNumOfEndpoints: 5 }), [0, 0]).sort()).toEqual([0, 1]);
    expect(pickSlots(picker(), [])).toEqual([]);
    expect(pickSlots(picker(), [0.3])).toEqual([0]);
  });

  it('is deterministic for a given seed', () => {
    const run = (seed: number): number[] => {
      const p = picker({ maxNumOfEndpoints: 2 }, seed);
      return Array.from({ length: 50 }, () => pickSlots(p, [0, 0, 0, 0, 0, 0])).flat();
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });

  it('returns a new array', () => {
    const eps = makeEndpoints(1);
    expect(picker().pick(makeRequest(), { endpoints: eps, scores: new Float64Array(1) })).not.toBe(eps);
  });

  it('is named by its config name and rejects bad maxNumOfEndpoints', () => {
    expect(create<RandomPicker>(definition, {}, testHandle(), 'r').typedName).toEqual({
      type: TYPE,
      name: 'r',
    });
    expect(() => create(definition, { maxNumOfEndpoints: 0 })).toThrow();
    expect(() => create(definition, { maxNumOfEndpoints: '2' })).toThrow();
    expect(() => create(definition, { seed: 1 })).toThrow();
  });
});
