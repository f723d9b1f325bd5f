/**
 * `max-score-picker` (the default picker): the `maxNumOfEndpoints` highest totals, best first. The
 * candidates are shuffled before a stable sort by score, so equal scores are ordered at random (seeded)
 * rather than by their position in the pool, which would pile ties onto the same endpoint.
 */
import { z } from 'zod';
import type { Rng } from '../../../core/rng.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Picker, ScoredEndpoints } from '../../framework/scheduling.js';
import { partialShuffle } from './random.js';

export const TYPE = 'max-score-picker';

const Params = z.object({ maxNumOfEndpoints: z.number().int().positive().default(1) }).strict();

export type MaxScorePickerParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new MaxScorePicker(name, params, handle),
});

export class MaxScorePicker implements Picker {
  readonly typedName: TypedName;
  private readonly max: number;
  private readonly rng: Rng;
  // Scratch, reused across requests (pickers run synchronously): the shuffled candidate order and the
  // top-N indices kept sorted by score, descending.
  private order = new Int32Array(64);
  private top = new Int32Array(8);

  constructor(name: string, params: MaxScorePickerParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.max = params.maxNumOfEndpoints;
    this.rng = handle.rng;
  }

  pick(_req: InferenceRequest, scored: ScoredEndpoints): Endpoint[] {
    const { endpoints, scores } = scored;
    const n = endpoints.length;
    if (this.order.length < n) this.order = new Int32Array(Math.max(n, this.order.length * 2));
    const order = this.order;
    for (let i = 0; i < n; i++) order[i] = i;
    partialShuffle(this.rng, order, n, n);

    // Stable top-N selection over the shuffled order: a candidate goes after every kept one with a
    // score ≥ its own, which is what a stable descending sort followed by a cut at N gives.
    const k = Math.min(this.max, n);
    if (this.top.length < k) this.top = new Int32Array(Math.max(k, this.top.length * 2));
    const top = this.top;
    let len = 0;
    for (let r = 0; r < n; r++) {
      const idx = order[r]!;
      const s = scores[idx]!;
      if (len === k && !(s > scores[top[len - 1]!]!)) continue;
      let p = len < k ? len : k - 1;
      while (p > 0 && s > scores[top[p - 1]!]!) {
        top[p] = top[p - 1]!;
        p--;
      }
      top[p] = idx;
      if (len < k) len++;
    }
    const out = new Array<Endpoint>(len);
    for (let i = 0; i < len; i++) out[i] = endpoints[top[i]!]!;
    return out;
  }
}
