/** Shared builders for the engine-core tests: a constant step timer, small engines and run loops. */
import { EngineCore, type EngineCoreConfig } from '../../../src/engine/core/engine-core.js';
import type {
  EngineRequestInit,
  FinishReason,
  RequestTimings,
  StepResult,
} from '../../../src/engine/core/types.js';

export const STEP_SECONDS = 0.01;

export const constantTimer = { stepDuration: (): number => STEP_SECONDS };

export function makeEngine(overrides: Partial<EngineCoreConfig> = {}): EngineCore {
  return new EngineCore({
    blockSize: 4,
    numGpuBlocks: 64,
    maxNumSeqs: 8,
    maxNumBatchedTokens: 64,
    maxModelLen: 256,
    enablePrefixCaching: true,
    hashAlgo: 'sha256_cbor',
    hashSeed: '0',
    enableKvEvents: false,
    timer: constantTimer,
    ...overrides,
  });
}

/** Tokens 1000·k + i, so that prompts built from different keys never share a block. */
export function tokens(key: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => 1000 * key + i);
}

export function request(
  requestId: string,
  promptTokenIds: number[],
  outputTokenIds: number[],
  extra: Partial<EngineRequestInit> = {},
): EngineRequestInit {
  return {
    requestId,
    promptTokenIds,
    outputTokenIds,
    maxTokens: outputTokenIds.length,
    arrivalTime: 0,
    ...extra,
  };
}

export interface Collected {
  tokens: number[];
  finishReason: FinishReason | null;
  numCachedTokens: number;
  timings: RequestTimings | undefined;
  /** Indexes of the steps that gave this request a token. */
  tokenSteps: number[];
}

export interface Run {
  steps: StepResult[];
  byRequest: Map<string, Collected>;
  now: number;
}

/** Steps the engine until it has nothing left (or `maxSteps`), collecting outputs per request. */
export function runUntilIdle(engine: EngineCore, start = 0, maxSteps = 10_000): Run {
  const steps: StepResult[] = [];
  const byRequest = new Map<string, Collected>();
  let now = start;
  while (engine.hasUnfinishedRequests() && steps.length < maxSteps) {
    const r = engine.step(now);
    collect(r, steps.length, byRequest);
    steps.push(r);
    if (r.numScheduledSeqs === 0) throw new Error(`engine stalled at step ${steps.length}`);
    now = r.endTime;
  }
  return { steps, byRequest, now };
}

export function collect(r: StepResult, stepIndex: number, byRequest: Map<string, Collected>): void {
  for (const o of r.outputs) {
    let c = byRequest.get(o.requestId);
    if (c === undefined) {
      c = { tokens: [], finishReason: null, numCachedTokens: 0, timings: undefined, tokenSteps: [] };
      byRequest.set(o.requestId, c);
    }
    c.tokens.push(...o.newTokenIds);
    if (o.newTokenIds.length > 0) c.tokenSteps.push(stepIndex);
    c.numCachedTokens = o.numCachedTokens;
    if (o.finishReason !== null) {
      c.finishReason = o.finishReason;
      c.timings = o.timings;
    }
  }
}
