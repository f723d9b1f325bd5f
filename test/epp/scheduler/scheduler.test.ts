import { describe, expect, it } from 'vitest';
import { SchedulingFailedError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Endpoint } from '../../../src/epp/framework/endpoint.js';
import type { InferenceRequest } from '../../../src/epp/framework/request.js';
import type {
  Filter,
  Picker,
  ProfileHandler,
  ProfileRunResult,
  ScoredEndpoints,
  Scorer,
  SchedulerProfile,
} from '../../../src/epp/framework/scheduling.js';
import { Scheduler, type SchedulerObserver } from '../../../src/epp/scheduler/scheduler.js';
import { SingleProfileHandler } from '../../../src/epp/plugins/profile/single.js';
import { makeEndpoints, makeRequest } from '../helpers.js';

const tn = (name: string, type = name) => ({ name, type });

function scorer(name: string, f: (e: Endpoint) => number): Scorer {
  return {
    typedName: tn(name),
    category: 'distribution',
    score(_req, eps, out) {
      for (let i = 0; i < eps.length; i++) out[i] = f(eps[i]!);
    },
  };
}

function filter(name: string, keep: (e: Endpoint) => boolean): Filter {
  return { typedName: tn(name), filter: (_r, eps) => eps.filter(keep) };
}

/** Best total first; ties by slot, so tests are exact. */
const best: Picker = {
  typedName: tn('best'),
  pick(_r, s: ScoredEndpoints) {
    let b = 0;
    for (let i = 1; i < s.endpoints.length; i++) if (s.scores[i]! > s.scores[b]!) b = i;
    return [s.endpoints[b]!];
  },
};

function single(profile: SchedulerProfile): {
  handler: ProfileHandler;
  profiles: Map<string, SchedulerProfile>;
} {
  const handler = new SingleProfileHandler('single');
  const profiles = new Map([[profile.name, profile]]);
  handler.checkProfiles(profiles);
  return { handler, profiles };
}

function run(
  profile: SchedulerProfile,
  eps: Endpoint[],
  req: InferenceRequest = makeRequest(),
  observer?: SchedulerObserver,
) {
  const { handler, profiles } = single(profile);
  return new Scheduler({ handler, profiles, logger: silentLogger(), observer, sampleEvery: 1 }).schedule(
    req,
    eps,
  );
}

describe('Scheduler', () => {
  it('sums weight × clamped score over scorers, without normalising', () => {
    const eps = makeEndpoints(3);
    const out = run(
      {
        name: 'default',
        filters: [],
        scorers: [
          { scorer: scorer('a', (e) => [0.2, 0.9, 0.5][e.slot]!), weight: 2 },
          { scorer: scorer('b', (e) => [1, 0, 0.5][e.slot]!), weight: 1 },
        ],
        picker: best,
      },
      eps,
    );
    const r = out.result.profileResults.get('default')!;
    expect([...r.scored.scores]).toEqual([1.4, 1.8, 1.5]);
    expect(r.targetEndpoints).toEqual([eps[1]]);
    expect(out.result.primaryProfileName).toBe('default');
  });

  it('clamps scores outside [0,1] and treats NaN as 0', () => {
    const eps = makeEndpoints(4);
    const out = run(
      {
        name: 'p',
        filters: [],
        scorers: [{ scorer: scorer('wild', (e) => [-3, 7, NaN, 0.25][e.slot]!), weight: 1 }],
        picker: best,
      },
      eps,
    );
    expect([...out.result.profileResults.get('p')!.scored.scores]).toEqual([0, 1, 0, 0.25]);
  });

  it('runs filters in order and fails the profile when one leaves nothing', () => {
    const eps = makeEndpoints(4);
    const seen: number[][] = [];
    const spy = (name: string, keep: (e: Endpoint) => boolean): Filter => ({
      typedName: tn(name),
      filter: (_r, xs) => {
        seen.push(xs.map((e) => e.slot));
        return xs.filter(keep);
      },
    });
    const out = run(
      {
        name: 'p',
        filters: [spy('even', (e) => e.slot % 2 === 0), spy('big', (e) => e.slot > 0)],
        scorers: [],
        picker: best,
      },
      eps,
    );
    expect(seen).toEqual([
      [0, 1, 2, 3],
      [0, 2],
    ]);
    expect(out.result.profileResults.get('p')!.targetEndpoints.map((e) => e.slot)).toEqual([2]);
    expect(() =>
      run({ name: 'p', filters: [filter('none', () => false)], scorers: [], picker: best }, eps),
    ).toThrow(SchedulingFailedError);
  });

  it('keeps routing when a plugin throws, and reports the plugin', () => {
    const eps = makeEndpoints(3);
    const errors: string[] = [];
    const observer: SchedulerObserver = {
      pluginDuration: () => undefined,
      pluginError: (point, _t, name) => errors.push(`${point}:${name}`),
    };
    const boom = (): never => {
      throw new Error('boom');
    };
    const out = run(
      {
        name: 'p',
        filters: [{ typedName: tn('bad-filter'), filter: boom }],
        scorers: [
          { scorer: { typedName: tn('bad-scorer'), category: 'balance', score: boom }, weight: 5 },
          { scorer: scorer('good', (e) => e.slot / 2), weight: 1 },
        ],
        picker: { typedName: tn('bad-picker'), pick: boom },
      },
      eps,
      makeRequest(),
      observer,
    );
    expect(errors).toEqual(['Filter:bad-filter', 'Scorer:bad-scorer', 'Picker:bad-picker']);
    expect(out.result.profileResults.get('p')!.targetEndpoints).toEqual([eps[2]]);
  });

  it('records every step of the decision when the request asks for it', () => {
    const eps = makeEndpoints(3);
    const out = run(
      {
        name: 'default',
        filters: [filter('no-zero', (e) => e.slot !== 0)],
        scorers: [{ scorer: scorer('s', (e) => e.slot * 0.3), weight: 2 }],
        picker: best,
      },
      eps,
      makeRequest({ recordDecision: true }),
    );
    const rec = out.record!;
    expect(rec.candidates).toEqual(eps.map((e) => e.meta.id));
    expect(rec.primaryProfile).toBe('default');
    const p = rec.profiles[0]!;
    expect(p.filters).toEqual([
      { plugin: 'no-zero', type: 'no-zero', survivors: [eps[1]!.meta.id, eps[2]!.meta.id] },
    ]);
    expect(p.scorers[0]!.weight).toBe(2);
    expect(p.scorers[0]!.scores[eps[2]!.meta.id]).toBeCloseTo(0.6);
    expect(p.totals[eps[2]!.meta.id]).toBeCloseTo(1.2);
    expect(p.picked).toEqual([eps[2]!.meta.id]);
    expect(rec.destination).toEqual([eps[2]!.meta.hostPort]);
    expect(run({ name: 'x', filters: [], scorers: [], picker: best }, eps).record).toBeNull();
  });

  it('asks the handler for profiles until it has none left, and stops a handler that never does', () => {
    const eps = makeEndpoints(2);
    const a: SchedulerProfile = { name: 'a', filters: [], scorers: [], picker: best };
    const b: SchedulerProfile = { name: 'b', filters: [], scorers: [], picker: best };
    const rounds: string[][] = [];
    const twoStage: ProfileHandler = {
      typedName: tn('two'),
      pick(_req, _p, results) {
        rounds.push([...results.keys()]);
        if (!results.has('a')) return [a];
        if (!results.has('b')) return [b];
        return [];
      },
      processResults(_req, results) {
        return { profileResults: results, primaryProfileName: 'a' };
      },
    };
    const profiles = new Map([
      ['a', a],
      ['b', b],
    ]);
    new Scheduler({ handler: twoStage, profiles, logger: silentLogger() }).schedule(makeRequest(), eps);
    expect(rounds).toEqual([[], ['a'], ['a', 'b']]);

    let calls = 0;
    const forever: ProfileHandler = {
      typedName: tn('forever'),
      pick: () => {
        calls++;
        return [a];
      },
      processResults: (_req, results: ReadonlyMap<string, ProfileRunResult | null>) => ({
        profileResults: results,
        primaryProfileName: 'a',
      }),
    };
    new Scheduler({ handler: forever, profiles, logger: silentLogger() }).schedule(makeRequest(), eps);
    expect(calls).toBe(8);
  });

  it('times plugins on sampled cycles only', () => {
    const eps = makeEndpoints(2);
    const timed: string[] = [];
    const observer: SchedulerObserver = {
      pluginDuration: (point) => timed.push(point),
      pluginError: () => undefined,
    };
    const { handler, profiles } = single({
      name: 'p',
      filters: [filter('f', () => true)],
      scorers: [{ scorer: scorer('s', () => 1), weight: 1 }],
      picker: best,
    });
    const s = new Scheduler({ handler, profiles, logger: silentLogger(), observer, sampleEvery: 3 });
    for (let i = 0; i < 6; i++) s.schedule(makeRequest(), eps);
    // Cycles 0 and 3: ProfilePicker ×2 (one empty round each), Filter, Scorer, Picker, ProcessProfilesResults.
    expect(timed.filter((p) => p === 'Scorer')).toHaveLength(2);
    expect(timed.filter((p) => p === 'ProcessProfilesResults')).toHaveLength(2);
  });
});
