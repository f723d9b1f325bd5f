import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import { MaxScorePicker, TYPE, definition } from '../../../../src/epp/plugins/picker/max-score.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

function picker(params: unknown = {}, seed = 1): MaxScorePicker {
  return create<MaxScorePicker>(definition, params, testHandle([], seed));
}

function pickSlots(p: MaxScorePicker, scores: number[]): number[] {
  const eps = makeEndpoints(scores.length);
  return p.pick(makeRequest(), { endpoints: eps, scores: Float64Array.from(scores) }).map((e) => e.slot);
}

describe('max-score-picker', () => {
  it('picks the single highest score by default', () => {
    expect(pickSlots(picker(), [0.2, 0.9, 0.5])).toEqual([1]);
    expect(pickSlots(picker(), [3, 1, 2.5])).toEqual([0]);
  });

  it('returns the top maxNumOfEndpoints, best first', () => {
    expect(pickSlots(picker({ maxNumOfEndpoints: 2 }), [0.2, 0.9, 0.5, 0.1])).toEqual([1, 2]);
    expect(pickSlots(picker({ maxNumOfEndpoints: 3 }), [0.2, 0.9, 0.5, 0.1])).toEqual([1, 2, 0]);
  });

  it('returns every candidate, sorted, when there are fewer than maxNumOfEndpoints', () => {
    expect(pickSlots(picker({ maxNumOfEndpoints: 10 }), [0.1, 0.7, 0.4])).toEqual([1, 2, 0]);
  });

  it('returns nothing for no candidates', () => {
    expect(pickSlots(picker(), [])).toEqual([]);
  });

  it('returns a new array each time', () => {
    const p = picker({ maxNumOfEndpoints: 5 });
    const eps = makeEndpoints(2);
    const scored = { endpoints: eps, scores: Float64Array.from([1, 0]) };
    const a = p.pick(makeRequest(), scored);
    expect(a).not.toBe(eps);
    expect(p.pick(makeRequest(), scored)).not.toBe(a);
    expect(a).toEqual([eps[0], eps[1]]);
  });

  it('breaks ties at random: every tied endpoint wins sometimes, a lower one never', () => {
    const p = picker({}, 11);
    const wins = [0, 0, 0, 0];
    for (let i = 0; i < 3000; i++) wins[pickSlots(p, [0.8, 0.3, 0.8, 0.8])[0]!]!++;
    expect(wins[1]).toBe(0);
    for (const i of [0, 2, 3]) expect(wins[i]).toBeGreaterThan(850);
  });

  it('orders ties at random within the top N while keeping score order', () => {
    const p = picker({ maxNumOfEndpoints: 3 }, 4);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const got = pickSlots(p, [0.5, 0.9, 0.5, 0.5, 0.1]);
      expect(got[0]).toBe(1);
      expect([0, 2, 3]).toContain(got[1]);
      expect([0, 2, 3]).toContain(got[2]);
      seen.add(got.join(','));
    }
    expect(seen.size).toBe(6);
  });

  it('is deterministic for a given seed', () => {
    const run = (seed: number): number[] => {
      const p = picker({ maxNumOfEndpoints: 2 }, seed);
      return Array.from({ length: 50 }, () => pickSlots(p, [1, 1, 1, 1, 1])).flat();
    };
    expect(run(9)).toEqual(run(9));
    expect(run(9)).not.toEqual(run(10));
  });

  it('does not modify the scored input', () => {
    const eps: Endpoint[] = makeEndpoints(4);
    const scores = Float64Array.from([0.1, 0.4, 0.4, 0.2]);
    const snapshot = [...eps];
    picker({ maxNumOfEndpoints: 3 }).pick(makeRequest(), { endpoints: eps, scores });
    expect(eps).toEqual(snapshot);
    expect([...scores]).toEqual([0.1, 0.4, 0.4, 0.2]);
  });

  it('handles more candidates than its scratch buffers start with', () => {
    const scores = Array.from({ length: 300 }, (_, i) => (i * 37) % 300);
    expect(pickSlots(picker({ maxNumOfEndpoints: 20 }), scores)).toEqual(
      [...scores.keys()].sort((a, b) => scores[b]! - scores[a]!).slice(0, 20),
    );
  });

  it('is named by its config name', () => {
    expect(create<MaxScorePicker>(definition, {}, testHandle(), 'best').typedName).toEqual({
      type: TYPE,
      name: 'best',
    });
  });

  it.each([
    [{ maxNumOfEndpoints: 0 }],
    [{ maxNumOfEndpoints: -1 }],
    [{ maxNumOfEndpoints: 1.5 }],
    [{ max: 2 }],
  ])('rejects %j', (params) => {
    expect(() => create(definition, params)).toThrow();
  });
});
