/**
 * `weighted-random-picker`: samples `maxNumOfEndpoints` candidates without replacement with probability
 * proportional to score, by A-Res (Efraimidis–Spirakis): each endpoint with score w > 0 draws
 * key = U^(1/w), U uniform in (0,1), and the largest keys win. Endpoints scoring ≤ 0 rank last and are
 * taken only to fill up; when no score is > 0 the pick is uniformly random, as `random-picker`.
 * Keys are compared as ln(U)/w, which orders them the same way: U^(1/w) itself underflows to 0 for
 * small scores (0.01 and U < 0.0008) and would then tie with the zero scores.
 */
import { z } from 'zod';
import type { Rng } from '../../../core/rng.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Picker, ScoredEndpoints } from '../../framework/scheduling.js';
import { RandomPicker } from './random.js';

export const TYPE = 'weighted-random-picker';

const Params = z.object({ maxNumOfEndpoints: z.number().int().positive().default(1) }).strict();

export type WeightedRandomPickerParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new WeightedRandomPicker(name, params, handle),
});

export class WeightedRandomPicker implements Picker {
  readonly typedName: TypedName;
  private readonly max: number;
  private readonly rng: Rng;
  private readonly uniform: RandomPicker;
  // Scratch, reused across requests (pickers run synchronously): the top-N indices and their keys,
  // kept sorted by key, descending.
  private top = new Int32Array(8);
  private keys = new Float64Array(8);

  constructor(name: string, params: WeightedRandomPickerParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.max = params.maxNumOfEndpoints;
    this.rng = handle.rng;
    this.uniform = new RandomPicker(name, params, handle);
  }

  pick(_req: InferenceRequest, scored: ScoredEndpoints): Endpoint[] {
    const { endpoints, scores } = scored;
    const n = endpoints.length;
    let anyPositive = false;
    for (let i = 0; i < n; i++) {
      if (scores[i]! > 0) {
        anyPositive = true;
        break;
      }
    }
    if (!anyPositive) return this.uniform.sample(endpoints);

    const k = Math.min(this.max, n);
    if (this.top.length < k) {
      this.top = new Int32Array(Math.max(k, this.top.length * 2));
      this.keys = new Float64Array(this.top.length);
    }
    const top = this.top;
    const keys = this.keys;
    let len = 0;
    for (let i = 0; i < n; i++) {
      const w = scores[i]!;
      let key = -Infinity;
      if (w > 0) {
        let u = this.rng.next();
        if (u === 0) u = 1e-10; // ln 0 would rank it with the zero scores
        key = Math.log(u) / w;
        // A vanishing score can overflow the quotient; it still ranks above the zero scores.
        if (key === -Infinity) key = -Number.MAX_VALUE;
      }
      if (len === k && !(key > keys[len - 1]!)) continue;
      let p = len < k ? len : k - 1;
      while (p > 0 && key > keys[p - 1]!) {
        top[p] = top[p - 1]!;
        keys[p] = keys[p - 1]!;
        p--;
      }
      top[p] = i;
      keys[p] = key;
      if (len < k) len++;
    }
    const out = new Array<Endpoint>(len);
    for (let i = 0; i < len; i++) out[i] = endpoints[top[i]!]!;
    return out;
  }
}
