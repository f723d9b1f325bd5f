/**
 * `prefill-filter`: keeps endpoints that can prefill — `llm-d.ai/role` one of `prefill`,
 * `encode-prefill`, `prefill-decode`, `both`, `encode-prefill-decode`. Unlabelled pods are decode pods
 * and are dropped.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';
import { PREFILL_ROLES, ROLE_LABEL, keepByLabel } from './roles.js';

export const TYPE = 'prefill-filter';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new PrefillFilter(name),
});

export class PrefillFilter implements Filter {
  readonly typedName: TypedName;

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  filter(_req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    return keepByLabel(endpoints, ROLE_LABEL, PREFILL_ROLES, false);
  }
}
