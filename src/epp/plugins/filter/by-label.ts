/**
 * `by-label` (deprecated; use `label-selector-filter`): keeps an endpoint when its value of `label` is
 * one of `validValues`, or when it lacks the label and `allowsNoLabel` is set.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';
import { keepByLabel } from './roles.js';

export const TYPE = 'by-label';

const Params = z
  .object({
    label: z.string().min(1),
    validValues: z.array(z.string()).default([]),
    allowsNoLabel: z.boolean().default(false),
  })
  .strict();

export type ByLabelParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  deprecated: 'plugin type by-label is deprecated; use label-selector-filter',
  params: Params,
  create: (name, params) => new ByLabelFilter(name, params),
});

export class ByLabelFilter implements Filter {
  readonly typedName: TypedName;
  private readonly label: string;
  private readonly values: ReadonlySet<string>;
  private readonly allowsNoLabel: boolean;

  constructor(name: string, params: ByLabelParams) {
    this.typedName = { type: TYPE, name };
    this.label = params.label;
    this.values = new Set(params.validValues);
    this.allowsNoLabel = params.allowsNoLabel;
  }

  filter(_req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    return keepByLabel(endpoints, this.label, this.values, this.allowsNoLabel);
  }
}
