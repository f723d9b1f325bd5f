import { describe, expect, it } from 'vitest';
import { LabelSelectorFilter, TYPE, definition } from '../../../../src/epp/plugins/filter/label-selector.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

describe('label-selector-filter', () => {
  const labels: Record<string, string>[] = [
    { app: 'vllm', tier: 'gold' },
    { app: 'vllm', tier: 'silver' },
    { app: 'vllm' },
    { app: 'sglang', tier: 'gold' },
  ];
  const eps = makeEndpoints(4, (i) => ({ labels: labels[i] }));

  const cases: [string, Record<string, unknown>, number[]][] = [
    ['an empty selector matches everything', {}, [0, 1, 2, 3]],
    ['matchLabels', { matchLabels: { app: 'vllm' } }, [0, 1, 2]],
    ['matchLabels are ANDed', { matchLabels: { app: 'vllm', tier: 'gold' } }, [0]],
    ['In', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['gold', 'bronze'] }] }, [0, 3]],
    [
      'NotIn keeps endpoints without the label',
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['gold'] }] },
      [1, 2],
    ],
    ['Exists', { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, [0, 1, 3]],
    ['DoesNotExist', { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, [2]],
    [
      'matchLabels and matchExpressions together',
      { matchLabels: { app: 'vllm' }, matchExpressions: [{ key: 'tier', operator: 'Exists', values: [] }] },
      [0, 1],
    ],
    [
      'several expressions are ANDed',
      {
        matchExpressions: [
          { key: 'app', operator: 'In', values: ['vllm', 'sglang'] },
          { key: 'tier', operator: 'NotIn', values: ['silver'] },
        ],
      },
      [0, 2, 3],
    ],
    ['nothing matches', { matchLabels: { app: 'trt' } }, []],
  ];

  it.each(cases)('%s', (_title, params, kept) => {
    const f = create<LabelSelectorFilter>(definition, params);
    expect(f.filter(makeRequest(), eps)).toEqual(kept.map((i) => eps[i]));
  });

  it('returns the input array itself when every endpoint matches', () => {
    const f = create<LabelSelectorFilter>(definition, {
      matchExpressions: [{ key: 'app', operator: 'Exists' }],
    });
    expect(f.filter(makeRequest(), eps)).toBe(eps);
  });

  it('does not mistake an Object.prototype member for a label', () => {
    const exists = create<LabelSelectorFilter>(definition, {
      matchExpressions: [{ key: 'constructor', operator: 'Exists' }],
    });
    expect(exists.filter(makeRequest(), eps)).toEqual([]);
    const absent = create<LabelSelectorFilter>(definition, {
      matchExpressions: [{ key: 'toString', operator: 'DoesNotExist' }],
    });
    expect(absent.filter(makeRequest(), eps)).toBe(eps);
  });

  it('answers to the deprecated alias by-label-selector', () => {
    expect(definition.type).toBe(TYPE);
    expect(definition.aliases).toEqual(['by-label-selector']);
  });

  const bad: [string, unknown][] = [
    ['an unknown field', { matchLabel: { app: 'vllm' } }],
    ['a non-string label value', { matchLabels: { replicas: 3 } }],
    ['an unknown operator', { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['x'] }] }],
    ['In without values', { matchExpressions: [{ key: 'a', operator: 'In' }] }],
    ['NotIn with empty values', { matchExpressions: [{ key: 'a', operator: 'NotIn', values: [] }] }],
    ['Exists with values', { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }],
    [
      'DoesNotExist with values',
      { matchExpressions: [{ key: 'a', operator: 'DoesNotExist', values: ['x'] }] },
    ],
    ['an empty key', { matchExpressions: [{ key: '', operator: 'Exists' }] }],
    ['an unknown requirement field', { matchExpressions: [{ key: 'a', operator: 'Exists', value: 'x' }] }],
  ];

  it.each(bad)('rejects %s', (_title, params) => {
    expect(() => create(definition, params)).toThrow();
  });
});
