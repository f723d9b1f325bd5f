/**
 * `precise-prefix-cache-scorer` (deprecated upstream): the precise producer and its scorer in one
 * plugin, as configurations before the producer/scorer split wrote it. It takes the producer's
 * parameters and scores upstream's way: each endpoint's cached prefix min-max normalised over the
 * endpoints the index knows something about (all of them 1 when they tie), 0 for the others.
 * New configurations use `precise-prefix-cache-producer` with `prefix-cache-scorer`.
 */
import { PREFIX_CACHE_MATCH_INFO, matchBlocksOf } from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';
import {
  PrecisePrefixCacheProducer,
  params,
  type PrecisePrefixCacheParams,
} from '../producer/precise-prefix-cache.js';

export const TYPE = 'precise-prefix-cache-scorer';

export const definition = definePlugin({
  type: TYPE,
  deprecated:
    'precise-prefix-cache-scorer is deprecated: configure precise-prefix-cache-producer (same parameters) and prefix-cache-scorer',
  params,
  create: (name, p, handle) => new PrecisePrefixCacheScorer(name, p, handle),
});

export class PrecisePrefixCacheScorer extends PrecisePrefixCacheProducer implements Scorer {
  override readonly typedName: TypedName;
  readonly category = 'affinity';

  constructor(name: string, p: PrecisePrefixCacheParams, handle: PluginHandle) {
    super(name, p, handle);
    this.typedName = { type: TYPE, name };
  }

  score(req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const n = endpoints.length;
    out.fill(0, 0, n);
    const info = req.state.readAs(PREFIX_CACHE_MATCH_INFO, this.typedName.name);
    if (info === undefined) return;
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < n; i++) {
      const b = matchBlocksOf(info, endpoints[i]!.slot);
      if (b <= 0) continue;
      if (b < min) min = b;
      if (b > max) max = b;
    }
    if (max === -Infinity) return;
    for (let i = 0; i < n; i++) {
      const b = matchBlocksOf(info, endpoints[i]!.slot);
      if (b > 0) out[i] = max === min ? 1 : (b - min) / (max - min);
    }
  }
}
