/**
 * `kv-cache-utilization-scorer`: `1 − kvCacheUsagePercent` (a fraction 0..1), so the emptiest KV cache
 * scores highest. Endpoints never scraped (`updateTime` 0) score 0, as upstream leaves them unscored.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'kv-cache-utilization-scorer';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new KvCacheUtilizationScorer(name),
});

export class KvCacheUtilizationScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category = 'distribution';

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  score(_req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    for (let i = 0; i < endpoints.length; i++) {
      const m = endpoints[i]!.metrics;
      out[i] = m.updateTime === 0 ? 0 : 1 - m.kvCacheUsagePercent;
    }
  }
}
