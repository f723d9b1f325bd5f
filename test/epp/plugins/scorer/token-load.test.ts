import { describe, expect, it } from 'vitest';
import { INFLIGHT_LOAD, INFLIGHT_LOAD_ATTR } from '../../../../src/epp/framework/data-keys.js';
import { TYPE, TokenLoadScorer, definition } from '../../../../src/epp/plugins/scorer/token-load.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

function scores(params: unknown, tokens: (number | undefined)[]): number[] {
  const eps = makeEndpoints(tokens.length);
  tokens.forEach((t, i) => {
    if (t !== undefined) eps[i]!.attributes.set(INFLIGHT_LOAD_ATTR, { requests: 9, tokens: t });
  });
  const out = new Float64Array(eps.length);
  create<TokenLoadScorer>(definition, params).score(makeRequest(), eps, out);
  return [...out];
}

const T = 4194304;

describe('token-load-scorer', () => {
  const cases: [string, unknown, (number | undefined)[], number[]][] = [
    ['default threshold 4194304: 1 − tokens/T', {}, [0, T / 4, T / 2], [1, 0.75, 0.5]],
    ['at or over the threshold scores 0', {}, [T, 2 * T], [0, 0]],
    ['a missing in-flight record scores 1', {}, [undefined], [1]],
    ['queueThresholdTokens 1000', { queueThresholdTokens: 1000 }, [0, 250, 1000, 5000], [1, 0.75, 0, 0]],
  ];

  it.each(cases)('%s', (_title, params, tokens, want) => {
    const got = scores(params, tokens);
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 12));
  });

  it('looks at tokens, not at the request count', () => {
    expect(scores({ queueThresholdTokens: 100 }, [50, 50])).toEqual([0.5, 0.5]);
  });

  it('consumes in-flight load and is a distribution scorer', () => {
    const s = create<TokenLoadScorer>(definition);
    expect(s.consumes).toEqual([INFLIGHT_LOAD]);
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('distribution');
  });

  it('accepts the deprecated requestTimeout and inFlightLoadProducerName', () => {
    expect(scores({ requestTimeout: '30s', inFlightLoadProducerName: 'p' }, [0])).toEqual([1]);
  });

  it.each([[0], [-1], [1.5]])('rejects queueThresholdTokens %s', (queueThresholdTokens) => {
    expect(() => create(definition, { queueThresholdTokens })).toThrow();
  });

  it('rejects unknown fields', () => {
    expect(() => create(definition, { threshold: 10 })).toThrow();
  });
});
