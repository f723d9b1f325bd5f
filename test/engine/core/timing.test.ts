import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import {
  createTimer,
  defaultTimingParams,
  kvCapacity,
  resolveTimingParams,
  RooflineTimer,
  type TimingParams,
} from '../../../src/engine/core/timing.js';
import type { StepShape } from '../../../src/engine/core/types.js';
import { H100, L40S } from '../../../src/engine/profiles/hardware.js';
import {
  DEFAULT_MODEL_PROFILE,
  GPT_OSS_120B,
  LLAMA_3_1_70B,
  LLAMA_3_1_8B,
  QWEN3_32B,
  QWEN3_8B,
} from '../../../src/engine/profiles/models.js';

const H100_PARAMS = defaultTimingParams(H100);

function decode(numSeqs: number, context: number): StepShape {
  return {
    numSeqs,
    numTokens: numSeqs,
    kvTokensRead: numSeqs * (context + 1),
    attentionPairs: numSeqs * (context + 1),
  };
}

function prefill(tokens: number): StepShape {
  return { numSeqs: 1, numTokens: tokens, kvTokensRead: tokens, attentionPairs: (tokens * (tokens + 1)) / 2 };
}

/** The roofline written out longhand for a dense model on one GPU. */
function denseSingleGpu(
  shape: StepShape,
  params: TimingParams = H100_PARAMS,
): { compute: number; memory: number } {
  const m = QWEN3_8B;
  const flops =
    2 * m.activeParams * shape.numTokens +
    4 * m.numLayers * m.numAttentionHeads * m.headDim * shape.attentionPairs;
  const bytes =
    m.totalParams * 2 + shape.kvTokensRead * 2 * m.numLayers * m.numKvHeads * m.headDim * m.kvDtypeBytes;
  return {
    compute: flops / (H100.peakFlopsPerSecond * params.mfu),
    memory: bytes / (H100.memoryBandwidthBytesPerSecond * params.mbu),
  };
}

describe('RooflineTimer', () => {
  const timer = new RooflineTimer(QWEN3_8B, H100, 1, H100_PARAMS);

  it('times a small decode batch by its memory traffic plus the step overhead', () => {
    const shape = decode(4, 1000);
    const { compute, memory } = denseSingleGpu(shape);
    expect(memory).toBeGreaterThan(compute);
    expect(timer.stepDuration(shape)).toBeCloseTo(memory + H100_PARAMS.stepOverheadSeconds, 12);
  });

  it('times a large prefill chunk by its FLOPs plus the step overhead', () => {
    const shape = prefill(4096);
    const { compute, memory } = denseSingleGpu(shape);
    expect(compute).toBeGreaterThan(memory);
    expect(timer.stepDuration(shape)).toBeCloseTo(compute + H100_PARAMS.stepOverheadSeconds, 12);
  });

  it('keeps a decode step nearly flat in batch size while memory bound and grows it once compute bound', () => {
    const itl1 = timer.stepDuration(decode(1, 0));
    const itl8 = timer.stepDuration(decode(8, 0));
    expect(itl8 / itl1).toBeLessThan(1.01);
    const big = timer.stepDuration(prefill(8192));
    const bigger = timer.stepDuration(prefill(16384));
    expect(bigger / big).toBeGreaterThan(1.9);
  });

  it('takes no time for a step that computes no tokens', () => {
    expect(timer.stepDuration({ numSeqs: 0, numTokens: 0, kvTokensRead: 0, attentionPairs: 0 })).toBe(0);
  });

  it('scales the whole step with the efficiencies it is given', () => {
    const slow = new RooflineTimer(QWEN3_8B, H100, 1, { ...H100_PARAMS, mbu: H100_PARAMS.mbu / 2 });
    const shape = decode(1, 100);
    const overhead = H100_PARAMS.stepOverheadSeconds;
    expect(slow.stepDuration(shape) - overhead).toBeCloseTo(2 * (timer.stepDuration(shape) - overhead), 12);
  });

  it('splits compute and memory across tensor-parallel ranks and adds two ring all-reduces per layer', () => {
    const tp1 = new RooflineTimer(QWEN3_32B, H100, 1, H100_PARAMS);
    const tp2 = new RooflineTimer(QWEN3_32B, H100, 2, H100_PARAMS);
    const overhead = H100_PARAMS.stepOverheadSeconds;
    for (const shape of [decode(1, 0), prefill(4096)]) {
      const allReduce =
        2 *
        QWEN3_32B.numLayers *
        (H100.interconnect.allReduceLatencySeconds +
          (((2 * (2 - 1)) / 2) * shape.numTokens * QWEN3_32B.hiddenSize * 2) /
            H100.interconnect.bandwidthBytesPerSecond);
      const roofline1 = tp1.stepDuration(shape) - overhead;
      expect(tp2.stepDuration(shape)).toBeCloseTo(roofline1 / 2 + allReduce + overhead, 12);
      expect(tp2.stepDuration(shape)).toBeLessThan(tp1.stepDuration(shape));
    }
  });

  it('replicates KV heads when there are more ranks than KV heads', () => {
    // 8 KV heads on 16 ranks: each rank holds one head, so KV reads do not shrink past TP=8.
    const tp8 = new RooflineTimer(LLAMA_3_1_70B, H100, 8, H100_PARAMS);
    const tp16 = new RooflineTimer(LLAMA_3_1_70B, H100, 16, H100_PARAMS);
    const kvOnly = (t: RooflineTimer, kv: number): number =>
      t.stepDuration({ numSeqs: 1, numTokens: 1, kvTokensRead: kv, attentionPairs: 1 }) -
      t.stepDuration({ numSeqs: 1, numTokens: 1, kvTokensRead: 0, attentionPairs: 1 });
    expect(kvOnly(tp16, 1e6)).toBeCloseTo(kvOnly(tp8, 1e6), 9);
  });

  it('reads only the routed share of the experts for a small MoE batch', () => {
    const moe = GPT_OSS_120B.moe!;
    const gptOss = new RooflineTimer(GPT_OSS_120B, H100, 1, { ...H100_PARAMS, stepOverheadSeconds: 0 });
    const expertBytes = moe.expertParams * moe.expertBytesPerParam;
    const denseBytes = (GPT_OSS_120B.totalParams - moe.expertParams) * 2;
    const rate = H100.memoryBandwidthBytesPerSecond * H100_PARAMS.mbu;
    const shape = { numSeqs: 1, numTokens: 1, kvTokensRead: 0, attentionPairs: 0 };
    expect(gptOss.stepDuration(shape)).toBeCloseTo((denseBytes + expertBytes * (4 / 128)) / rate, 12);
    // 256 tokens touch practically every expert: 1 − (31/32)^256 ≈ 0.9997.
    const wide = { numSeqs: 256, numTokens: 256, kvTokensRead: 0, attentionPairs: 0 };
    expect(gptOss.stepDuration(wide) / ((denseBytes + expertBytes) / rate)).toBeCloseTo(1, 3);
  });

  it('caps the attention of sliding-window layers at the window', () => {
    const gptOss = new RooflineTimer(GPT_OSS_120B, H100, 1, { ...H100_PARAMS, stepOverheadSeconds: 0 });
    const fullOnly = new RooflineTimer(
      { ...GPT_OSS_120B, slidingWindow: { window: 128, numLayers: 0 } },
      H100,
      1,
      { ...H100_PARAMS, stepOverheadSeconds: 0 },
    );
    const long = prefill(16384);
    const short = prefill(64);
    expect(gptOss.stepDuration(long)).toBeLessThan(fullOnly.stepDuration(long));
    // Within the window both layer kinds do the same work.
    expect(gptOss.stepDuration(short)).toBeCloseTo(fullOnly.stepDuration(short), 12);
  });

  it('returns exactly the same durations for the same seed and stays within the clamp', () => {
    const params = { ...H100_PARAMS, jitter: 0.1 };
    const a = new RooflineTimer(QWEN3_8B, H100, 1, params, 42);
    const b = new RooflineTimer(QWEN3_8B, H100, 1, params, 42);
    const c = new RooflineTimer(QWEN3_8B, H100, 1, params, 43);
    const shape = decode(16, 500);
    const base = timer.stepDuration(shape);
    const seqA = Array.from({ length: 2000 }, () => a.stepDuration(shape));
    const seqB = Array.from({ length: 2000 }, () => b.stepDuration(shape));
    const seqC = Array.from({ length: 2000 }, () => c.stepDuration(shape));
    expect(seqA).toEqual(seqB);
    expect(seqA).not.toEqual(seqC);
    const ratios = seqA.map((d) => d / base);
    expect(Math.min(...ratios)).toBeGreaterThanOrEqual(0.7 - 1e-12);
    expect(Math.max(...ratios)).toBeLessThanOrEqual(1.3 + 1e-12);
    const mean = ratios.reduce((s, r) => s + r, 0) / ratios.length;
    expect(mean).toBeGreaterThan(0.99);
    expect(mean).toBeLessThan(1.01);
    const sd = Math.sqrt(ratios.reduce((s, r) => s + (r - mean) ** 2, 0) / ratios.length);
    expect(sd).toBeGreaterThan(0.09);
    expect(sd).toBeLessThan(0.11);
  });

  it('never lets a large jitter shrink a step by more than 70 %', () => {
    const wild = new RooflineTimer(QWEN3_8B, H100, 1, { ...H100_PARAMS, jitter: 0.5 }, 7);
    const shape = decode(1, 0);
    const base = timer.stepDuration(shape);
    for (let i = 0; i < 5000; i++) {
      const r = wild.stepDuration(shape) / base;
      expect(r).toBeGreaterThanOrEqual(0.3 - 1e-12);
      expect(r).toBeLessThanOrEqual(1.7 + 1e-12);
    }
  });

  it('refuses a tensor-parallel size that does not divide the attention heads', () => {
    expect(() => new RooflineTimer(QWEN3_32B, H100, 3, H100_PARAMS)).toThrow(ConfigError);
    expect(() => new RooflineTimer(QWEN3_32B, H100, 0, H100_PARAMS)).toThrow(/positive integer/);
  });
});

describe('resolveTimingParams', () => {
  it('uses the hardware calibration with zero jitter by default', () => {
    expect(resolveTimingParams(H100)).toEqual({
      mfu: H100.calibration.mfu,
      mbu: H100.calibration.mbu,
      stepOverheadSeconds: H100.calibration.stepOverheadSeconds,
      jitter: 0,
      allReduceLatencySeconds: H100.interconnect.allReduceLatencySeconds,
      allReduceBandwidthBytesPerSecond: H100.interconnect.bandwidthBytesPerSecond,
    });
  });

  it('maps the flag units onto the parameters', () => {
    const p = resolveTimingParams(H100, {
      mfu: 0.3,
      mbu: 0.5,
      stepOverheadMs: 2,
      jitter: 0.05,
      allReduceLatencyUs: 8,
    });
    expect(p.mfu).toBe(0.3);
    expect(p.mbu).toBe(0.5);
    expect(p.stepOverheadSeconds).toBeCloseTo(0.002, 12);
    expect(p.jitter).toBe(0.05);
    expect(p.allReduceLatencySeconds).toBeCloseTo(8e-6, 15);
  });

  it('rejects out-of-range overrides naming the flag', () => {
    expect(() => resolveTimingParams(H100, { mfu: 0 })).toThrow(/--sim-mfu/);
    expect(() => resolveTimingParams(H100, { mbu: 1.5 })).toThrow(/--sim-mbu/);
    expect(() => resolveTimingParams(H100, { stepOverheadMs: -1 })).toThrow(/--sim-step-overhead-ms/);
    expect(() => resolveTimingParams(H100, { jitter: 0.9 })).toThrow(/--sim-jitter/);
    expect(() => resolveTimingParams(H100, { mfu: Number.NaN })).toThrow(ConfigError);
  });
});

describe('kvCapacity', () => {
  it('gives Qwen3-32B on two H100s about 300k tokens of KV cache', () => {
    const cap = kvCapacity(QWEN3_32B, H100, 2, 0.9, 16);
    expect(cap.kvBytesPerToken).toBe(2 * 64 * 8 * 128 * 2);
    expect(cap.kvBytesPerToken).toBe(256 * 1024);
    expect(cap.weightsBytes).toBeCloseTo(65.52e9, -7);
    const perGpuBlockBytes = 16 * (cap.kvBytesPerToken / 2);
    expect(cap.numGpuBlocks).toBe(Math.floor((80e9 * 0.9 - 65.52e9 / 2) / perGpuBlockBytes));
    expect(cap.tokens).toBe(cap.numGpuBlocks * 16);
    expect(cap.tokens).toBeGreaterThan(290_000);
    expect(cap.tokens).toBeLessThan(310_000);
  });

  it('matches the published KV bytes per token of the Llama-3 family', () => {
    // llm-d-inference-sim's latency profiles: 8B ~128 KB, 70B ~320 KB per token in FP16.
    expect(kvCapacity(LLAMA_3_1_8B, H100, 1, 0.9, 16).kvBytesPerToken).toBe(128 * 1024);
    expect(kvCapacity(LLAMA_3_1_70B, H100, 4, 0.9, 16).kvBytesPerToken).toBe(320 * 1024);
  });

  it('counts the whole card minus the weights on a single GPU', () => {
    const cap = kvCapacity(QWEN3_8B, H100, 1, 0.9, 16);
    expect(cap.numGpuBlocks).toBe(Math.floor((72e9 - 8.19e9 * 2) / (16 * 36 * 8 * 128 * 2 * 2)));
    // A larger block size never yields more tokens.
    expect(kvCapacity(QWEN3_8B, H100, 1, 0.9, 32).tokens).toBeLessThanOrEqual(cap.tokens);
  });

  it('refuses a model whose weights do not fit, saying what to change', () => {
    expect(() => kvCapacity(LLAMA_3_1_70B, L40S, 1, 0.9, 16)).toThrow(/tensor parallel size/);
    expect(() => kvCapacity(QWEN3_8B, H100, 1, 0.9, 0)).toThrow(ConfigError);
  });
});

describe('createTimer', () => {
  it('resolves the model and hardware names and applies overrides', () => {
    const { timer, model, hardware, params } = createTimer('qwen/qwen3-32b', 'h100-80g', 2, { mbu: 0.6 }, 1);
    expect(model).toBe(QWEN3_32B);
    expect(hardware).toBe(H100);
    expect(params.mbu).toBe(0.6);
    expect(timer.tp).toBe(2);
  });

  it('times unknown model names as the default profile', () => {
    expect(createTimer('random', 'H100').model).toBe(DEFAULT_MODEL_PROFILE);
  });

  it('rejects unknown hardware and lists the known accelerators', () => {
    expect(() => createTimer('Qwen/Qwen3-8B', 'TPU-v5e')).toThrow(ConfigError);
    expect(() => createTimer('Qwen/Qwen3-8B', 'TPU-v5e')).toThrow(/H100, H200, A100-80G, L40S, B200/);
  });
});
