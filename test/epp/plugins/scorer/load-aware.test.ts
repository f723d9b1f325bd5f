import { describe, expect, it } from 'vitest';
import { LoadAwareScorer, TYPE, definition } from '../../../../src/epp/plugins/scorer/load-aware.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

function scores(params: unknown, queues: number[]): number[] {
  const s = create<LoadAwareScorer>(definition, params);
  const eps = makeEndpoints(queues.length, (i) => ({ metrics: { waitingQueueSize: queues[i]! } }));
  const out = new Float64Array(eps.length);
  s.score(makeRequest(), eps, out);
  return [...out];
}

describe('load-aware-scorer', () => {
  const cases: [string, unknown, number[], number[]][] = [
    ['an empty queue scores 0.5', {}, [0], [0.5]],
    [
      'default threshold 128: 0.5 · (1 − q/128)',
      {},
      [1, 32, 64, 127],
      [0.5 * (127 / 128), 0.375, 0.25, 0.5 / 128],
    ],
    ['a queue at or above the threshold scores 0', {}, [128, 129, 10_000], [0, 0, 0]],
    ['threshold 10', { threshold: 10 }, [0, 5, 10, 20], [0.5, 0.25, 0, 0]],
    ['threshold 1: any queue scores 0', { threshold: 1 }, [0, 1, 2], [0.5, 0, 0]],
  ];

  it.each(cases)('%s', (_title, params, queues, want) => {
    const got = scores(params, queues);
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 12));
  });

  it('is a distribution scorer', () => {
    const s = create<LoadAwareScorer>(definition);
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('distribution');
  });

  it.each([[0], [-5], [1.5], ['128']])('rejects threshold %s', (threshold) => {
    expect(() => create(definition, { threshold })).toThrow();
  });

  it('rejects unknown fields', () => {
    expect(() => create(definition, { queueThreshold: 5 })).toThrow();
  });
});
