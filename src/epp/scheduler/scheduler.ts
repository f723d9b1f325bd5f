/**
 * The scheduling cycle (upstream `scheduling/scheduler.go`, `scheduler_profile.go`): ask the profile
 * handler which profiles to run, run each (filters in order, stopping when none is left; every scorer
 * clamped to [0,1] and summed with its weight, no normalisation; then the picker), repeat until the
 * handler has nothing more to run, and let it turn the results into the decision.
 *
 * Plugins are not supposed to throw; when one does anyway, the cycle carries on without it (a filter
 * passes its input through, a scorer contributes nothing, a picker falls back to the best score), and
 * the failure is logged and counted. One buggy plugin must not take routing down.
 */
import type { Logger } from '../../core/log.js';
import type { Endpoint } from '../framework/endpoint.js';
import type { InferenceRequest } from '../framework/request.js';
import type {
  ProfileHandler,
  ProfileRunResult,
  SchedulerProfile,
  SchedulingResult,
} from '../framework/scheduling.js';
import { newDecisionRecord, type DecisionRecord, type ProfileRecord } from './decision.js';

/** Upstream's extension-point names, as `plugin_duration_seconds{extension_point}` labels them. */
export type ExtensionPoint =
  'ProfilePicker' | 'Filter' | 'Scorer' | 'Picker' | 'ProcessProfilesResults' | 'DataProducer' | 'PreRequest';

export interface SchedulerObserver {
  /** Sampled: called for about one cycle in `sampleEvery`. */
  pluginDuration(point: ExtensionPoint, type: string, name: string, seconds: number): void;
  pluginError(point: ExtensionPoint, type: string, name: string): void;
}

export interface SchedulerOptions {
  readonly handler: ProfileHandler;
  readonly profiles: ReadonlyMap<string, SchedulerProfile>;
  readonly logger: Logger;
  readonly observer?: SchedulerObserver;
  /** Time the plugins of one cycle in this many (default 10, as kube-scheduler samples). */
  readonly sampleEvery?: number;
}

/** More rounds than any handler needs (decode, encode, prefill): a handler that never stops is a bug. */
const MAX_ROUNDS = 8;

export interface ScheduleOutput {
  readonly result: SchedulingResult;
  readonly record: DecisionRecord | null;
}

export class Scheduler {
  private readonly handler: ProfileHandler;
  private readonly profiles: ReadonlyMap<string, SchedulerProfile>;
  private readonly log: Logger;
  private readonly observer: SchedulerObserver | null;
  private readonly sampleEvery: number;
  private cycles = 0;
  /** Reused per scorer call: scorers are synchronous, so one buffer serves every request. */
  private scratch = new Float64Array(256);

  constructor(opts: SchedulerOptions) {
    this.handler = opts.handler;
    this.profiles = opts.profiles;
    this.log = opts.logger;
    this.observer = opts.observer ?? null;
    this.sampleEvery = Math.max(1, opts.sampleEvery ?? 10);
  }

  /** Throws what the profile handler throws (`SchedulingFailedError` when nothing can serve). */
  schedule(req: InferenceRequest, candidates: readonly Endpoint[]): ScheduleOutput {
    const timed = this.observer !== null && this.cycles++ % this.sampleEvery === 0;
    const record = req.recordDecision
      ? newDecisionRecord(
          req.requestId,
          req.targetModel,
          candidates.map((e) => e.meta.id),
        )
      : null;
    const results = new Map<string, ProfileRunResult | null>();
    const h = this.handler;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const t0 = timed ? performance.now() : 0;
      const next = h.pick(req, this.profiles, results);
      if (timed) this.time('ProfilePicker', h.typedName.type, h.typedName.name, t0);
      if (next.length === 0) break;
      for (let i = 0; i < next.length; i++) {
        const profile = next[i]!;
        const pr = record ? newProfileRecord(profile.name) : null;
        if (pr) record!.profiles.push(pr);
        results.set(profile.name, this.runProfile(profile, req, candidates, timed, pr));
      }
    }
    const t0 = timed ? performance.now() : 0;
    const result = h.processResults(req, results);
    if (timed) this.time('ProcessProfilesResults', h.typedName.type, h.typedName.name, t0);
    if (record) {
      record.primaryProfile = result.primaryProfileName;
      record.pd = result.pd ?? null;
      const primary = result.profileResults.get(result.primaryProfileName);
      record.destination = primary ? primary.targetEndpoints.map((e) => e.meta.hostPort) : [];
    }
    return { result, record };
  }

  /** One profile over the candidates; null when its filters left nothing. */
  runProfile(
    profile: SchedulerProfile,
    req: InferenceRequest,
    candidates: readonly Endpoint[],
    timed = false,
    pr: ProfileRecord | null = null,
  ): ProfileRunResult | null {
    let eps = candidates;
    const filters = profile.filters;
    for (let i = 0; i < filters.length; i++) {
      const f = filters[i]!;
      const t0 = timed ? performance.now() : 0;
      try {
        eps = f.filter(req, eps);
      } catch (err) {
        this.pluginFailed('Filter', f.typedName.type, f.typedName.name, err);
      }
      if (timed) this.time('Filter', f.typedName.type, f.typedName.name, t0);
      if (pr) pr.filters.push({ plugin: f.typedName.name, type: f.typedName.type, survivors: ids(eps) });
      if (eps.length === 0) {
        if (pr) pr.failed = `no endpoint left after filter ${f.typedName.name}`;
        return null;
      }
    }

    const n = eps.length;
    const totals = new Float64Array(n);
    if (this.scratch.length < n) this.scratch = new Float64Array(Math.max(n, this.scratch.length * 2));
    const tmp = this.scratch;
    const scorers = profile.scorers;
    for (let s = 0; s < scorers.length; s++) {
      const { scorer, weight } = scorers[s]!;
      tmp.fill(0, 0, n);
      const t0 = timed ? performance.now() : 0;
      try {
        scorer.score(req, eps, tmp);
      } catch (err) {
        this.pluginFailed('Scorer', scorer.typedName.type, scorer.typedName.name, err);
        tmp.fill(0, 0, n);
      }
      if (timed) this.time('Scorer', scorer.typedName.type, scorer.typedName.name, t0);
      for (let i = 0; i < n; i++) {
        let v = tmp[i]!;
        // Scores outside [0,1] are clamped (upstream's enforceScoreRange); NaN counts as 0.
        if (!(v > 0)) v = 0;
        else if (v > 1) v = 1;
        tmp[i] = v;
        totals[i]! += v * weight;
      }
      if (pr) {
        const scores: Record<string, number> = {};
        for (let i = 0; i < n; i++) scores[eps[i]!.meta.id] = tmp[i]!;
        pr.scorers.push({ plugin: scorer.typedName.name, type: scorer.typedName.type, weight, scores });
      }
    }

    const scored = { endpoints: eps, scores: totals };
    const picker = profile.picker;
    const t0 = timed ? performance.now() : 0;
    let picked: Endpoint[];
    try {
      picked = picker.pick(req, scored);
    } catch (err) {
      this.pluginFailed('Picker', picker.typedName.type, picker.typedName.name, err);
      picked = [eps[argmax(totals, n)]!];
    }
    if (timed) this.time('Picker', picker.typedName.type, picker.typedName.name, t0);
    if (pr) {
      for (let i = 0; i < n; i++) pr.totals[eps[i]!.meta.id] = totals[i]!;
      pr.picked = ids(picked);
    }
    if (picked.length === 0) return null;
    return { targetEndpoints: picked, scored };
  }

  private time(point: ExtensionPoint, type: string, name: string, t0: number): void {
    this.observer!.pluginDuration(point, type, name, (performance.now() - t0) / 1000);
  }

  private pluginFailed(point: ExtensionPoint, type: string, name: string, err: unknown): void {
    this.observer?.pluginError(point, type, name);
    this.log.error({ err, plugin: name, plugin_type: type, extension_point: point }, 'plugin failed');
  }
}

function newProfileRecord(profile: string): ProfileRecord {
  return { profile, filters: [], scorers: [], totals: {}, picked: [] };
}

function ids(eps: readonly Endpoint[]): string[] {
  return eps.map((e) => e.meta.id);
}

function argmax(a: Float64Array, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[i]! > a[best]!) best = i;
  return best;
}
