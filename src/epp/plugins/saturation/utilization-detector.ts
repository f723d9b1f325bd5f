/**
 * `utilization-detector`: pool saturation from the model servers' own metrics (upstream's default
 * saturation detector). An endpoint's saturation is `max(queue / queueDepthThreshold, kv /
 * kvCacheUtilThreshold)`, 1 when its metrics are stale or missing; the pool's is the mean. Used by
 * admission (sheddable requests are refused when the pool is saturated) and, as a Filter, to drop
 * endpoints that are stale or over `threshold × (1 + headroom)` — all of them stay if all would go.
 */
import { z } from 'zod';
import { parseDuration } from '../../../core/duration.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';
import type { SaturationDetector } from '../../handling/director.js';

export const TYPE = 'utilization-detector';

const Params = z
  .object({
    queueDepthThreshold: z.number().positive().default(5),
    kvCacheUtilThreshold: z.number().positive().max(1).default(0.8),
    metricsStalenessThreshold: z.union([z.string(), z.number()]).default('200ms'),
    headroom: z.number().min(0).default(0),
  })
  .strict();

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, p, handle) => new UtilizationDetector(name, p, handle),
});

export class UtilizationDetector implements SaturationDetector, Filter {
  readonly typedName: TypedName;
  private readonly staleMs: number;

  constructor(
    name: string,
    private readonly p: z.output<typeof Params>,
    private readonly handle: PluginHandle,
  ) {
    this.typedName = { type: TYPE, name };
    this.staleMs = parseDuration(p.metricsStalenessThreshold, 'metricsStalenessThreshold');
  }

  private stale(e: Endpoint, now: number): boolean {
    const t = e.metrics.updateTime;
    return t === 0 || now - t > this.staleMs;
  }

  endpointSaturation(e: Endpoint, now: number): number {
    if (this.stale(e, now)) return 1;
    const m = e.metrics;
    return Math.max(
      m.waitingQueueSize / this.p.queueDepthThreshold,
      m.kvCacheUsagePercent / this.p.kvCacheUtilThreshold,
    );
  }

  saturation(endpoints: readonly Endpoint[]): number {
    if (endpoints.length === 0) return 1;
    const now = this.handle.clock();
    let sum = 0;
    for (const e of endpoints) sum += this.endpointSaturation(e, now);
    return sum / endpoints.length;
  }

  filter(_req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const now = this.handle.clock();
    const q = this.p.queueDepthThreshold * (1 + this.p.headroom);
    const kv = Math.min(1, this.p.kvCacheUtilThreshold * (1 + this.p.headroom));
    const kept = endpoints.filter(
      (e) => !this.stale(e, now) && e.metrics.waitingQueueSize <= q && e.metrics.kvCacheUsagePercent <= kv,
    );
    return kept.length > 0 ? kept : endpoints;
  }
}
