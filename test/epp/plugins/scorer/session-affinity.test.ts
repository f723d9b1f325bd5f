import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { ResponseInfo } from '../../../../src/epp/framework/requestcontrol.js';
import type { InferenceRequest } from '../../../../src/epp/framework/request.js';
import type { ProfileRunResult, SchedulingResult } from '../../../../src/epp/framework/scheduling.js';
import {
  SessionAffinityScorer,
  TYPE,
  definition,
} from '../../../../src/epp/plugins/scorer/session-affinity.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function run(target: Endpoint): ProfileRunResult {
  return { targetEndpoints: [target], scored: { endpoints: [target], scores: new Float64Array(1) } };
}

function result(profiles: Record<string, Endpoint>, primary = 'decode'): SchedulingResult {
  const profileResults = new Map<string, ProfileRunResult | null>();
  for (const [name, e] of Object.entries(profiles)) profileResults.set(name, run(e));
  return { profileResults, primaryProfileName: primary };
}

function response(endpoint: Endpoint | null): ResponseInfo {
  return { status: 200, headers: {}, endpoint, streaming: false, usage: null, aborted: false };
}

function score(s: SessionAffinityScorer, req: InferenceRequest, eps: Endpoint[]): number[] {
  const out = new Float64Array(eps.length);
  s.score(req, eps, out);
  return [...out];
}

describe('session-affinity-scorer, encoded_endpoint_header (default)', () => {
  const eps = makeEndpoints(3);

  it('scores 1 for the endpoint named by x-session-token and 0 for the others', () => {
    const s = create<SessionAffinityScorer>(definition);
    const req = makeRequest({ headers: { 'x-session-token': b64(eps[1]!.meta.id) } });
    expect(score(s, req, eps)).toEqual([0, 1, 0]);
  });

  it('scores 0 everywhere without a token, or with one that names no candidate', () => {
    const s = create<SessionAffinityScorer>(definition);
    expect(score(s, makeRequest(), eps)).toEqual([0, 0, 0]);
    expect(
      score(s, makeRequest({ headers: { 'x-session-token': b64('default/gone-rank-0') } }), eps),
    ).toEqual([0, 0, 0]);
    expect(score(s, makeRequest({ headers: { 'x-session-token': '%%%not base64' } }), eps)).toEqual([
      0, 0, 0,
    ]);
    // The raw id is not a token.
    expect(score(s, makeRequest({ headers: { 'x-session-token': eps[0]!.meta.id } }), eps)).toEqual([
      0, 0, 0,
    ]);
  });

  it('sets x-session-token on the response to the base64 of the serving endpoint id', () => {
    const s = create<SessionAffinityScorer>(definition);
    const resp = response(eps[2]!);
    s.responseReceived(makeRequest(), resp);
    expect(resp.headers['x-session-token']).toBe(b64(eps[2]!.meta.id));
    expect(Buffer.from(resp.headers['x-session-token']!, 'base64').toString()).toBe('default/pod-2-rank-0');
    const none = response(null);
    s.responseReceived(makeRequest(), none);
    expect(none.headers).toEqual({});
  });

  it('round-trips: the token it sets routes the next request back', () => {
    const s = create<SessionAffinityScorer>(definition);
    const resp = response(eps[0]!);
    s.responseReceived(makeRequest(), resp);
    expect(score(s, makeRequest({ headers: resp.headers }), eps)).toEqual([1, 0, 0]);
  });

  it('with profileName advertises that profile’s endpoint under headerName', () => {
    const s = create<SessionAffinityScorer>(definition, {
      profileName: 'prefill',
      headerName: 'X-Session-Token-Prefill',
    });
    const req = makeRequest();
    s.preRequest(req, result({ decode: eps[0]!, prefill: eps[2]! }));
    const resp = response(eps[0]!);
    s.responseReceived(req, resp);
    expect(resp.headers).toEqual({ 'x-session-token-prefill': b64(eps[2]!.meta.id) });
    const next = makeRequest({
      headers: { 'x-session-token-prefill': resp.headers['x-session-token-prefill']! },
    });
    expect(score(s, next, eps)).toEqual([0, 0, 1]);
    // A decode-only request has no prefill endpoint to advertise.
    const decodeOnly = makeRequest();
    s.preRequest(decodeOnly, result({ decode: eps[0]! }));
    const r2 = response(eps[0]!);
    s.responseReceived(decodeOnly, r2);
    expect(r2.headers).toEqual({});
  });

  it('is an affinity scorer', () => {
    const s = create<SessionAffinityScorer>(definition);
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('affinity');
  });
});

describe('session-affinity-scorer, session_id', () => {
  const eps = makeEndpoints(3);
  const sid = (id: string, extra: Record<string, string> = {}): InferenceRequest =>
    makeRequest({ headers: { 'x-session-id': id, ...extra } });

  /** Scores, then binds to `chosen` (default: the best-scored endpoint), as a cycle would. */
  function cycle(
    s: SessionAffinityScorer,
    req: InferenceRequest,
    cands: Endpoint[],
    chosen?: Endpoint,
  ): number[] {
    const got = score(s, req, cands);
    const pick = chosen ?? cands[got.indexOf(Math.max(...got))]!;
    s.preRequest(req, result({ decode: pick }));
    return got;
  }

  function scorer(
    params: Record<string, unknown> = {},
    seed = 1,
  ): { s: SessionAffinityScorer; now: (ms: number) => void } {
    const handle = testHandle(eps, seed);
    const s = create<SessionAffinityScorer>(definition, { strategy: 'session_id', ...params }, handle);
    return { s, now: (ms) => void (handle.now = ms) };
  }

  it('binds a session to the endpoint chosen for it and scores that endpoint 1 afterwards', () => {
    const { s } = scorer();
    cycle(s, sid('a'), eps, eps[1]);
    expect(s.boundEndpoint('a')).toBe(eps[1]!.meta.id);
    expect(s.sessionsOn(eps[1]!.meta.id)).toBe(1);
    expect(score(s, sid('a'), eps)).toEqual([0, 1, 0]);
  });

  it('places an unbound session on the candidate with the fewest bound sessions', () => {
    const { s } = scorer();
    cycle(s, sid('a'), eps, eps[0]);
    cycle(s, sid('b'), eps, eps[1]);
    expect(score(s, sid('c'), eps)).toEqual([0, 0, 1]);
    cycle(s, sid('c'), eps);
    cycle(s, sid('d'), eps, eps[0]);
    // Counts 2, 1, 1: the least loaded are 1 and 2.
    const got = score(s, sid('e'), eps);
    expect(got[0]).toBe(0);
    expect(got[1]! + got[2]!).toBe(1);
  });

  it('breaks ties between equally loaded candidates at random, the same way for the same seed', () => {
    const picks = (seed: number): number[] => {
      const { s } = scorer({}, seed);
      return Array.from({ length: 60 }, (_, i) => score(s, sid(`s${i}`), eps).indexOf(1));
    };
    const a = picks(3);
    expect(picks(3)).toEqual(a);
    for (const i of [0, 1, 2]) expect(a.filter((p) => p === i).length).toBeGreaterThan(5);
  });

  it('moves a session whose endpoint is not a candidate, and keeps it when it was only outvoted', () => {
    const { s } = scorer();
    cycle(s, sid('a'), eps, eps[0]);
    // Endpoint 0 is a candidate but another scorer won: the binding stands.
    cycle(s, sid('a'), eps, eps[2]);
    expect(s.boundEndpoint('a')).toBe(eps[0]!.meta.id);
    // Endpoint 0 is gone from the candidates: 1 goes to the least loaded, and the session moves.
    const cands = [eps[1]!, eps[2]!];
    const got = cycle(s, sid('a'), cands, eps[2]);
    expect(got.reduce((x, y) => x + y)).toBe(1);
    expect(s.boundEndpoint('a')).toBe(eps[2]!.meta.id);
    expect(s.sessionsOn(eps[0]!.meta.id)).toBe(0);
    expect(s.sessionsOn(eps[2]!.meta.id)).toBe(1);
  });

  it('scores 0 everywhere and binds nothing for a request without a session id', () => {
    const { s } = scorer();
    expect(cycle(s, makeRequest(), eps, eps[0])).toEqual([0, 0, 0]);
    expect(s.sessionsOn(eps[0]!.meta.id)).toBe(0);
  });

  it('binds the endpoint of profileName’s profile', () => {
    const { s } = scorer({ profileName: 'prefill' });
    const req = sid('a');
    score(s, req, eps);
    s.preRequest(req, result({ decode: eps[0]!, prefill: eps[2]! }));
    expect(s.boundEndpoint('a')).toBe(eps[2]!.meta.id);
    // No prefill profile ran: nothing is bound.
    const other = sid('b');
    s.preRequest(other, result({ decode: eps[0]! }));
    expect(s.boundEndpoint('b')).toBeUndefined();
  });

  it('drops bindings unused for evictionTtlSeconds at the next sweep', () => {
    const { s, now } = scorer(); // ttl 300 s, sweep 10 s
    cycle(s, sid('a'), eps, eps[1]);
    now(200_000);
    cycle(s, sid('a'), eps); // refreshes lastSeen to 200 s
    now(499_000);
    score(s, sid('x'), eps);
    expect(s.boundEndpoint('a')).toBe(eps[1]!.meta.id);
    // 301 s unused, but the last sweep ran at 499 s: the next one is due at 509 s.
    now(501_000);
    score(s, sid('x'), eps);
    expect(s.boundEndpoint('a')).toBe(eps[1]!.meta.id);
    now(509_000);
    score(s, sid('x'), eps);
    expect(s.boundEndpoint('a')).toBeUndefined();
    expect(s.sessionsOn(eps[1]!.meta.id)).toBe(0);
  });

  it('sweeps at most every evictionSweepSeconds', () => {
    const { s, now } = scorer({ evictionTtlSeconds: 1, evictionSweepSeconds: 60 });
    cycle(s, sid('a'), eps, eps[1]);
    now(30_000);
    score(s, sid('x'), eps);
    // Expired, but the sweep is not due yet: the binding is still honoured.
    expect(score(s, sid('a'), eps)).toEqual([0, 1, 0]);
    now(60_000);
    score(s, sid('x'), eps);
    expect(s.boundEndpoint('a')).toBeUndefined();
  });

  it('never evicts with evictionTtlSeconds 0', () => {
    const { s, now } = scorer({ evictionTtlSeconds: 0 });
    cycle(s, sid('a'), eps, eps[1]);
    now(1e9);
    score(s, sid('x'), eps);
    expect(s.boundEndpoint('a')).toBe(eps[1]!.meta.id);
  });

  it('takes the session id from the configured sources, in order', () => {
    const { s } = scorer({
      sessionIdConfig: {
        sources: [{ type: 'cookie', name: 'sid' }, { name: 'X-Conversation' }],
      },
    });
    cycle(s, makeRequest({ headers: { cookie: 'theme=dark; sid=abc' } }), eps, eps[2]);
    expect(s.boundEndpoint('abc')).toBe(eps[2]!.meta.id);
    cycle(s, makeRequest({ headers: { 'x-conversation': 'conv-1' } }), eps, eps[0]);
    expect(s.boundEndpoint('conv-1')).toBe(eps[0]!.meta.id);
    // The cookie wins over the header; the default x-session-id is not a source any more.
    expect(
      score(s, makeRequest({ headers: { cookie: 'sid=abc', 'x-conversation': 'conv-1' } }), eps),
    ).toEqual([0, 0, 1]);
    expect(score(s, sid('abc'), eps)).toEqual([0, 0, 0]);
  });

  it('writes no response header: the client owns its session id', () => {
    const { s } = scorer();
    const resp = response(eps[0]!);
    s.responseReceived(sid('a'), resp);
    expect(resp.headers).toEqual({});
  });
});

describe('session-affinity-scorer parameters', () => {
  const bad: [string, unknown][] = [
    ['an unknown strategy', { strategy: 'cookie' }],
    ['an empty source list', { sessionIdConfig: { sources: [] } }],
    ['an unknown source type', { sessionIdConfig: { sources: [{ type: 'query', name: 's' }] } }],
    ['a source without a name', { sessionIdConfig: { sources: [{ type: 'header' }] } }],
    ['an unknown sessionIdConfig field', { sessionIdConfig: { header: 'x' } }],
    ['a negative evictionTtlSeconds', { evictionTtlSeconds: -1 }],
    ['evictionSweepSeconds 0', { evictionSweepSeconds: 0 }],
    ['an empty profileName', { profileName: '' }],
    ['an unknown field', { algorithm: 'session_id' }],
  ];

  it.each(bad)('rejects %s', (_title, params) => {
    expect(() => create(definition, params)).toThrow();
  });

  it('defaults to encoded_endpoint_header, x-session-id, 300 s TTL and a 10 s sweep', () => {
    expect(definition.params.parse({})).toEqual({
      strategy: 'encoded_endpoint_header',
      headerName: 'x-session-token',
      sessionIdConfig: { sources: [{ type: 'header', name: 'x-session-id' }] },
      evictionTtlSeconds: 300,
      evictionSweepSeconds: 10,
    });
  });
});
