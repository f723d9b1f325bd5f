import { describe, expect, it } from 'vitest';
import { DecodeFilter, TYPE, definition } from '../../../../src/epp/plugins/filter/decode.js';
import { ROLE_LABEL } from '../../../../src/epp/plugins/filter/roles.js';
import { create, makeEndpoint, makeEndpoints, makeRequest } from '../../helpers.js';

describe('decode-filter', () => {
  const roles: [string | undefined, boolean][] = [
    ['decode', true],
    ['prefill-decode', true],
    ['both', true],
    ['encode-prefill-decode', true],
    [undefined, true],
    ['prefill', false],
    ['encode', false],
    ['encode-prefill', false],
    ['Decode', false],
    ['', false],
  ];

  it.each(roles)('with role %s keeps the endpoint: %s', (role, kept) => {
    const f = create<DecodeFilter>(definition);
    const e = makeEndpoint({ labels: role === undefined ? {} : { [ROLE_LABEL]: role } });
    expect(f.filter(makeRequest(), [e])).toEqual(kept ? [e] : []);
  });

  it('keeps the order of the endpoints it keeps', () => {
    const f = create<DecodeFilter>(definition);
    const eps = makeEndpoints(5, (i) => ({ labels: { [ROLE_LABEL]: i % 2 ? 'prefill' : 'decode' } }));
    expect(f.filter(makeRequest(), eps)).toEqual([eps[0], eps[2], eps[4]]);
  });

  it('returns the input array itself when every endpoint passes', () => {
    const f = create<DecodeFilter>(definition);
    const eps = makeEndpoints(3);
    expect(f.filter(makeRequest(), eps)).toBe(eps);
  });

  it('is named by its config name and rejects parameters', () => {
    expect(create<DecodeFilter>(definition, {}, undefined, 'd').typedName).toEqual({ type: TYPE, name: 'd' });
    expect(() => create(definition, { label: 'x' })).toThrow();
  });
});
