/**
 * The contract every scorer keeps, run over each of them: scores are finite and in [0,1], only the
 * first n slots of `out` are written, an empty candidate list is fine, the same seed gives the same
 * scores (stateful scorers included, driven through PreRequest), and candidates that look alike score
 * alike.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../../src/core/rng.js';
import { INFLIGHT_LOAD_ATTR, PREFIX_CACHE_MATCH_INFO } from '../../../../src/epp/framework/data-keys.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { PluginDefinition } from '../../../../src/epp/framework/plugin.js';
import { isPreRequest } from '../../../../src/epp/framework/requestcontrol.js';
import type { InferenceRequest } from '../../../../src/epp/framework/request.js';
import type { ProfileRunResult, Scorer } from '../../../../src/epp/framework/scheduling.js';
import * as activeRequest from '../../../../src/epp/plugins/scorer/active-request.js';
import * as kvCache from '../../../../src/epp/plugins/scorer/kv-cache-utilization.js';
import * as loadAware from '../../../../src/epp/plugins/scorer/load-aware.js';
import * as lora from '../../../../src/epp/plugins/scorer/lora-affinity.js';
import * as noHitLru from '../../../../src/epp/plugins/scorer/no-hit-lru.js';
import * as prefix from '../../../../src/epp/plugins/scorer/prefix-cache.js';
import * as queue from '../../../../src/epp/plugins/scorer/queue.js';
import * as running from '../../../../src/epp/plugins/scorer/running-requests-size.js';
import * as session from '../../../../src/epp/plugins/scorer/session-affinity.js';
import * as tokenLoad from '../../../../src/epp/plugins/scorer/token-load.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

interface Case {
  readonly title: string;
  readonly def: PluginDefinition;
  readonly params?: Record<string, unknown>;
}

const CASES: Case[] = [
  { title: queue.TYPE, def: queue.definition },
  { title: running.TYPE, def: running.definition },
  { title: kvCache.TYPE, def: kvCache.definition },
  { title: loadAware.TYPE, def: loadAware.definition },
  { title: `${loadAware.TYPE} (threshold 4)`, def: loadAware.definition, params: { threshold: 4 } },
  { title: activeRequest.TYPE, def: activeRequest.definition },
  {
    title: `${activeRequest.TYPE} (idle preference)`,
    def: activeRequest.definition,
    params: { idleThreshold: 1, maxBusyScore: 0.5 },
  },
  { title: tokenLoad.TYPE, def: tokenLoad.definition },
  {
    title: `${tokenLoad.TYPE} (threshold 5000)`,
    def: tokenLoad.definition,
    params: { queueThresholdTokens: 5000 },
  },
  { title: prefix.TYPE, def: prefix.definition },
  {
    title: `${prefix.TYPE} (length-weighted)`,
    def: prefix.definition,
    params: { matchLengthWeight: 0.5, matchLengthScaleTokens: 256 },
  },
  { title: noHitLru.TYPE, def: noHitLru.definition },
  { title: `${noHitLru.TYPE} (lruSize 3)`, def: noHitLru.definition, params: { lruSize: 3 } },
  { title: session.TYPE, def: session.definition },
  { title: `${session.TYPE} (session_id)`, def: session.definition, params: { strategy: 'session_id' } },
  { title: lora.TYPE, def: lora.definition },
];

const MODELS = ['base', 'lora-a', 'lora-b', 'lora-c'];

/** A pool of `n` endpoints with random metrics and in-flight load. */
function randomEndpoints(rng: Rng, n: number): Endpoint[] {
  const eps = makeEndpoints(n, () => ({
    metrics: {
      waitingQueueSize: rng.int(0, 300),
      runningRequestsSize: rng.int(0, 64),
      kvCacheUsagePercent: rng.next(),
      activeModels: new Set(MODELS.filter(() => rng.next() < 0.3)),
      waitingModels: new Set(MODELS.filter(() => rng.next() < 0.2)),
      maxActiveModels: rng.int(0, 4),
      updateTime: rng.next() < 0.1 ? 0 : 1,
    },
  }));
  for (const e of eps) {
    if (rng.next() < 0.8)
      e.attributes.set(INFLIGHT_LOAD_ATTR, { requests: rng.int(0, 20), tokens: rng.int(0, 9e6) });
  }
  return eps;
}

/** A request over `eps` with random prefix matches and session headers. */
function randomRequest(rng: Rng, eps: readonly Endpoint[], i: number): InferenceRequest {
  const headers: Record<string, string> = {};
  if (eps.length > 0 && rng.next() < 0.5) {
    headers['x-session-token'] = Buffer.from(eps[rng.int(0, eps.length - 1)]!.meta.id).toString('base64');
  }
  if (rng.next() < 0.7) headers['x-session-id'] = `s${rng.int(0, 5)}`;
  const req = makeRequest({
    requestId: `r${i}`,
    targetModel: MODELS[rng.int(0, MODELS.length - 1)]!,
    headers,
  });
  if (rng.next() < 0.8) {
    const total = rng.int(0, 64);
    const matchBlocks = Int32Array.from(eps, () => (rng.next() < 0.4 ? 0 : rng.int(0, total)));
    req.state.write(PREFIX_CACHE_MATCH_INFO, {
      totalBlocks: total,
      blockSizeTokens: rng.int(0, 64),
      matchBlocks,
    });
  }
  return req;
}

function chosen(e: Endpoint): ProfileRunResult {
  return { targetEndpoints: [e], scored: { endpoints: [e], scores: new Float64Array(1) } };
}

/**
 * Runs `rounds` requests over one pool from `seed`: score, then (for PreRequest scorers) bind the best
 * endpoint as the decision, so state carries from request to request. Returns every score.
 */
function drive(c: Case, seed: number, rounds: number): number[][] {
  const rng = new Rng(seed);
  const eps = randomEndpoints(rng, rng.int(1, 40));
  const scorer = create<Scorer>(c.def, c.params ?? {}, testHandle(eps, seed));
  const all: number[][] = [];
  for (let r = 0; r < rounds; r++) {
    // A random subset of the pool, so that scorers see candidates come and go.
    const cands = eps.filter(() => rng.next() < 0.8);
    const req = randomRequest(rng, eps, r);
    const out = new Float64Array(cands.length + 3).fill(Number.NaN);
    scorer.score(req, cands, out);
    all.push([...out]);
    if (isPreRequest(scorer) && cands.length > 0) {
      let best = 0;
      for (let i = 1; i < cands.length; i++) if (out[i]! > out[best]!) best = i;
      scorer.preRequest(req, {
        profileResults: new Map([['decode', chosen(cands[best]!)]]),
        primaryProfileName: 'decode',
      });
    }
  }
  return all;
}

describe.each(CASES)('scorer contract: $title', (c) => {
  it('writes a finite score in [0,1] for every candidate and nothing past them', () => {
    const bad: string[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      drive(c, seed, 15).forEach((out, round) => {
        const n = out.length - 3;
        for (let i = 0; i < n; i++) {
          const v = out[i]!;
          if (!(v >= 0 && v <= 1)) bad.push(`seed ${seed} round ${round} candidate ${i}: ${v}`);
        }
        for (let i = n; i < out.length; i++) {
          if (!Number.isNaN(out[i]))
            bad.push(`seed ${seed} round ${round}: wrote slot ${i} past the candidates`);
        }
      });
    }
    expect(bad).toEqual([]);
  });

  it('accepts an empty candidate list', () => {
    const scorer = create<Scorer>(c.def, c.params ?? {}, testHandle());
    const out = new Float64Array(2).fill(Number.NaN);
    expect(() => scorer.score(makeRequest(), [], out)).not.toThrow();
    expect([...out]).toEqual([Number.NaN, Number.NaN]);
  });

  it('gives the same scores for the same seed', () => {
    expect(drive(c, 77, 30)).toEqual(drive(c, 77, 30));
  });

  it('scores candidates that look alike alike', () => {
    for (const n of [1, 2, 7, 40]) {
      const eps = makeEndpoints(n, () => ({
        metrics: {
          waitingQueueSize: 5,
          runningRequestsSize: 3,
          kvCacheUsagePercent: 0.4,
          activeModels: new Set(['lora-a']),
          maxActiveModels: 2,
        },
      }));
      for (const e of eps) e.attributes.set(INFLIGHT_LOAD_ATTR, { requests: 2, tokens: 4000 });
      const scorer = create<Scorer>(c.def, c.params ?? {}, testHandle(eps));
      const req = makeRequest({ targetModel: 'lora-a' });
      // Every candidate holds the same part of the prompt (a warm request for no-hit-lru).
      req.state.write(PREFIX_CACHE_MATCH_INFO, {
        totalBlocks: 8,
        blockSizeTokens: 16,
        matchBlocks: new Int32Array(n).fill(3),
      });
      const out = new Float64Array(n);
      scorer.score(req, eps, out);
      for (let i = 1; i < n; i++) expect(out[i]).toBe(out[0]);
    }
  });
});
