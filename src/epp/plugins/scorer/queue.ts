/**
 * `queue-scorer`: min-max over the model servers' waiting queues, `(max − q) / (max − min)`: the
 * shortest queue scores 1, the longest 0, and equal queues all score 1. Endpoints never scraped
 * (`updateTime` 0) say nothing about their queue: they score 0 and stay out of the range, as upstream.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'queue-scorer';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new QueueScorer(name),
});

export class QueueScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category = 'distribution';

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  score(_req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < endpoints.length; i++) {
      const m = endpoints[i]!.metrics;
      if (m.updateTime === 0) continue;
      const q = m.waitingQueueSize;
      if (q < min) min = q;
      if (q > max) max = q;
    }
    const range = max - min;
    for (let i = 0; i < endpoints.length; i++) {
      const m = endpoints[i]!.metrics;
      if (m.updateTime === 0) out[i] = 0;
      else out[i] = range > 0 ? (max - m.waitingQueueSize) / range : 1;
    }
  }
}
