/**
 * `running-requests-size-scorer`: min-max over the requests each model server is running,
 * `(max − r) / (max − min)`: the fewest score 1, the most 0, and equal counts all score 1. Endpoints
 * never scraped (`updateTime` 0) score 0 and stay out of the range, like `queue-scorer`.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'running-requests-size-scorer';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new RunningRequestsSizeScorer(name),
});

export class RunningRequestsSizeScorer implements Scorer {
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
      const r = m.runningRequestsSize;
      if (r < min) min = r;
      if (r > max) max = r;
    }
    const range = max - min;
    for (let i = 0; i < endpoints.length; i++) {
      const m = endpoints[i]!.metrics;
      if (m.updateTime === 0) out[i] = 0;
      else out[i] = range > 0 ? (max - m.runningRequestsSize) / range : 1;
    }
  }
}
