/** `always-disagg-pd-decider`: every request gets a separate prefill (tests, benchmarks, demos). */
import { z } from 'zod';
import type { Endpoint } from '../../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../../framework/plugin.js';
import type { InferenceRequest } from '../../../framework/request.js';
import type { PdDecider } from '../../../framework/scheduling.js';

export const TYPE = 'always-disagg-pd-decider';

export const params = z.object({}).strict();

export const definition = definePlugin({
  type: TYPE,
  params,
  create: (name) => new AlwaysDisaggPdDecider(name),
});

const YES = Object.freeze({ yes: true, reason: 'always' });

export class AlwaysDisaggPdDecider implements PdDecider {
  readonly typedName: TypedName;

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  disaggregate(
    _req: InferenceRequest,
    _decode: Endpoint,
  ): { readonly yes: boolean; readonly reason: string } {
    return YES;
  }
}
