/**
 * `random-picker`: ignores the scores and picks `maxNumOfEndpoints` candidates uniformly at random
 * (a partial Fisher–Yates shuffle over the seeded rng).
 */
import { z } from 'zod';
import type { Rng } from '../../../core/rng.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Picker, ScoredEndpoints } from '../../framework/scheduling.js';

export const TYPE = 'random-picker';

const Params = z.object({ maxNumOfEndpoints: z.number().int().positive().default(1) }).strict();

export type RandomPickerParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new RandomPicker(name, params, handle),
});

/**
 * Shuffles the first `take` positions of `order[0..n)` in place (each a uniform draw from the rest),
 * so `order[0..take)` is a uniform random sample in random order.
 */
export function partialShuffle(rng: Rng, order: Int32Array, n: number, take: number): void {
  const k = Math.min(take, n - 1);
  for (let i = 0; i < k; i++) {
    const j = rng.int(i, n - 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
}

export class RandomPicker implements Picker {
  readonly typedName: TypedName;
  private readonly max: number;
  private readonly rng: Rng;
  /** Candidate indices; pickers run synchronously, so one buffer serves every request. */
  private order = new Int32Array(64);

  constructor(name: string, params: RandomPickerParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.max = params.maxNumOfEndpoints;
    this.rng = handle.rng;
  }

  pick(_req: InferenceRequest, scored: ScoredEndpoints): Endpoint[] {
    return this.sample(scored.endpoints);
  }

  /** `maxNumOfEndpoints` endpoints drawn uniformly without replacement. */
  sample(endpoints: readonly Endpoint[]): Endpoint[] {
    const n = endpoints.length;
    if (this.order.length < n) this.order = new Int32Array(Math.max(n, this.order.length * 2));
    const order = this.order;
    for (let i = 0; i < n; i++) order[i] = i;
    const take = Math.min(this.max, n);
    partialShuffle(this.rng, order, n, take);
    const out = new Array<Endpoint>(take);
    for (let i = 0; i < take; i++) out[i] = endpoints[order[i]!]!;
    return out;
  }
}
