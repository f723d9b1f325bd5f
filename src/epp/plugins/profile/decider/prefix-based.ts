/**
 * `prefix-based-pd-decider`: a separate prefill pays off when the decode endpoint would have to
 * compute many prompt tokens itself. With `nonCachedTokens` N > 0, disaggregate iff
 * `promptTokens − cached ≥ N`, where the prompt's tokens come from the TokenizedRequest and `cached`
 * is the decode endpoint's predicted prefix match (matched blocks × block size) from
 * PrefixCacheMatchInfo. `promptTokens` P > 0 also keeps prompts shorter than P local. N = 0 disables.
 */
import { z } from 'zod';
import { PREFIX_CACHE_MATCH_INFO, TOKENIZED_REQUEST, matchBlocksOf } from '../../../framework/data-keys.js';
import type { Endpoint } from '../../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../../framework/plugin.js';
import type { InferenceRequest } from '../../../framework/request.js';
import type { DataConsumer } from '../../../framework/requestcontrol.js';
import type { PdDecider } from '../../../framework/scheduling.js';

export const TYPE = 'prefix-based-pd-decider';

export const params = z
  .object({
    nonCachedTokens: z.number().int().nonnegative().default(0),
    promptTokens: z.number().int().nonnegative().default(0),
  })
  .strict();

export type PrefixBasedPdDeciderParams = z.output<typeof params>;

export const definition = definePlugin({
  type: TYPE,
  params,
  create: (name, p) => new PrefixBasedPdDecider(name, p),
});

export class PrefixBasedPdDecider implements PdDecider, DataConsumer {
  readonly typedName: TypedName;
  readonly consumes = [PREFIX_CACHE_MATCH_INFO, TOKENIZED_REQUEST];

  constructor(
    name: string,
    private readonly p: PrefixBasedPdDeciderParams,
  ) {
    this.typedName = { type: TYPE, name };
  }

  disaggregate(req: InferenceRequest, decode: Endpoint): { readonly yes: boolean; readonly reason: string } {
    const threshold = this.p.nonCachedTokens;
    if (threshold === 0) return { yes: false, reason: 'disabled (nonCachedTokens is 0)' };
    const prompt = req.state.read(TOKENIZED_REQUEST)?.tokenCount ?? 0;
    if (this.p.promptTokens > 0 && prompt < this.p.promptTokens) {
      return { yes: false, reason: `${prompt} prompt tokens < ${this.p.promptTokens}` };
    }
    const info = req.state.read(PREFIX_CACHE_MATCH_INFO);
    const cached = info === undefined ? 0 : matchBlocksOf(info, decode.slot) * info.blockSizeTokens;
    const nonCached = prompt - cached;
    return nonCached >= threshold
      ? { yes: true, reason: `${nonCached} non-cached tokens ≥ ${threshold}` }
      : { yes: false, reason: `${nonCached} non-cached tokens < ${threshold}` };
  }
}
