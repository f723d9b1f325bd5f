import { describe, expect, it } from 'vitest';
import { ByLabelFilter, TYPE, definition } from '../../../../src/epp/plugins/filter/by-label.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

describe('by-label', () => {
  const labels: Record<string, string>[] = [{ tier: 'gold' }, { tier: 'silver' }, {}, { other: 'gold' }];
  const eps = makeEndpoints(4, (i) => ({ labels: labels[i] }));

  const cases: [string, Record<string, unknown>, number[]][] = [
    ['valid values only', { label: 'tier', validValues: ['gold'] }, [0]],
    ['several valid values', { label: 'tier', validValues: ['gold', 'silver'] }, [0, 1]],
    ['missing label allowed', { label: 'tier', validValues: ['gold'], allowsNoLabel: true }, [0, 2, 3]],
    ['no valid values, missing label allowed', { label: 'tier', allowsNoLabel: true }, [2, 3]],
    ['no valid values (default) and no missing label (default)', { label: 'tier' }, []],
  ];

  it.each(cases)('keeps the matching endpoints: %s', (_title, params, kept) => {
    const f = create<ByLabelFilter>(definition, params);
    expect(f.filter(makeRequest(), eps)).toEqual(kept.map((i) => eps[i]));
  });

  it('does not mistake an Object.prototype member for a label', () => {
    const f = create<ByLabelFilter>(definition, { label: 'toString', validValues: ['x'] });
    expect(f.filter(makeRequest(), eps)).toEqual([]);
    const g = create<ByLabelFilter>(definition, { label: 'toString', allowsNoLabel: true });
    expect(g.filter(makeRequest(), eps)).toBe(eps);
  });

  it('is deprecated in favour of label-selector-filter', () => {
    expect(definition.type).toBe(TYPE);
    expect(definition.deprecated).toMatch(/label-selector-filter/);
  });

  it('rejects a missing label, bad types and unknown fields', () => {
    expect(() => create(definition, {})).toThrow();
    expect(() => create(definition, { label: '' })).toThrow();
    expect(() => create(definition, { label: 'a', validValues: 'gold' })).toThrow();
    expect(() => create(definition, { label: 'a', allowsNoLabel: 'yes' })).toThrow();
    expect(() => create(definition, { label: 'a', allowNoLabel: true })).toThrow();
  });
});
