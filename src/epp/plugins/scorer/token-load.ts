/**
 * `token-load-scorer`: scores by the tokens the EPP has in flight to each endpoint (input plus the
 * estimated output, kept by `inflight-load-producer`): `1 − min(1, tokens / queueThresholdTokens)`.
 * The default threshold, 4194304, is 128 requests of 32K tokens.
 */
import { z } from 'zod';
import type { DataKey } from '../../framework/cycle-state.js';
import { INFLIGHT_LOAD, INFLIGHT_LOAD_ATTR } from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { DataConsumer } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'token-load-scorer';

const Params = z
  .object({
    queueThresholdTokens: z.number().int().positive().default(4194304),
    /** Deprecated and ignored. */
    requestTimeout: z.union([z.string(), z.number()]).optional(),
    // Accepted for upstream configs; llmd keeps one in-flight load per endpoint, whoever produces it.
    inFlightLoadProducerName: z.string().optional(),
  })
  .strict();

export type TokenLoadParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new TokenLoadScorer(name, params, handle),
});

const CONSUMES: readonly DataKey<unknown>[] = [INFLIGHT_LOAD];

export class TokenLoadScorer implements Scorer, DataConsumer {
  readonly typedName: TypedName;
  readonly category = 'distribution';
  readonly consumes = CONSUMES;
  private readonly threshold: number;

  constructor(name: string, params: TokenLoadParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.threshold = params.queueThresholdTokens;
    if (params.requestTimeout !== undefined) {
      handle.logger.warn(
        { plugin: name, plugin_type: TYPE, param: 'requestTimeout' },
        'requestTimeout is deprecated and ignored; inflight-load-producer tracks in-flight requests',
      );
    }
  }

  score(_req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const t = this.threshold;
    for (let i = 0; i < endpoints.length; i++) {
      const tokens = endpoints[i]!.attributes.get(INFLIGHT_LOAD_ATTR)?.tokens ?? 0;
      out[i] = tokens <= 0 ? 1 : 1 - Math.min(1, tokens / t);
    }
  }
}
