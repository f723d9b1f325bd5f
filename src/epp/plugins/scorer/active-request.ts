/**
 * `active-request-scorer`: scores by the requests the EPP itself has in flight to each endpoint (kept
 * by `inflight-load-producer`). A count ≤ `idleThreshold` scores 1; a busier endpoint scores
 * `(maxCount − count) / maxCount · maxBusyScore`, so `maxBusyScore` < 1 opens a gap between idle and
 * busy endpoints. `requestTimeout` is accepted and ignored: the producer tracks request lifetimes now.
 */
import { z } from 'zod';
import type { DataKey } from '../../framework/cycle-state.js';
import { INFLIGHT_LOAD, INFLIGHT_LOAD_ATTR } from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { DataConsumer } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'active-request-scorer';

const Params = z
  .object({
    /** Deprecated and ignored. */
    requestTimeout: z.union([z.string(), z.number()]).optional(),
    idleThreshold: z.number().int().nonnegative().default(0),
    maxBusyScore: z.number().min(0).max(1).default(1),
    // Accepted for upstream configs; llmd keeps one in-flight load per endpoint, whoever produces it.
    inFlightLoadProducerName: z.string().optional(),
  })
  .strict();

export type ActiveRequestParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new ActiveRequestScorer(name, params, handle),
});

const CONSUMES: readonly DataKey<unknown>[] = [INFLIGHT_LOAD];

export class ActiveRequestScorer implements Scorer, DataConsumer {
  readonly typedName: TypedName;
  readonly category = 'distribution';
  readonly consumes = CONSUMES;
  private readonly idleThreshold: number;
  private readonly maxBusyScore: number;

  constructor(name: string, params: ActiveRequestParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.idleThreshold = params.idleThreshold;
    this.maxBusyScore = params.maxBusyScore;
    if (params.requestTimeout !== undefined) {
      handle.logger.warn(
        { plugin: name, plugin_type: TYPE, param: 'requestTimeout' },
        'requestTimeout is deprecated and ignored; inflight-load-producer tracks in-flight requests',
      );
    }
  }

  score(_req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const n = endpoints.length;
    let maxCount = 0;
    for (let i = 0; i < n; i++) {
      const c = endpoints[i]!.attributes.get(INFLIGHT_LOAD_ATTR)?.requests ?? 0;
      out[i] = c;
      if (c > maxCount) maxCount = c;
    }
    // `out` held the counts; every count is > 0 wherever the division runs, so maxCount > 0 there.
    for (let i = 0; i < n; i++) {
      const c = out[i]!;
      out[i] = c <= this.idleThreshold ? 1 : ((maxCount - c) / maxCount) * this.maxBusyScore;
    }
  }
}
