/**
 * The decision record: why a request went where it went. Built only for requests that ask for it (or
 * when debug logging is on), so the scheduling hot path pays nothing for it otherwise.
 */
import type { PdDecision } from '../framework/scheduling.js';

export interface FilterRecord {
  readonly plugin: string;
  readonly type: string;
  /** Endpoint ids that passed. */
  readonly survivors: readonly string[];
}

export interface ScorerRecord {
  readonly plugin: string;
  readonly type: string;
  readonly weight: number;
  /** Clamped score per endpoint id. */
  readonly scores: Readonly<Record<string, number>>;
}

export interface ProfileRecord {
  readonly profile: string;
  readonly filters: FilterRecord[];
  readonly scorers: ScorerRecord[];
  /** Σ weight × score per endpoint id. */
  totals: Record<string, number>;
  picked: string[];
  /** Set when the profile found no endpoint. */
  failed?: string;
}

export interface DecisionRecord {
  readonly requestId: string;
  readonly model: string;
  readonly candidates: readonly string[];
  readonly profiles: ProfileRecord[];
  primaryProfile: string | null;
  /** `ip:port` of the endpoints the request is sent to, in order. */
  destination: string[];
  pd: PdDecision | null;
}

export function newDecisionRecord(
  requestId: string,
  model: string,
  candidates: readonly string[],
): DecisionRecord {
  return { requestId, model, candidates, profiles: [], primaryProfile: null, destination: [], pd: null };
}
