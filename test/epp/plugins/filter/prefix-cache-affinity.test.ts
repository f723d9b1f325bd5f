import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import { Rng } from '../../../../src/core/rng.js';
import {
  INFLIGHT_LOAD,
  INFLIGHT_LOAD_ATTR,
  PREFIX_CACHE_MATCH_INFO,
} from '../../../../src/epp/framework/data-keys.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { InferenceRequest } from '../../../../src/epp/framework/request.js';
import {
  PrefixCacheAffinityFilter,
  definition,
} from '../../../../src/epp/plugins/filter/prefix-cache-affinity.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

/** A request whose prompt has `total` blocks, of which endpoint slot i holds `match[i]`. */
function request(match: number[], total = 10, producer?: string): InferenceRequest {
  const req = makeRequest();
  const info = { totalBlocks: total, blockSizeTokens: 16, matchBlocks: Int32Array.from(match) };
  if (producer === undefined) req.state.write(PREFIX_CACHE_MATCH_INFO, info);
  else req.state.writeAs(PREFIX_CACHE_MATCH_INFO, producer, info);
  return req;
}

function endpoints(tokens: (number | undefined)[]): Endpoint[] {
  const eps = makeEndpoints(tokens.length);
  tokens.forEach((t, i) => {
    if (t !== undefined) eps[i]!.attributes.set(INFLIGHT_LOAD_ATTR, { requests: 1, tokens: t });
  });
  return eps;
}

const PEAK = 15928;

describe('prefix-cache-affinity-filter', () => {
  it('narrows to the endpoints whose match ratio reaches affinityThreshold (default 0.80)', () => {
    const f = create<PrefixCacheAffinityFilter>(definition);
    const eps = endpoints([0, 0, 0, 0]);
    expect(f.filter(request([8, 7, 10, 0]), eps)).toEqual([eps[0], eps[2]]);
  });

  it('honours a custom affinityThreshold', () => {
    const f = create<PrefixCacheAffinityFilter>(definition, { affinityThreshold: 0.5 });
    const eps = endpoints([0, 0, 0]);
    expect(f.filter(request([5, 4, 9]), eps)).toEqual([eps[0], eps[2]]);
  });

  it('keeps every candidate when none is sticky, or all are', () => {
    const f = create<PrefixCacheAffinityFilter>(definition);
    const eps = endpoints([0, 0, 0]);
    expect(f.filter(request([7, 0, 1]), eps)).toBe(eps);
    expect(f.filter(request([9, 9, 10]), eps)).toBe(eps);
  });

  it('keeps every candidate without match info, with an empty prompt, or with a single candidate', () => {
    const f = create<PrefixCacheAffinityFilter>(definition);
    const eps = endpoints([0, 0]);
    expect(f.filter(makeRequest(), eps)).toBe(eps);
    expect(f.filter(request([0, 0], 0), eps)).toBe(eps);
    const one = eps.slice(0, 1);
    expect(f.filter(request([10]), one)).toBe(one);
  });

  it('is disabled by affinityThreshold 0', () => {
    const f = create<PrefixCacheAffinityFilter>(definition, { affinityThreshold: 0 });
    const eps = endpoints([0, 0]);
    expect(f.filter(request([10, 0]), eps)).toBe(eps);
  });

  it('breaks stickiness when the best sticky TTFT exceeds the best other by more than maxTTFTPenaltyMs', () => {
    const f = create<PrefixCacheAffinityFilter>(definition);
    // TTFT = tokens / 15928 × 1000 ms; 18000 ms of penalty is 286704 tokens.
    const limit = (18000 * PEAK) / 1000;
    const under = endpoints([limit - 100, 1000, 0]);
    expect(f.filter(request([10, 10, 0]), under)).toEqual([under[0], under[1]]);
    // Best sticky is the less loaded of the sticky ones.
    const over = endpoints([limit + 2000, limit + 1000, 0]);
    expect(f.filter(request([10, 10, 0]), over)).toBe(over);
    // The penalty is a difference: a loaded non-sticky endpoint keeps the gate closed.
    const bothBusy = endpoints([limit + 1000, limit]);
    expect(f.filter(request([10, 0]), bothBusy)).toEqual([bothBusy[0]]);
  });

  it('estimates TTFT with peakPrefillThroughput and treats a missing in-flight record as 0 tokens', () => {
    const f = create<PrefixCacheAffinityFilter>(definition, {
      peakPrefillThroughput: 1000,
      maxTTFTPenaltyMs: 500,
    });
    // 600 tokens at 1000 tok/s = 600 ms > 500 ms over an idle endpoint.
    const eps = endpoints([600, undefined]);
    expect(f.filter(request([10, 0]), eps)).toBe(eps);
    const close = endpoints([400, undefined]);
    expect(f.filter(request([10, 0]), close)).toEqual([close[0]]);
  });

  it('always sticks with maxTTFTPenaltyMs 0, and then does not need in-flight load', () => {
    const f = create<PrefixCacheAffinityFilter>(definition, { maxTTFTPenaltyMs: 0 });
    const eps = endpoints([1e12, 0]);
    expect(f.filter(request([10, 0]), eps)).toEqual([eps[0]]);
    expect(f.consumes).toEqual([PREFIX_CACHE_MATCH_INFO]);
    expect(create<PrefixCacheAffinityFilter>(definition).consumes).toEqual([
      PREFIX_CACHE_MATCH_INFO,
      INFLIGHT_LOAD,
    ]);
  });

  it('skips the gate with probability explorationProbability, deterministically per seed', () => {
    const eps = endpoints([0, 0, 0, 0]);
    const run = (seed: number): number => {
      const f = create<PrefixCacheAffinityFilter>(
        definition,
        { explorationProbability: 0.25 },
        testHandle(eps, seed),
      );
      let explored = 0;
      for (let i = 0; i < 2000; i++) if (f.filter(request([10, 0, 0, 0]), eps).length === 4) explored++;
      return explored;
    };
    const a = run(7);
    expect(run(7)).toBe(a);
    expect(a).toBeGreaterThan(400);
    expect(a).toBeLessThan(600);
    const always = create<PrefixCacheAffinityFilter>(definition, { explorationProbability: 1 });
    expect(always.filter(request([10, 0, 0, 0]), eps)).toBe(eps);
  });

  it('draws nothing from the rng when explorationProbability is 0 (the default)', () => {
    const handle = testHandle([], 5);
    const f = create<PrefixCacheAffinityFilter>(definition, {}, handle);
    const eps = endpoints([0, 0]);
    f.filter(request([10, 0]), eps);
    expect(handle.rng.nextU32()).toBe(new Rng(5).nextU32());
  });

  it('reads the match info of the producer named by prefixMatchInfoProducerName', () => {
    const f = create<PrefixCacheAffinityFilter>(definition, { prefixMatchInfoProducerName: 'precise' });
    const eps = endpoints([0, 0]);
    expect(f.filter(request([0, 10], 10, 'precise'), eps)).toEqual([eps[1]]);
    // The default key is not consulted.
    expect(f.filter(request([0, 10]), eps)).toBe(eps);
  });

  it('rejects ttftSource latencyPredictor, which needs a producer llmd does not have', () => {
    expect(() => create(definition, { ttftSource: 'latencyPredictor' })).toThrow(ConfigError);
    expect(() => create(definition, { ttftSource: 'latencyPredictor' })).toThrow(
      /predicted-latency-producer/,
    );
  });

  const bad: [string, unknown][] = [
    ['affinityThreshold above 1', { affinityThreshold: 1.2 }],
    ['a negative affinityThreshold', { affinityThreshold: -0.1 }],
    ['explorationProbability above 1', { explorationProbability: 2 }],
    ['a negative maxTTFTPenaltyMs', { maxTTFTPenaltyMs: -1 }],
    ['an unknown ttftSource', { ttftSource: 'guess' }],
    ['a negative peakPrefillThroughput', { peakPrefillThroughput: -5 }],
    ['a zero peakPrefillThroughput with a TTFT gate', { peakPrefillThroughput: 0 }],
    ['an unknown field', { affinity: 0.8 }],
  ];

  it.each(bad)('rejects %s', (_title, params) => {
    expect(() => create(definition, params)).toThrow();
  });

  it('accepts a zero peakPrefillThroughput when the TTFT gate is off', () => {
    expect(() => create(definition, { peakPrefillThroughput: 0, maxTTFTPenaltyMs: 0 })).not.toThrow();
  });
});
