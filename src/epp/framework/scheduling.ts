/**
 * The scheduling extension points (upstream `framework/interface/scheduling`): a ProfileHandler picks
 * which profiles to run and turns their results into the decision; each profile runs its Filters,
 * then its Scorers (each score clamped to [0,1], total = Σ weight × score, no normalisation), then its
 * Picker. Plugins return values and do not throw; the runner catches what they throw anyway.
 */
import type { Endpoint } from './endpoint.js';
import type { Plugin } from './plugin.js';
import type { InferenceRequest } from './request.js';

export interface Filter extends Plugin {
  /** The endpoints that stay candidates; may be the input array itself. */
  filter(req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[];
}

export type ScorerCategory = 'affinity' | 'distribution' | 'balance';

export interface Scorer extends Plugin {
  readonly category: ScorerCategory;
  /**
   * Writes one score per endpoint into `out` (same index as `endpoints`; `out` is zero-filled and at
   * least as long). The runner clamps to [0,1].
   */
  score(req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void;
}

/** Endpoints with their total scores, index-aligned. */
export interface ScoredEndpoints {
  readonly endpoints: readonly Endpoint[];
  readonly scores: Float64Array;
}

export interface Picker extends Plugin {
  /** The chosen endpoints, best first; empty only when `scored` is empty. */
  pick(req: InferenceRequest, scored: ScoredEndpoints): Endpoint[];
}

export interface WeightedScorer {
  readonly scorer: Scorer;
  readonly weight: number;
}

export interface SchedulerProfile {
  readonly name: string;
  readonly filters: readonly Filter[];
  readonly scorers: readonly WeightedScorer[];
  readonly picker: Picker;
}

export interface ProfileRunResult {
  readonly targetEndpoints: readonly Endpoint[];
  /** Every endpoint that reached the scorers, with its total. */
  readonly scored: ScoredEndpoints;
}

/** `decode-only`, `prefill-decode`, … as upstream's `disagg_decision_total` labels them. */
export interface PdDecision {
  readonly decision: string;
  readonly reason: string;
}

export interface SchedulingResult {
  readonly profileResults: ReadonlyMap<string, ProfileRunResult | null>;
  readonly primaryProfileName: string;
  readonly pd?: PdDecision;
  /**
   * Send to this port of the chosen endpoints instead of their own (legacy handlers whose pool points
   * at the model server while a sidecar listens on another port).
   */
  readonly targetPort?: number;
}

export interface ProfileHandler extends Plugin {
  /** Checked by the loader: throw a `ConfigError` when the configured profiles do not fit. */
  checkProfiles?(profiles: ReadonlyMap<string, SchedulerProfile>): void;
  /**
   * The profiles to run next, given the results so far (null = that profile ran and found nothing).
   * An empty answer ends the cycle.
   */
  pick(
    req: InferenceRequest,
    profiles: ReadonlyMap<string, SchedulerProfile>,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): readonly SchedulerProfile[];
  /** Throws `SchedulingFailedError` when the results cannot serve the request. */
  processResults(
    req: InferenceRequest,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): SchedulingResult;
}

/** Decides whether a request is worth a separate prefill (P/D) for a chosen decode endpoint. */
export interface PdDecider extends Plugin {
  disaggregate(req: InferenceRequest, decode: Endpoint): { readonly yes: boolean; readonly reason: string };
}

export function isFilter(p: Plugin): p is Filter {
  return typeof (p as Partial<Filter>).filter === 'function';
}
export function isScorer(p: Plugin): p is Scorer {
  return typeof (p as Partial<Scorer>).score === 'function';
}
export function isPicker(p: Plugin): p is Picker {
  return typeof (p as Partial<Picker>).pick === 'function' && !isProfileHandler(p);
}
export function isProfileHandler(p: Plugin): p is ProfileHandler {
  return typeof (p as Partial<ProfileHandler>).processResults === 'function';
}
export function isPdDecider(p: Plugin): p is PdDecider {
  return typeof (p as Partial<PdDecider>).disaggregate === 'function';
}
