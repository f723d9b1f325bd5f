/**
 * The `llm-d.ai/role` label and which of its values each disaggregation stage accepts. `both` is the
 * deprecated spelling of `prefill-decode`; pods without the label count as decode.
 */
import type { Endpoint } from '../../framework/endpoint.js';

export const ROLE_LABEL = 'llm-d.ai/role';

export const DECODE_ROLES: ReadonlySet<string> = new Set([
  'decode',
  'prefill-decode',
  'both',
  'encode-prefill-decode',
]);

export const PREFILL_ROLES: ReadonlySet<string> = new Set([
  'prefill',
  'encode-prefill',
  'prefill-decode',
  'both',
  'encode-prefill-decode',
]);

export const ENCODE_ROLES: ReadonlySet<string> = new Set([
  'encode',
  'encode-prefill',
  'encode-prefill-decode',
]);

/**
 * The endpoints whose `label` value is in `values` (or that lack the label, when `allowsNoLabel`).
 * Returns the input array itself when nothing is dropped, so the common all-pass case allocates nothing.
 */
export function keepByLabel(
  endpoints: readonly Endpoint[],
  label: string,
  values: ReadonlySet<string>,
  allowsNoLabel: boolean,
): readonly Endpoint[] {
  let out: Endpoint[] | null = null;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    const labels = e.meta.labels;
    // Own properties only: `toString` is a valid label name and must not find Object.prototype's.
    const v = Object.hasOwn(labels, label) ? labels[label] : undefined;
    const keep = v === undefined ? allowsNoLabel : values.has(v);
    if (keep) {
      if (out !== null) out.push(e);
    } else if (out === null) {
      out = endpoints.slice(0, i);
    }
  }
  return out ?? endpoints;
}
