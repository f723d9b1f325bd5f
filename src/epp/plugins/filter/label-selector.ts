/**
 * `label-selector-filter` (deprecated alias `by-label-selector`): keeps the endpoints whose labels
 * match a Kubernetes `LabelSelector` — every `matchLabels` pair, and every `matchExpressions`
 * requirement (`In`: the label is one of `values`; `NotIn`: absent or none of `values`; `Exists`;
 * `DoesNotExist`). An empty selector matches every endpoint, as `metav1.LabelSelectorAsSelector` does.
 */
import { z } from 'zod';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';

export const TYPE = 'label-selector-filter';

const Requirement = z
  .object({
    key: z.string().min(1),
    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
    values: z.array(z.string()).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const n = r.values?.length ?? 0;
    if ((r.operator === 'In' || r.operator === 'NotIn') && n === 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['values'],
        message: `must be non-empty when operator is ${r.operator}`,
      });
    }
    if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && n > 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['values'],
        message: `may not be specified when operator is ${r.operator}`,
      });
    }
  });

const Params = z
  .object({
    matchLabels: z.record(z.string()).default({}),
    matchExpressions: z.array(Requirement).default([]),
  })
  .strict();

export type LabelSelector = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  aliases: ['by-label-selector'],
  params: Params,
  create: (name, params) => new LabelSelectorFilter(name, params),
});

const IN = 0;
const NOT_IN = 1;
const EXISTS = 2;
const DOES_NOT_EXIST = 3;
const OPS = { In: IN, NotIn: NOT_IN, Exists: EXISTS, DoesNotExist: DOES_NOT_EXIST } as const;

export class LabelSelectorFilter implements Filter {
  readonly typedName: TypedName;
  // The selector compiled to parallel arrays: `matchLabels` become single-value `In` requirements.
  private readonly ops: number[] = [];
  private readonly keys: string[] = [];
  private readonly values: ReadonlySet<string>[] = [];

  constructor(name: string, selector: LabelSelector) {
    this.typedName = { type: TYPE, name };
    for (const [key, value] of Object.entries(selector.matchLabels)) this.add(IN, key, [value]);
    for (const r of selector.matchExpressions) this.add(OPS[r.operator], r.key, r.values ?? []);
  }

  private add(op: number, key: string, values: readonly string[]): void {
    this.ops.push(op);
    this.keys.push(key);
    this.values.push(new Set(values));
  }

  matches(labels: Readonly<Record<string, string>>): boolean {
    for (let r = 0; r < this.ops.length; r++) {
      const key = this.keys[r]!;
      // Own properties only: `toString` is a valid label name and must not find Object.prototype's.
      const v = Object.hasOwn(labels, key) ? labels[key] : undefined;
      switch (this.ops[r]) {
        case IN:
          if (v === undefined || !this.values[r]!.has(v)) return false;
          break;
        case NOT_IN:
          if (v !== undefined && this.values[r]!.has(v)) return false;
          break;
        case EXISTS:
          if (v === undefined) return false;
          break;
        default:
          if (v !== undefined) return false;
      }
    }
    return true;
  }

  filter(_req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    if (this.ops.length === 0) return endpoints;
    let out: Endpoint[] | null = null;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      if (this.matches(e.meta.labels)) {
        if (out !== null) out.push(e);
      } else if (out === null) {
        out = endpoints.slice(0, i);
      }
    }
    return out ?? endpoints;
  }
}
