/**
 * Drives an engine core in virtual time: requests arrive at their stated times, each step starts when
 * the previous one ends, and an idle engine jumps straight to the next arrival. The same scheduler and
 * timing model the server runs in real time, minus the wall clock, so capacity studies and calibration
 * checks run in milliseconds and give the same answer every time.
 */
import type { EngineRequestInit, FinishReason, StepResult } from './core/types.js';

/** What the runner needs of an engine (`EngineCore` satisfies it). */
export interface VirtualTimeEngine {
  addRequest(init: EngineRequestInit): void;
  step(now: number): StepResult;
  hasUnfinishedRequests(): boolean;
}

export interface SimulatedRequestResult {
  readonly requestId: string;
  readonly arrivalTime: number;
  readonly firstTokenTime: number;
  readonly finishedTime: number;
  /** Seconds from arrival to the first output token. */
  readonly ttft: number;
  /** Mean gap between consecutive output tokens (seconds); null with fewer than two tokens. */
  readonly meanItl: number | null;
  /** Seconds from arrival to the last output. */
  readonly e2e: number;
  readonly numPromptTokens: number;
  readonly numCachedTokens: number;
  readonly numOutputTokens: number;
  readonly finishReason: FinishReason;
}

export interface SimulationResult {
  /** In order of completion. */
  readonly requests: readonly SimulatedRequestResult[];
  readonly numSteps: number;
  readonly startTime: number;
  readonly endTime: number;
  /** Seconds in which a step was running. */
  readonly busyTime: number;
  /** Sequences per step, weighted by step duration. */
  readonly meanBatchSize: number;
  readonly numPreempted: number;
}

export interface SimulationOptions {
  /** Give up (throw) after this many steps; guards tests against a scheduler that never finishes. */
  readonly maxSteps?: number;
}

interface Progress {
  readonly init: EngineRequestInit;
  firstTokenTime: number;
  lastTokenTime: number;
  numOutputTokens: number;
  numPromptTokens: number;
  numCachedTokens: number;
}

/**
 * Runs every request through `engine` to completion and reports per-request latencies. Requests whose
 * arrival falls inside a step join at the next step boundary, as they would in vLLM's engine loop.
 */
export function simulate(
  engine: VirtualTimeEngine,
  requests: readonly EngineRequestInit[],
  options: SimulationOptions = {},
): SimulationResult {
  const maxSteps = options.maxSteps ?? Infinity;
  const arrivals = [...requests].sort((a, b) => a.arrivalTime - b.arrivalTime);
  const inFlight = new Map<string, Progress>();
  const done: SimulatedRequestResult[] = [];

  let next = 0;
  let now = arrivals.length > 0 ? (arrivals[0] as EngineRequestInit).arrivalTime : 0;
  const startTime = now;
  let numSteps = 0;
  let busyTime = 0;
  let seqSeconds = 0;
  let numPreempted = 0;

  for (;;) {
    while (next < arrivals.length && (arrivals[next] as EngineRequestInit).arrivalTime <= now) {
      const init = arrivals[next++] as EngineRequestInit;
      if (inFlight.has(init.requestId)) throw new Error(`duplicate request id ${init.requestId}`);
      engine.addRequest(init);
      inFlight.set(init.requestId, {
        init,
        firstTokenTime: -1,
        lastTokenTime: -1,
        numOutputTokens: 0,
        numPromptTokens: init.promptTokenIds.length,
        numCachedTokens: 0,
      });
    }

    if (!engine.hasUnfinishedRequests()) {
      if (next >= arrivals.length) break;
      now = (arrivals[next] as EngineRequestInit).arrivalTime;
      continue;
    }

    const step = engine.step(now);
    numPreempted += step.numPreempted;
    if (step.numScheduledSeqs === 0 && step.outputs.length === 0) {
      // Nothing fits right now (e.g. the KV cache is full of waiting work): only an arrival can change that.
      if (next >= arrivals.length) {
        throw new Error(`engine stalled at t=${now}s with unfinished requests and nothing schedulable`);
      }
      now = (arrivals[next] as EngineRequestInit).arrivalTime;
      continue;
    }
    if (++numSteps > maxSteps) throw new Error(`simulation exceeded ${maxSteps} steps`);

    const duration = step.endTime - step.startTime;
    busyTime += duration;
    seqSeconds += step.numScheduledSeqs * duration;
    now = step.endTime;

    for (const output of step.outputs) {
      const progress = inFlight.get(output.requestId);
      if (progress === undefined) continue;
      const n = output.newTokenIds.length;
      if (n > 0) {
        if (progress.numOutputTokens === 0) progress.firstTokenTime = now;
        progress.lastTokenTime = now;
        progress.numOutputTokens += n;
      }
      progress.numPromptTokens = output.numPromptTokens;
      progress.numCachedTokens = output.numCachedTokens;
      if (output.finishReason !== null) {
        inFlight.delete(output.requestId);
        done.push(finish(progress, output.finishReason, now));
      }
    }
  }

  return {
    requests: done,
    numSteps,
    startTime,
    endTime: now,
    busyTime,
    meanBatchSize: busyTime > 0 ? seqSeconds / busyTime : 0,
    numPreempted,
  };
}

function finish(p: Progress, finishReason: FinishReason, now: number): SimulatedRequestResult {
  const arrival = p.init.arrivalTime;
  const firstTokenTime = p.numOutputTokens > 0 ? p.firstTokenTime : now;
  return {
    requestId: p.init.requestId,
    arrivalTime: arrival,
    firstTokenTime,
    finishedTime: now,
    ttft: firstTokenTime - arrival,
    meanItl: p.numOutputTokens > 1 ? (p.lastTokenTime - p.firstTokenTime) / (p.numOutputTokens - 1) : null,
    e2e: now - arrival,
    numPromptTokens: p.numPromptTokens,
    numCachedTokens: p.numCachedTokens,
    numOutputTokens: p.numOutputTokens,
    finishReason,
  };
}

export interface SimulationSummary {
  readonly count: number;
  readonly meanTtft: number;
  /** Mean over every inter-token gap of every request (inference-perf's ITL mean). */
  readonly meanItl: number;
  readonly meanE2e: number;
}

/** Aggregate latencies over a set of results (e.g. those that arrived after a warm-up). */
export function summarize(results: readonly SimulatedRequestResult[]): SimulationSummary {
  let ttft = 0;
  let e2e = 0;
  let gaps = 0;
  let gapSeconds = 0;
  for (const r of results) {
    ttft += r.ttft;
    e2e += r.e2e;
    if (r.meanItl !== null) {
      gaps += r.numOutputTokens - 1;
      gapSeconds += r.meanItl * (r.numOutputTokens - 1);
    }
  }
  const count = results.length;
  return {
    count,
    meanTtft: count > 0 ? ttft / count : NaN,
    meanItl: gaps > 0 ? gapSeconds / gaps : NaN,
    meanE2e: count > 0 ? e2e / count : NaN,
  };
}
