/**
 * `load-aware-scorer`: an empty waiting queue scores 0.5 (room is left above it for a future capacity
 * signal); a queue of q scores `0.5 · (1 − min(q, threshold) / threshold)`, reaching 0 at `threshold`.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'load-aware-scorer';

const Params = z.object({ threshold: z.number().int().positive().default(128) }).strict();

export type LoadAwareParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params) => new LoadAwareScorer(name, params),
});

export class LoadAwareScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category = 'distribution';
  private readonly threshold: number;

  constructor(name: string, params: LoadAwareParams) {
    this.typedName = { type: TYPE, name };
    this.threshold = params.threshold;
  }

  score(_req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const t = this.threshold;
    for (let i = 0; i < endpoints.length; i++) {
      const q = endpoints[i]!.metrics.waitingQueueSize;
      out[i] = q === 0 ? 0.5 : 0.5 * (1 - Math.min(q, t) / t);
    }
  }
}
