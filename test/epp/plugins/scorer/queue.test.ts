import { describe, expect, it } from 'vitest';
import { QueueScorer, TYPE, definition } from '../../../../src/epp/plugins/scorer/queue.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

function scores(queues: number[], scraped: boolean[] = queues.map(() => true)): number[] {
  const s = create<QueueScorer>(definition);
  const eps = makeEndpoints(queues.length, (i) => ({
    metrics: { waitingQueueSize: queues[i]!, updateTime: scraped[i] ? 5 : 0 },
  }));
  const out = new Float64Array(eps.length);
  s.score(makeRequest(), eps, out);
  return [...out];
}

describe('queue-scorer', () => {
  const cases: [string, number[], number[]][] = [
    ['different queue sizes: (max − q)/(max − min)', [3, 1, 5], [0.5, 1, 0]],
    ['two endpoints', [10, 0], [0, 1]],
    ['same queue sizes score 1', [4, 4, 4], [1, 1, 1]],
    ['zero queue sizes score 1', [0, 0], [1, 1]],
    ['one endpoint scores 1', [7], [1]],
  ];

  it.each(cases)('%s', (_title, queues, want) => {
    expect(scores(queues)).toEqual(want);
  });

  it('leaves never-scraped endpoints at 0 and out of the range', () => {
    // The unscraped endpoint would be the minimum (0) if it counted.
    expect(scores([0, 2, 6], [false, true, true])).toEqual([0, 1, 0]);
    expect(scores([0, 0], [false, false])).toEqual([0, 0]);
  });

  it('is a distribution scorer and takes no parameters', () => {
    const s = create<QueueScorer>(definition, {}, undefined, 'q');
    expect(s.typedName).toEqual({ type: TYPE, name: 'q' });
    expect(s.category).toBe('distribution');
    expect(() => create(definition, { threshold: 1 })).toThrow();
  });
});
