import { describe, expect, it } from 'vitest';
import { PREFIX_CACHE_MATCH_INFO, TOKENIZED_REQUEST } from '../../../../../src/epp/framework/data-keys.js';
import {
  definition,
  params,
  PrefixBasedPdDecider,
  TYPE,
} from '../../../../../src/epp/plugins/profile/decider/prefix-based.js';
import { create, makeEndpoint, makeRequest } from '../../../helpers.js';

/** A request of `prompt` tokens whose decode endpoint (slot 1) is predicted to hold `matched` blocks of `block`. */
function request(prompt: number | null, matched: number | null, block = 64) {
  const req = makeRequest();
  if (prompt !== null)
    req.state.write(TOKENIZED_REQUEST, { tokenCount: prompt, prompts: [], backend: 'estimate' });
  if (matched !== null) {
    req.state.write(PREFIX_CACHE_MATCH_INFO, {
      totalBlocks: Math.ceil((prompt ?? 0) / block),
      blockSizeTokens: block,
      matchBlocks: Int32Array.of(99, matched),
    });
  }
  return req;
}

const decode = makeEndpoint({ slot: 1 });
const decider = (p: Record<string, unknown>) => create<PrefixBasedPdDecider>(definition, p);

describe('prefix-based-pd-decider', () => {
  it('has upstream parameters and defaults, and consumes what it reads', () => {
    expect(TYPE).toBe('prefix-based-pd-decider');
    expect(params.parse({})).toEqual({ nonCachedTokens: 0, promptTokens: 0 });
    expect(decider({}).consumes).toEqual([PREFIX_CACHE_MATCH_INFO, TOKENIZED_REQUEST]);
  });

  it('rejects unknown and out-of-range parameters', () => {
    for (const bad of [
      { nonCachedTokens: -1 },
      { nonCachedTokens: 1.5 },
      { promptTokens: '5' },
      { threshold: 5 },
    ]) {
      expect(() => params.parse(bad), JSON.stringify(bad)).toThrow();
    }
  });

  it('is disabled with nonCachedTokens 0', () => {
    expect(decider({}).disaggregate(request(100_000, 0), decode)).toEqual({
      yes: false,
      reason: 'disabled (nonCachedTokens is 0)',
    });
  });

  it('disaggregates iff prompt tokens − cached tokens ≥ nonCachedTokens', () => {
    const d = decider({ nonCachedTokens: 16 });
    expect(d.disaggregate(request(12000, 0), decode)).toEqual({
      yes: true,
      reason: '12000 non-cached tokens ≥ 16',
    });
    // 1000 − 15·64 = 40 ≥ 16
    expect(d.disaggregate(request(1000, 15), decode)).toEqual({
      yes: true,
      reason: '40 non-cached tokens ≥ 16',
    });
    // exactly at the threshold
    expect(d.disaggregate(request(16 + 64, 1), decode).yes).toBe(true);
    // 1000 − 16·64 = −24
    expect(d.disaggregate(request(1000, 16), decode)).toEqual({
      yes: false,
      reason: '-24 non-cached tokens < 16',
    });
  });

  it('reads the match of the decode endpoint it is asked about, with that request’s block size', () => {
    const d = decider({ nonCachedTokens: 100 });
    const req = request(1000, 14, 64);
    expect(d.disaggregate(req, decode).yes).toBe(true);
    expect(d.disaggregate(req, makeEndpoint({ slot: 0 })).yes).toBe(false);
    expect(d.disaggregate(req, makeEndpoint({ slot: 5 })).yes).toBe(true);
    expect(d.disaggregate(request(1000, 7, 128), decode).yes).toBe(true);
    expect(d.disaggregate(request(1000, 8, 128), decode).yes).toBe(false);
  });

  it('keeps prompts shorter than promptTokens local', () => {
    const d = decider({ nonCachedTokens: 16, promptTokens: 1000 });
    expect(d.disaggregate(request(999, 0), decode)).toEqual({
      yes: false,
      reason: '999 prompt tokens < 1000',
    });
    expect(d.disaggregate(request(1000, 0), decode).yes).toBe(true);
  });

  it('counts nothing cached without match info, and no prompt without a TokenizedRequest', () => {
    const d = decider({ nonCachedTokens: 16 });
    expect(d.disaggregate(request(100, null), decode).yes).toBe(true);
    expect(d.disaggregate(request(null, null), decode)).toEqual({
      yes: false,
      reason: '0 non-cached tokens < 16',
    });
  });
});
