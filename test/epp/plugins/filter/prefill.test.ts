import { describe, expect, it } from 'vitest';
import { PrefillFilter, TYPE, definition } from '../../../../src/epp/plugins/filter/prefill.js';
import { ROLE_LABEL } from '../../../../src/epp/plugins/filter/roles.js';
import { create, makeEndpoint, makeEndpoints, makeRequest } from '../../helpers.js';

describe('prefill-filter', () => {
  const roles: [string, boolean][] = [
    ['prefill', true],
    ['encode-prefill', true],
    ['prefill-decode', true],
    ['both', true],
    ['encode-prefill-decode', true],
    ['decode', false],
    ['encode', false],
    ['Prefill', false],
  ];

  it.each(roles)('with role %s keeps the endpoint: %s', (role, kept) => {
    const f = create<PrefillFilter>(definition);
    const e = makeEndpoint({ labels: { [ROLE_LABEL]: role } });
    expect(f.filter(makeRequest(), [e])).toEqual(kept ? [e] : []);
  });

  it('drops endpoints without the role label, which are decode pods', () => {
    const f = create<PrefillFilter>(definition);
    const eps = makeEndpoints(3, (i): { labels: Record<string, string> } => ({
      labels: i === 1 ? { [ROLE_LABEL]: 'prefill' } : {},
    }));
    expect(f.filter(makeRequest(), eps)).toEqual([eps[1]]);
  });

  it('ignores a role written under another label', () => {
    const f = create<PrefillFilter>(definition);
    const e = makeEndpoint({ labels: { role: 'prefill' } });
    expect(f.filter(makeRequest(), [e])).toEqual([]);
  });

  it('returns the input array itself when every endpoint passes', () => {
    const f = create<PrefillFilter>(definition);
    const eps = makeEndpoints(3, () => ({ labels: { [ROLE_LABEL]: 'prefill' } }));
    expect(f.filter(makeRequest(), eps)).toBe(eps);
  });

  it('is named by its config name and rejects parameters', () => {
    expect(create<PrefillFilter>(definition, {}, undefined, 'p').typedName).toEqual({
      type: TYPE,
      name: 'p',
    });
    expect(() => create(definition, { allowsNoLabel: true })).toThrow();
  });
});
