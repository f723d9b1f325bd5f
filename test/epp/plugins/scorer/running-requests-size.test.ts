import { describe, expect, it } from 'vitest';
import {
  RunningRequestsSizeScorer,
  TYPE,
  definition,
} from '../../../../src/epp/plugins/scorer/running-requests-size.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

function scores(running: number[], scraped: boolean[] = running.map(() => true)): number[] {
  const s = create<RunningRequestsSizeScorer>(definition);
  const eps = makeEndpoints(running.length, (i) => ({
    metrics: { runningRequestsSize: running[i]!, waitingQueueSize: 100 - i, updateTime: scraped[i] ? 5 : 0 },
  }));
  const out = new Float64Array(eps.length);
  s.score(makeRequest(), eps, out);
  return [...out];
}

describe('running-requests-size-scorer', () => {
  const cases: [string, number[], number[]][] = [
    ['different sizes: (max − r)/(max − min)', [2, 6, 10], [1, 0.5, 0]],
    ['the waiting queue plays no part', [3, 3], [1, 1]],
    ['zero sizes score 1', [0, 0, 0], [1, 1, 1]],
    ['one endpoint scores 1', [12], [1]],
  ];

  it.each(cases)('%s', (_title, running, want) => {
    expect(scores(running)).toEqual(want);
  });

  it('leaves never-scraped endpoints at 0 and out of the range', () => {
    expect(scores([0, 4, 8], [false, true, true])).toEqual([0, 1, 0]);
  });

  it('is a distribution scorer and takes no parameters', () => {
    const s = create<RunningRequestsSizeScorer>(definition);
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('distribution');
    expect(() => create(definition, { x: 1 })).toThrow();
  });
});
