/**
 * `utilization-filter`: drops every endpoint that exceeds any condition's `maxValue` (value > max) for
 * its metric — `active-requests` (the EPP's own in-flight requests to the endpoint), `running-requests`,
 * `waiting-queue` (the model server's scraped gauges) or `kv-cache-utilization` (fraction 0..1). When
 * every endpoint is dropped, `fallbackOnEmpty` keeps them all rather than failing the profile.
 */
import { z } from 'zod';
import type { DataKey } from '../../framework/cycle-state.js';
import { INFLIGHT_LOAD, INFLIGHT_LOAD_ATTR } from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { DataConsumer } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';

export const TYPE = 'utilization-filter';

const METRICS = ['active-requests', 'running-requests', 'waiting-queue', 'kv-cache-utilization'] as const;

const Params = z
  .object({
    conditions: z
      .array(z.object({ metric: z.enum(METRICS), maxValue: z.number().nonnegative() }).strict())
      .min(1),
    fallbackOnEmpty: z.boolean().default(false),
    // Accepted for upstream configs; llmd keeps one in-flight load per endpoint, whoever produces it.
    inFlightLoadProducerName: z.string().optional(),
  })
  .strict();

export type UtilizationFilterParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params) => new UtilizationFilter(name, params),
});

const ACTIVE = 0;
const RUNNING = 1;
const WAITING = 2;
const KV = 3;

export class UtilizationFilter implements Filter, DataConsumer {
  readonly typedName: TypedName;
  readonly consumes: readonly DataKey<unknown>[];
  private readonly metric: Int8Array;
  private readonly max: Float64Array;
  private readonly fallbackOnEmpty: boolean;

  constructor(name: string, params: UtilizationFilterParams) {
    this.typedName = { type: TYPE, name };
    const n = params.conditions.length;
    this.metric = new Int8Array(n);
    this.max = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const c = params.conditions[i]!;
      this.metric[i] = METRICS.indexOf(c.metric);
      this.max[i] = c.maxValue;
    }
    this.fallbackOnEmpty = params.fallbackOnEmpty;
    this.consumes = this.metric.includes(ACTIVE) ? [INFLIGHT_LOAD] : [];
  }

  /** Whether `e` is within every condition. */
  within(e: Endpoint): boolean {
    for (let c = 0; c < this.metric.length; c++) {
      let v: number;
      switch (this.metric[c]) {
        case ACTIVE:
          v = e.attributes.get(INFLIGHT_LOAD_ATTR)?.requests ?? 0;
          break;
        case RUNNING:
          v = e.metrics.runningRequestsSize;
          break;
        case WAITING:
          v = e.metrics.waitingQueueSize;
          break;
        case KV:
        default:
          v = e.metrics.kvCacheUsagePercent;
      }
      if (v > this.max[c]!) return false;
    }
    return true;
  }

  filter(_req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    let out: Endpoint[] | null = null;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      if (this.within(e)) {
        if (out !== null) out.push(e);
      } else if (out === null) {
        out = endpoints.slice(0, i);
      }
    }
    if (out === null) return endpoints;
    if (out.length === 0 && this.fallbackOnEmpty) return endpoints;
    return out;
  }
}
