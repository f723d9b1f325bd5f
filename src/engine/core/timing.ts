/**
 * The calibrated timing model: how long one engine step takes on a given model and accelerator.
 *
 * A roofline per step: the step is bound either by compute (matmul + attention FLOPs at a calibrated
 * fraction of peak) or by memory (weights + the KV cache the batch reads, at a calibrated fraction of
 * HBM bandwidth), plus a fixed per-step overhead and, under tensor parallelism, two ring all-reduces
 * per layer. Also the KV-cache capacity vLLM would allocate. Derivation and calibration:
 * docs/timing-model.md.
 */
import { ConfigError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { findHardwareProfile, hardwareNames, type HardwareProfile } from '../profiles/hardware.js';
import {
  kvBytesPerToken,
  modelWeightsBytes,
  resolveModelProfile,
  type ModelProfile,
} from '../profiles/models.js';
import type { StepShape, StepTimer } from './types.js';

export interface TimingParams {
  /** Fraction of peak FLOP/s achieved. */
  readonly mfu: number;
  /** Fraction of peak HBM bandwidth achieved. */
  readonly mbu: number;
  /** Fixed time added to every step, seconds. */
  readonly stepOverheadSeconds: number;
  /** Relative standard deviation of a step's duration (0 = deterministic). */
  readonly jitter: number;
  /** Fixed cost of one all-reduce, seconds. */
  readonly allReduceLatencySeconds: number;
  /** Per-direction link bandwidth the ring all-reduce runs at, bytes/s. */
  readonly allReduceBandwidthBytesPerSecond: number;
}

/** User overrides, in the units of the `--sim-*` flags. Unset fields keep the hardware's defaults. */
export interface TimingOverrides {
  /** `--sim-mfu` */
  readonly mfu?: number | undefined;
  /** `--sim-mbu` */
  readonly mbu?: number | undefined;
  /** `--sim-step-overhead-ms` */
  readonly stepOverheadMs?: number | undefined;
  /** `--sim-jitter` */
  readonly jitter?: number | undefined;
  readonly allReduceLatencyUs?: number | undefined;
}

/**
 * Reproduces llm-d-inference-sim's shipped 8B/H100 latency profile (0.25 ms per prompt token) instead
 * of vLLM's prefill speed. The default calibration follows vLLM; see docs/timing-model.md.
 */
export const INFERENCE_SIM_PROFILE_OVERRIDES: TimingOverrides = { mfu: 0.066 };

/** Largest accepted jitter (relative standard deviation); samples are clamped to ±3 σ and ±70 % anyway. */
export const MAX_JITTER = 0.5;

/** The calibrated defaults for an accelerator. */
export function defaultTimingParams(hardware: HardwareProfile): TimingParams {
  return {
    mfu: hardware.calibration.mfu,
    mbu: hardware.calibration.mbu,
    stepOverheadSeconds: hardware.calibration.stepOverheadSeconds,
    jitter: 0,
    allReduceLatencySeconds: hardware.interconnect.allReduceLatencySeconds,
    allReduceBandwidthBytesPerSecond: hardware.interconnect.bandwidthBytesPerSecond,
  };
}

/** The hardware's defaults with the overrides applied; throws on values outside their valid range. */
export function resolveTimingParams(
  hardware: HardwareProfile,
  overrides: TimingOverrides = {},
): TimingParams {
  const base = defaultTimingParams(hardware);
  const params: TimingParams = {
    mfu: overrides.mfu ?? base.mfu,
    mbu: overrides.mbu ?? base.mbu,
    stepOverheadSeconds:
      overrides.stepOverheadMs !== undefined ? overrides.stepOverheadMs / 1000 : base.stepOverheadSeconds,
    jitter: overrides.jitter ?? base.jitter,
    allReduceLatencySeconds:
      overrides.allReduceLatencyUs !== undefined
        ? overrides.allReduceLatencyUs / 1e6
        : base.allReduceLatencySeconds,
    allReduceBandwidthBytesPerSecond: base.allReduceBandwidthBytesPerSecond,
  };
  checkRange('--sim-mfu', 'simMfu', params.mfu, 0, 1, false);
  checkRange('--sim-mbu', 'simMbu', params.mbu, 0, 1, false);
  checkRange('--sim-step-overhead-ms', 'simStepOverheadMs', params.stepOverheadSeconds, 0, Infinity, true);
  checkRange('--sim-jitter', 'simJitter', params.jitter, 0, MAX_JITTER, true);
  checkRange('all-reduce latency', null, params.allReduceLatencySeconds, 0, Infinity, true);
  return params;
}

function checkRange(
  what: string,
  param: string | null,
  value: number,
  lo: number,
  hi: number,
  loInclusive: boolean,
): void {
  const aboveLo = loInclusive ? value >= lo : value > lo;
  if (!Number.isFinite(value) || !aboveLo || value > hi) {
    const range = `${loInclusive ? '[' : '('}${lo}, ${hi === Infinity ? '∞)' : `${hi}]`}`;
    throw new ConfigError(`${what} must be in ${range}, got ${value}`, param);
  }
}

/** Throws unless vLLM would accept this tensor-parallel size for the model. */
export function checkTensorParallel(model: ModelProfile, tp: number): void {
  const param = 'tensorParallelSize';
  if (!Number.isInteger(tp) || tp < 1) {
    throw new ConfigError(`tensor parallel size must be a positive integer, got ${tp}`, param);
  }
  if (model.numAttentionHeads % tp !== 0) {
    throw new ConfigError(
      `${model.name} has ${model.numAttentionHeads} attention heads, not divisible by tensor parallel size ${tp}`,
      param,
    );
  }
  if (model.numKvHeads % tp !== 0 && tp % model.numKvHeads !== 0) {
    throw new ConfigError(
      `${model.name} has ${model.numKvHeads} KV heads; tensor parallel size ${tp} must divide it or be a multiple of it`,
      param,
    );
  }
}

/** KV heads one GPU holds: vLLM splits them across ranks and replicates them when there are fewer than ranks. */
function kvHeadsPerGpu(model: ModelProfile, tp: number): number {
  return Math.max(1, Math.floor(model.numKvHeads / tp));
}

/**
 * Step time from the roofline. Everything that depends only on the configuration is folded into
 * per-token, per-pair and per-byte constants here, so `stepDuration` is a handful of multiply-adds.
 */
export class RooflineTimer implements StepTimer {
  readonly model: ModelProfile;
  readonly hardware: HardwareProfile;
  readonly tp: number;
  readonly params: TimingParams;

  private readonly secondsPerFlop: number;
  private readonly secondsPerByte: number;
  private readonly linearFlopsPerToken: number;
  private readonly fullAttentionFlopsPerPair: number;
  private readonly slidingAttentionFlopsPerPair: number;
  private readonly window: number;
  private readonly fullKvBytesPerToken: number;
  private readonly slidingKvBytesPerToken: number;
  private readonly denseWeightBytes: number;
  private readonly expertWeightBytes: number;
  /** Probability that one token leaves a given expert untouched: 1 − k/E. */
  private readonly expertMissProbability: number;
  private readonly allReduceFixedSeconds: number;
  private readonly allReduceSecondsPerToken: number;
  private readonly overheadSeconds: number;
  private readonly jitter: number;
  private readonly jitterClamp: number;
  private readonly rng: Rng;

  constructor(model: ModelProfile, hardware: HardwareProfile, tp: number, params: TimingParams, seed = 0) {
    checkTensorParallel(model, tp);
    this.model = model;
    this.hardware = hardware;
    this.tp = tp;
    this.params = params;

    // Per GPU: every FLOP and every weight byte is split tp ways.
    this.secondsPerFlop = 1 / (hardware.peakFlopsPerSecond * params.mfu * tp);
    this.secondsPerByte = 1 / (hardware.memoryBandwidthBytesPerSecond * params.mbu);
    this.linearFlopsPerToken = 2 * model.activeParams;

    // QKᵀ and PV: 2 matmuls × 2 FLOPs per multiply-add, per head dimension, per (query, key) pair.
    const attentionFlopsPerPairPerLayer = 4 * model.numAttentionHeads * model.headDim;
    const slidingLayers = model.slidingWindow?.numLayers ?? 0;
    this.window = model.slidingWindow?.window ?? 0;
    this.fullAttentionFlopsPerPair = attentionFlopsPerPairPerLayer * (model.numLayers - slidingLayers);
    this.slidingAttentionFlopsPerPair = attentionFlopsPerPairPerLayer * slidingLayers;

    const kvBytesPerTokenPerLayer = 2 * kvHeadsPerGpu(model, tp) * model.headDim * model.kvDtypeBytes;
    this.fullKvBytesPerToken = kvBytesPerTokenPerLayer * (model.numLayers - slidingLayers);
    this.slidingKvBytesPerToken = kvBytesPerTokenPerLayer * slidingLayers;

    const moe = model.moe;
    this.expertWeightBytes = moe ? (moe.expertParams * moe.expertBytesPerParam) / tp : 0;
    this.denseWeightBytes = modelWeightsBytes(model) / tp - this.expertWeightBytes;
    this.expertMissProbability = moe ? 1 - moe.expertsPerToken / moe.numExperts : 1;

    // Ring all-reduce of the bf16 hidden states after attention and after the MLP of every layer.
    const allReducesPerStep = 2 * model.numLayers;
    this.allReduceFixedSeconds = tp > 1 ? allReducesPerStep * params.allReduceLatencySeconds : 0;
    this.allReduceSecondsPerToken =
      tp > 1
        ? (allReducesPerStep * ((2 * (tp - 1)) / tp) * model.hiddenSize * 2) /
          params.allReduceBandwidthBytesPerSecond
        : 0;

    this.overheadSeconds = params.stepOverheadSeconds;
    this.jitter = params.jitter;
    // Keep a step positive and its tail bounded: ±3 σ, never beyond ±70 % (llm-d-inference-sim's clamp).
    this.jitterClamp = Math.min(3 * params.jitter, 0.7);
    this.rng = new Rng(seed);
  }

  stepDuration(shape: StepShape): number {
    const tokens = shape.numTokens;
    if (tokens <= 0) return 0;
    const pairs = shape.attentionPairs;
    const kvRead = shape.kvTokensRead;

    let flops = this.linearFlopsPerToken * tokens + this.fullAttentionFlopsPerPair * pairs;
    let kvBytes = this.fullKvBytesPerToken * kvRead;
    if (this.window > 0) {
      // A sliding-window layer attends to at most `window` keys per query and reads at most the last
      // `window` tokens (plus the step's own) of each sequence.
      const windowPairs = tokens * this.window;
      flops += this.slidingAttentionFlopsPerPair * (pairs < windowPairs ? pairs : windowPairs);
      const windowRead = shape.numSeqs * this.window + tokens;
      kvBytes += this.slidingKvBytesPerToken * (kvRead < windowRead ? kvRead : windowRead);
    }

    let weightBytes = this.denseWeightBytes;
    if (this.expertWeightBytes > 0) {
      // Expected share of experts at least one of the step's tokens is routed to (uniform routing).
      weightBytes += this.expertWeightBytes * (1 - Math.pow(this.expertMissProbability, tokens));
    }

    const compute = flops * this.secondsPerFlop;
    const memory = (weightBytes + kvBytes) * this.secondsPerByte;
    let seconds =
      (compute > memory ? compute : memory) +
      this.overheadSeconds +
      this.allReduceFixedSeconds +
      this.allReduceSecondsPerToken * tokens;

    if (this.jitter > 0) {
      let deviation = this.rng.normal(0, this.jitter);
      if (deviation > this.jitterClamp) deviation = this.jitterClamp;
      else if (deviation < -this.jitterClamp) deviation = -this.jitterClamp;
      seconds *= 1 + deviation;
    }
    return seconds;
  }
}

export interface KvCapacity {
  /** KV bytes one token occupies across the whole model. */
  readonly kvBytesPerToken: number;
  /** Weight bytes of the whole model. */
  readonly weightsBytes: number;
  readonly numGpuBlocks: number;
  /** numGpuBlocks × blockSize. */
  readonly tokens: number;
}

/**
 * The KV cache vLLM would allocate: per GPU, `memory × gpuMemoryUtilization − weights / tp`, divided
 * into blocks of that GPU's share of a token's KV. No separate activation reserve: the profiles' memory
 * is the marketed capacity, a few GB under the real one (see hardware.ts).
 */
export function kvCapacity(
  model: ModelProfile,
  hardware: HardwareProfile,
  tp: number,
  gpuMemoryUtilization: number,
  blockSize: number,
): KvCapacity {
  checkTensorParallel(model, tp);
  checkRange('gpu memory utilization', 'gpuMemoryUtilization', gpuMemoryUtilization, 0, 1, false);
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new ConfigError(`block size must be a positive integer, got ${blockSize}`, 'blockSize');
  }

  const weightsBytes = modelWeightsBytes(model);
  const availablePerGpu = hardware.memoryBytes * gpuMemoryUtilization - weightsBytes / tp;
  const blockBytesPerGpu =
    blockSize * 2 * model.numLayers * kvHeadsPerGpu(model, tp) * model.headDim * model.kvDtypeBytes;
  const numGpuBlocks = Math.floor(availablePerGpu / blockBytesPerGpu);
  if (numGpuBlocks <= 0) {
    const gb = (bytes: number): string => (bytes / 1e9).toFixed(1);
    throw new ConfigError(
      `${model.name} needs ${gb(weightsBytes / tp)} GB of weights per GPU, but ${tp} × ${hardware.name} at ` +
        `gpu memory utilization ${gpuMemoryUtilization} leaves ${gb(hardware.memoryBytes * gpuMemoryUtilization)} GB ` +
        'per GPU: no room for the KV cache; raise the tensor parallel size or the utilization',
      'gpuMemoryUtilization',
    );
  }
  return {
    kvBytesPerToken: kvBytesPerToken(model),
    weightsBytes,
    numGpuBlocks,
    tokens: numGpuBlocks * blockSize,
  };
}

export interface CreatedTimer {
  readonly timer: RooflineTimer;
  readonly model: ModelProfile;
  readonly hardware: HardwareProfile;
  readonly params: TimingParams;
}

/**
 * The timer for a served model name on an accelerator. Unknown model names (e.g. `random`) are timed
 * as the default profile; unknown hardware is an error.
 */
export function createTimer(
  modelName: string,
  hardwareName: string,
  tp = 1,
  overrides: TimingOverrides = {},
  seed = 0,
): CreatedTimer {
  const hardware = findHardwareProfile(hardwareName);
  if (!hardware) {
    throw new ConfigError(
      `unknown hardware "${hardwareName}"; known: ${hardwareNames().join(', ')}`,
      'hardware',
    );
  }
  const model = resolveModelProfile(modelName);
  const params = resolveTimingParams(hardware, overrides);
  return { timer: new RooflineTimer(model, hardware, tp, params, seed), model, hardware, params };
}
