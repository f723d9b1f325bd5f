/**
 * `decode-filter`: keeps endpoints that can decode — `llm-d.ai/role` one of `decode`, `prefill-decode`,
 * `both`, `encode-prefill-decode` — and endpoints without the label (an unlabelled pod is a decode pod).
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';
import { DECODE_ROLES, ROLE_LABEL, keepByLabel } from './roles.js';

export const TYPE = 'decode-filter';

export const definition = definePlugin({
  type: TYPE,
  params: z.object({}).strict(),
  create: (name) => new DecodeFilter(name),
});

export class DecodeFilter implements Filter {
  readonly typedName: TypedName;

  constructor(name: string) {
    this.typedName = { type: TYPE, name };
  }

  filter(_req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    return keepByLabel(endpoints, ROLE_LABEL, DECODE_ROLES, true);
  }
}
