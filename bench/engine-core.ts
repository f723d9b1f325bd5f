/**
 * Engine-core speed in virtual time: steady-state decode steps per second with 256 running sequences
 * (1k-token prompts, long outputs, prefix caching and KV events on, a linear step timer). The goal is
 * ≥ 5,000 steps/s, so that simulated servers are never limited by the scheduler.
 *
 * Run directly with `npx tsx bench/engine-core.ts`; `bench/engine.ts` calls `benchEngineCore()`.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Rng } from '../src/core/rng.js';
import { EngineCore } from '../src/engine/core/engine-core.js';
import type { StepShape, StepTimer } from '../src/engine/core/types.js';

export interface EngineCoreBenchOptions {
  numSeqs?: number;
  promptTokens?: number;
  measuredSteps?: number;
  blockSize?: number;
  hashAlgo?: 'sha256_cbor' | 'xxhash_cbor';
}

export interface EngineCoreBenchResult {
  /** Decode steps per wall-clock second at `numSeqs` running sequences. */
  stepsPerSecond: number;
  /** Output tokens per wall-clock second over the measured steps. */
  tokensPerSecond: number;
  numSeqs: number;
  measuredSteps: number;
  /** Wall-clock seconds spent getting every sequence through its prefill. */
  warmupSeconds: number;
  /** Virtual seconds the measured steps represent. */
  virtualSeconds: number;
}

/** A simple linear timing model: fixed overhead plus per-token and per-KV-token costs. */
const linearTimer: StepTimer = {
  stepDuration(shape: StepShape): number {
    return 0.005 + 2e-5 * shape.numTokens + 1e-8 * shape.kvTokensRead;
  },
};

export async function benchEngineCore(opts: EngineCoreBenchOptions = {}): Promise<EngineCoreBenchResult> {
  const numSeqs = opts.numSeqs ?? 256;
  const promptTokens = opts.promptTokens ?? 1024;
  const measuredSteps = opts.measuredSteps ?? 5000;
  const blockSize = opts.blockSize ?? 16;
  const warmupSteps = 200;
  const outputTokens = warmupSteps + measuredSteps + Math.ceil((numSeqs * promptTokens) / 8192) + 64;
  const engine = new EngineCore({
    blockSize,
    numGpuBlocks: Math.ceil((numSeqs * (promptTokens + outputTokens)) / blockSize) + 1024,
    maxNumSeqs: numSeqs,
    maxNumBatchedTokens: 8192,
    maxModelLen: promptTokens + outputTokens + 16,
    enablePrefixCaching: true,
    hashAlgo: opts.hashAlgo ?? 'sha256_cbor',
    hashSeed: '0',
    enableKvEvents: true,
    timer: linearTimer,
  });
  const rng = new Rng(1234);
  for (let s = 0; s < numSeqs; s++) {
    const prompt = Array.from({ length: promptTokens }, () => rng.int(0, 151_000));
    const output = Array.from({ length: outputTokens }, () => rng.int(0, 151_000));
    engine.addRequest({
      requestId: `r${s}`,
      promptTokenIds: prompt,
      outputTokenIds: output,
      maxTokens: outputTokens,
      arrivalTime: 0,
    });
  }

  let now = 0;
  const warmStart = performance.now();
  // Prefill everything, then let decode settle.
  while (engine.stats().numWaiting > 0) {
    now = engine.step(now).endTime;
    engine.drainEvents();
  }
  for (let i = 0; i < warmupSteps; i++) {
    now = engine.step(now).endTime;
    engine.drainEvents();
  }
  const warmupSeconds = (performance.now() - warmStart) / 1000;

  const virtualStart = now;
  let tokens = 0;
  const t0 = performance.now();
  for (let i = 0; i < measuredSteps; i++) {
    const r = engine.step(now);
    now = r.endTime;
    tokens += r.numScheduledTokens;
    if ((i & 63) === 0) engine.drainEvents();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (engine.stats().numRunning !== numSeqs) throw new Error('bench lost sequences before the end');
  return {
    stepsPerSecond: measuredSteps / seconds,
    tokensPerSecond: tokens / seconds,
    numSeqs,
    measuredSteps,
    warmupSeconds,
    virtualSeconds: now - virtualStart,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await benchEngineCore();
  console.log(
    `engine core: ${Math.round(r.stepsPerSecond)} steps/s at ${r.numSeqs} running sequences ` +
      `(${Math.round(r.tokensPerSecond)} tokens/s, goal ≥ 5000 steps/s; warm-up ${r.warmupSeconds.toFixed(2)} s)`,
  );
}
