/**
 * Load shapes: when each request of a stage is sent. Arrival processes follow inference-perf
 * (loadgen/load_timer.py):
 *
 * - `constant`: rate × duration requests whose gaps are exponential draws rescaled to sum exactly to the
 *   duration (so the stage sends exactly that many, not evenly spaced);
 * - `poisson`: each second, k ~ Poisson(rate) requests spread over that second the same way (a second
 *   with k = 0 sends nothing); a last partial second draws from rate × its length;
 * - `concurrency`: a closed loop of N in-flight requests, each sent as the previous one ends, for
 *   `num_requests` requests or `duration` seconds.
 *
 * Arrival times are seconds from the stage's start, drawn from the run's seeded generator.
 */
import type { Rng } from '../core/rng.js';

export interface RateStage {
  type: 'constant' | 'poisson';
  rate: number;
  /** Seconds. */
  duration: number;
  warmup: boolean;
}

export interface ConcurrencyStage {
  type: 'concurrency';
  concurrency: number;
  /** Stop after this many requests, or after `duration` seconds, whichever comes first. */
  num_requests?: number | undefined;
  duration?: number | undefined;
  warmup: boolean;
}

export type Stage = RateStage | ConcurrencyStage;

/** One exponential draw of mean 1. */
function exp1(rng: Rng): number {
  return -Math.log(1 - rng.next());
}

/** `n` arrivals over `[start, start + length]`: exponential gaps rescaled so the last lands at the end. */
function spread(n: number, start: number, length: number, rng: Rng, out: number[]): void {
  if (n === 0) return;
  const gaps = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    gaps[i] = exp1(rng);
    sum += gaps[i]!;
  }
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += gaps[i]!;
    out.push(start + (length * t) / sum);
  }
}

/** Send times of a constant-rate stage: exactly round(rate × duration) of them. */
export function constantArrivals(rate: number, duration: number, rng: Rng): Float64Array {
  const out: number[] = [];
  spread(Math.round(rate * duration), 0, duration, rng, out);
  return Float64Array.from(out);
}

/** Send times of a Poisson stage, second by second. */
export function poissonArrivals(rate: number, duration: number, rng: Rng): Float64Array {
  const out: number[] = [];
  for (let s = 0; s < duration; s++) {
    const length = Math.min(1, duration - s);
    spread(poisson(rate * length, rng), s, length, rng, out);
  }
  return Float64Array.from(out);
}

/**
 * A Poisson(lambda) sample. Knuth's product method for lambda ≤ 30; larger means are split into parts of
 * at most 30 (a sum of independent Poisson variables is Poisson), which stays exact.
 */
export function poisson(lambda: number, rng: Rng): number {
  if (!(lambda > 0)) return 0;
  let k = 0;
  let rest = lambda;
  while (rest > 0) {
    const part = Math.min(rest, 30);
    rest -= part;
    const limit = Math.exp(-part);
    let p = rng.next();
    while (p > limit) {
      k++;
      p *= rng.next();
    }
  }
  return k;
}

/** Send times of a rate stage. */
export function arrivals(stage: RateStage, rng: Rng): Float64Array {
  return stage.type === 'constant'
    ? constantArrivals(stage.rate, stage.duration, rng)
    : poissonArrivals(stage.rate, stage.duration, rng);
}

/** What a stage asks for, in words (progress line, report). */
export function describeStage(stage: Stage): string {
  if (stage.type === 'concurrency') {
    const parts = [`concurrency ${stage.concurrency}`];
    if (stage.num_requests !== undefined) parts.push(`${stage.num_requests} requests`);
    if (stage.duration !== undefined) parts.push(`${stage.duration} s`);
    return parts.join(', ');
  }
  return `${stage.type} ${stage.rate} req/s × ${stage.duration} s`;
}
