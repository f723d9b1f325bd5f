/**
 * `lora-affinity-scorer`: prefers servers that already have the target model (LoRA adapter) loaded.
 * Active there → 1.0; else room for one more adapter (`|active| + |waiting| < maxActiveModels`) → 0.8;
 * else already queued to load there → 0.6; else 0.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'lora-affinity-scorer';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new LoraAffinityScorer(name),
});

export class LoraAffinityScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category = 'affinity';

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  score(req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const model = req.targetModel;
    for (let i = 0; i < endpoints.length; i++) {
      const m = endpoints[i]!.metrics;
      if (m.activeModels.has(model)) out[i] = 1;
      else if (m.activeModels.size + m.waitingModels.size < m.maxActiveModels) out[i] = 0.8;
      else if (m.waitingModels.has(model)) out[i] = 0.6;
      else out[i] = 0;
    }
  }
}
