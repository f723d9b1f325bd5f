import { describe, expect, it } from 'vitest';
import { PREFIX_CACHE_MATCH_INFO } from '../../../../src/epp/framework/data-keys.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { PluginHandle } from '../../../../src/epp/framework/plugin.js';
import type { InferenceRequest } from '../../../../src/epp/framework/request.js';
import type { ProfileRunResult, SchedulingResult } from '../../../../src/epp/framework/scheduling.js';
import { NoHitLruScorer, TYPE, definition } from '../../../../src/epp/plugins/scorer/no-hit-lru.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

/** A request; `match` gives each slot's matched blocks (omitted: no match info at all). */
function request(match?: number[], producer?: string): InferenceRequest {
  const req = makeRequest();
  if (match !== undefined) {
    const info = { totalBlocks: 4, blockSizeTokens: 16, matchBlocks: Int32Array.from(match) };
    if (producer === undefined) req.state.write(PREFIX_CACHE_MATCH_INFO, info);
    else req.state.writeAs(PREFIX_CACHE_MATCH_INFO, producer, info);
  }
  return req;
}

function run(target: Endpoint): ProfileRunResult {
  return { targetEndpoints: [target], scored: { endpoints: [target], scores: new Float64Array(1) } };
}

function result(primary: Endpoint, prefill?: Endpoint, primaryName = 'decode'): SchedulingResult {
  const profileResults = new Map<string, ProfileRunResult | null>([[primaryName, run(primary)]]);
  if (prefill !== undefined) profileResults.set('prefill', run(prefill));
  return { profileResults, primaryProfileName: primaryName };
}

/** Scores `eps` for `req`, then (when `chosen` is given) runs PreRequest as if `chosen` was picked. */
function cycle(
  s: NoHitLruScorer,
  eps: Endpoint[],
  req: InferenceRequest,
  chosen?: Endpoint,
  prefill?: Endpoint,
): number[] {
  const out = new Float64Array(eps.length);
  s.score(req, eps, out);
  if (chosen !== undefined) s.preRequest(req, result(chosen, prefill));
  return [...out];
}

function close(got: number[], want: number[]): void {
  expect(got).toHaveLength(want.length);
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 12));
}

describe('no-hit-lru-scorer', () => {
  it('scores a warm request 0.5 everywhere', () => {
    const s = create<NoHitLruScorer>(definition);
    close(cycle(s, makeEndpoints(3), request([0, 2, 0])), [0.5, 0.5, 0.5]);
  });

  it('ranks never-used endpoints 1 − i/(N−1) for a cold request', () => {
    const s = create<NoHitLruScorer>(definition);
    close(cycle(s, makeEndpoints(4), request([0, 0, 0, 0])), [1, 2 / 3, 1 / 3, 0]);
  });

  it('treats a request without match info as cold', () => {
    const s = create<NoHitLruScorer>(definition);
    close(cycle(s, makeEndpoints(3), request()), [1, 0.5, 0]);
  });

  it('judges coldness on the candidates only', () => {
    const s = create<NoHitLruScorer>(definition);
    // Slot 3 holds blocks but is not a candidate.
    close(cycle(s, makeEndpoints(3), request([0, 0, 0, 4])), [1, 0.5, 0]);
  });

  it('scores a single candidate 1', () => {
    const s = create<NoHitLruScorer>(definition);
    close(cycle(s, makeEndpoints(1), request([0])), [1]);
  });

  it('puts endpoints that took cold requests after the never-used ones, oldest first', () => {
    const s = create<NoHitLruScorer>(definition);
    const eps = makeEndpoints(4);
    cycle(s, eps, request(), eps[0]);
    // Never used: 1, 2, 3 → 1, 2/3, 1/3; used: 0 at LRU position 0 → 1 − (3 + 0)/3 = 0.
    close(cycle(s, eps, request(), eps[1]), [0, 1, 2 / 3, 1 / 3]);
    // LRU now [0, 1]: never used 2, 3 → 1, 2/3; 0 → 1 − 2/3; 1 → 1 − 3/3.
    close(cycle(s, eps, request(), eps[0]), [1 / 3, 0, 1, 2 / 3]);
    // LRU now [1, 0]: 1 is older.
    close(cycle(s, eps, request()), [0, 1 / 3, 1, 2 / 3]);
    expect(s.lruIds()).toEqual([eps[1]!.meta.id, eps[0]!.meta.id]);
  });

  it('floors scores at 0 when the LRU holds more endpoints than there are candidates', () => {
    const s = create<NoHitLruScorer>(definition);
    const eps = makeEndpoints(4);
    for (const e of eps) cycle(s, eps, request(), e);
    // LRU [0, 1, 2, 3]; only 2 and 3 are candidates: 1 − 2/1 and 1 − 3/1 floor at 0.
    close(cycle(s, [eps[2]!, eps[3]!], request()), [0, 0]);
    close(cycle(s, [eps[0]!, eps[3]!], request()), [1, 0]);
  });

  it('leaves the LRU alone for warm requests', () => {
    const s = create<NoHitLruScorer>(definition);
    const eps = makeEndpoints(3);
    cycle(s, eps, request([0, 1, 0]), eps[0]);
    expect(s.lruIds()).toEqual([]);
    // PreRequest without a scoring pass (the scorer was not in the profile) changes nothing either.
    s.preRequest(request(), result(eps[1]!));
    expect(s.lruIds()).toEqual([]);
  });

  it('moves both the primary and the prefill endpoint to the most-recent end', () => {
    const s = create<NoHitLruScorer>(definition);
    const eps = makeEndpoints(3);
    cycle(s, eps, request(), eps[2], eps[1]);
    expect(s.lruIds()).toEqual([eps[2]!.meta.id, eps[1]!.meta.id]);
    const req = request();
    cycle(s, eps, req);
    s.preRequest(req, result(eps[0]!, undefined, 'prefill'));
    expect(s.lruIds()).toEqual([eps[2]!.meta.id, eps[1]!.meta.id, eps[0]!.meta.id]);
  });

  it('keeps at most lruSize endpoints, evicting the oldest', () => {
    const s = create<NoHitLruScorer>(definition, { lruSize: 2 });
    const eps = makeEndpoints(3);
    for (const e of eps) cycle(s, eps, request(), e);
    expect(s.lruIds()).toEqual([eps[1]!.meta.id, eps[2]!.meta.id]);
    // Endpoint 0 fell out, so it ranks as never used again.
    close(cycle(s, eps, request()), [1, 0.5, 0]);
  });

  it('forgets endpoints that leave the pool', () => {
    const eps = makeEndpoints(3);
    const base = testHandle(eps);
    const listeners: ((e: Endpoint) => void)[] = [];
    const handle: PluginHandle = {
      ...base,
      endpoints: { ...base.endpoints, onRemove: (l) => listeners.push(l) },
    };
    const s = create<NoHitLruScorer>(definition, {}, handle);
    cycle(s, eps, request(), eps[0]);
    cycle(s, eps, request(), eps[1]);
    for (const l of listeners) l(eps[0]!);
    expect(s.lruIds()).toEqual([eps[1]!.meta.id]);
  });

  it('reads the match info of the producer named by prefixMatchInfoProducerName', () => {
    const s = create<NoHitLruScorer>(definition, { prefixMatchInfoProducerName: 'precise' });
    close(cycle(s, makeEndpoints(2), request([3, 0], 'precise')), [0.5, 0.5]);
    // The default key is not consulted: this request is cold for it.
    close(cycle(s, makeEndpoints(2), request([3, 0])), [1, 0]);
  });

  it('accepts the unused prefixPluginType and prefixPluginName', () => {
    const s = create<NoHitLruScorer>(definition, {
      prefixPluginType: 'prefix-cache-scorer',
      prefixPluginName: 'p',
    });
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('distribution');
    expect(s.consumes).toEqual([PREFIX_CACHE_MATCH_INFO]);
  });

  it.each([[{ lruSize: 0 }], [{ lruSize: 2.5 }], [{ lruSize: -1 }], [{ size: 10 }]])(
    'rejects %j',
    (params) => {
      expect(() => create(definition, params)).toThrow();
    },
  );
});
