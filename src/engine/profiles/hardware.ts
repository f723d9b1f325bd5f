/**
 * Accelerator profiles: datasheet peaks the timing model scales by its calibrated efficiencies, and
 * the interconnect tensor-parallel all-reduces run over.
 *
 * Peaks are dense bf16 tensor FLOP/s (no sparsity) and HBM bandwidth per GPU. Memory is the marketed
 * capacity in decimal GB; the card really holds a few GB more (H100: 81,559 MiB), and that gap stands in
 * for what vLLM's memory profiling sets aside (CUDA context, peak activations, CUDA graphs), so the KV
 * capacity needs no separate reserve. Link bandwidth is per direction per GPU.
 *
 * Calibration (H100; derivation and sources in docs/timing-model.md): MFU 0.45 pinned by the
 * Qwen3-32B benchmark's TTFT, MBU 0.9 and 5.5 ms per step fitted to llm-d-inference-sim's 8B/H100 ITL
 * (12 ms) and the Qwen3-32B benchmark's ITL under load (~45 ms). The other accelerators reuse the
 * method with efficiencies that are estimates, not fits. Predictions with these defaults,
 * `--gpu-memory-utilization 0.9`, block size 16. "ITL @ b": a decode step of b sequences with 1,024
 * tokens of context each. "Prefill": marginal cost per prompt token between 1,024- and 2,048-token
 * prompts at batch 1. "TTFT 256": one step prefilling a 256-token prompt.
 *
 * | model, hardware          | ITL @1  | ITL @16 | ITL @64 | prefill ms/token | TTFT 256 | KV tokens |
 * |--------------------------|---------|---------|---------|------------------|----------|-----------|
 * | Qwen3-8B, H100           | 11.0 ms | 11.7 ms | 14.1 ms | 0.039            | 15.0 ms  | 377,184   |
 * | Llama-3.1-8B, H100       | 10.9 ms | 11.5 ms | 13.7 ms | 0.038            | 14.8 ms  | 426,784   |
 * | Qwen3-32B, H100 TP=2     | 19.0 ms | 19.7 ms | 22.0 ms | 0.080            | 27.7 ms  | 299,376   |
 * | Llama-3.1-70B, H100 TP=4 | 20.4 ms | 21.0 ms | 22.7 ms | 0.090            | 31.3 ms  | 448,288   |
 * | gpt-oss-120b, H100       |  7.6 ms | 15.2 ms | 25.4 ms | 0.024            | 27.1 ms  |  92,496   |
 * | gpt-oss-120b, H200       |  6.9 ms | 12.3 ms | 19.4 ms | 0.024            | 20.6 ms  | 837,120   |
 * | Qwen3-8B, A100-80G       | 15.0 ms | 16.3 ms | 20.5 ms | 0.111            | 32.5 ms  | 377,184   |
 * | Qwen3-8B, L40S           | 29.4 ms | 32.7 ms | 43.2 ms | 0.119            | 34.6 ms  | 181,872   |
 * | Qwen3-8B, B200           |  7.4 ms |  7.8 ms |  8.8 ms | 0.019            |  9.7 ms  | 987,536   |
 *
 * Targets: 8B/H100 ITL 12 ms (inference-sim profile; reference 10–15 ms); Qwen3-32B TP=2 ITL ~45 ms at
 * the benchmark's load (simulated: 49.1 ms) and ~298k KV tokens per server; 70B TP=4 ITL 25–40 ms
 * (reference; predicted 20.4 ms, 18 % under). The inference-sim profile's 0.25 ms/token prefill is
 * not the default (it contradicts the Qwen3-32B benchmark's TTFT); `--sim-mfu 0.066` reproduces it.
 */

export interface InterconnectProfile {
  readonly name: string;
  /** Per-direction bandwidth one GPU can drive into the ring, bytes/s. */
  readonly bandwidthBytesPerSecond: number;
  /** Fixed cost of one small all-reduce (launch + synchronisation), seconds. */
  readonly allReduceLatencySeconds: number;
}

/** Efficiencies calibrated against published serving figures (see the table above). */
export interface HardwareCalibration {
  /** Fraction of peak FLOP/s a step's matmuls and attention achieve. */
  readonly mfu: number;
  /** Fraction of peak HBM bandwidth a step's weight and KV reads achieve. */
  readonly mbu: number;
  /** Fixed time per engine step outside the roofline (scheduling, sampling, output processing), seconds. */
  readonly stepOverheadSeconds: number;
}

export interface HardwareProfile {
  readonly name: string;
  /** Other names that select this profile (matched case-insensitively, like `name`). */
  readonly aliases: readonly string[];
  /** Dense bf16 tensor-core peak, FLOP/s. */
  readonly peakFlopsPerSecond: number;
  /** HBM bandwidth, bytes/s. */
  readonly memoryBandwidthBytesPerSecond: number;
  /** Device memory, bytes. */
  readonly memoryBytes: number;
  readonly interconnect: InterconnectProfile;
  readonly calibration: HardwareCalibration;
}

const GB = 1e9;

/** Calibrated on H100 (docs/timing-model.md); H200 shares the SXM5 compute die and software stack. */
const HOPPER_CALIBRATION: HardwareCalibration = { mfu: 0.45, mbu: 0.9, stepOverheadSeconds: 5.5e-3 };

const NVLINK4: InterconnectProfile = {
  name: 'NVLink 4 (900 GB/s bidirectional)',
  bandwidthBytesPerSecond: 450 * GB,
  allReduceLatencySeconds: 20e-6,
};

export const H100: HardwareProfile = {
  name: 'H100',
  aliases: ['h100-80g', 'h100-sxm', 'h100-sxm5', 'h100-80gb', 'nvidia-h100', 'nvidia-h100-80gb-hbm3'],
  peakFlopsPerSecond: 989e12,
  memoryBandwidthBytesPerSecond: 3350 * GB,
  memoryBytes: 80 * GB,
  interconnect: NVLINK4,
  calibration: HOPPER_CALIBRATION,
};

export const H200: HardwareProfile = {
  name: 'H200',
  aliases: ['h200-141g', 'h200-sxm', 'h200-141gb', 'nvidia-h200'],
  peakFlopsPerSecond: 989e12,
  memoryBandwidthBytesPerSecond: 4800 * GB,
  memoryBytes: 141 * GB,
  interconnect: NVLINK4,
  calibration: HOPPER_CALIBRATION,
};

export const A100_80G: HardwareProfile = {
  name: 'A100-80G',
  aliases: ['a100', 'a100-80gb', 'a100-sxm', 'a100-sxm4-80gb', 'nvidia-a100', 'nvidia-a100-sxm4-80gb'],
  peakFlopsPerSecond: 312e12,
  memoryBandwidthBytesPerSecond: 2039 * GB,
  memoryBytes: 80 * GB,
  interconnect: {
    name: 'NVLink 3 (600 GB/s bidirectional)',
    bandwidthBytesPerSecond: 300 * GB,
    allReduceLatencySeconds: 20e-6,
  },
  // Not calibrated against a published figure: Ampere reaches a larger share of its lower peak.
  calibration: { mfu: 0.5, mbu: 0.85, stepOverheadSeconds: 5.5e-3 },
};

export const L40S: HardwareProfile = {
  name: 'L40S',
  aliases: ['l40s-48g', 'nvidia-l40s'],
  peakFlopsPerSecond: 362e12,
  memoryBandwidthBytesPerSecond: 864 * GB,
  memoryBytes: 48 * GB,
  // No NVLink: all-reduces cross PCIe Gen4 x16 (32 GB/s per direction, ~25 GB/s achieved).
  interconnect: {
    name: 'PCIe Gen4 x16',
    bandwidthBytesPerSecond: 25 * GB,
    allReduceLatencySeconds: 40e-6,
  },
  // Not calibrated against a published figure: the 362 TFLOP/s peak is power-limited in practice.
  calibration: { mfu: 0.4, mbu: 0.8, stepOverheadSeconds: 5.5e-3 },
};

export const B200: HardwareProfile = {
  name: 'B200',
  aliases: ['b200-180g', 'nvidia-b200'],
  peakFlopsPerSecond: 2250e12,
  memoryBandwidthBytesPerSecond: 8000 * GB,
  memoryBytes: 180 * GB,
  interconnect: {
    name: 'NVLink 5 (1.8 TB/s bidirectional)',
    bandwidthBytesPerSecond: 900 * GB,
    allReduceLatencySeconds: 12e-6,
  },
  // Not calibrated against a published figure: newer kernels reach a smaller share of the peak so far.
  calibration: { mfu: 0.4, mbu: 0.85, stepOverheadSeconds: 5e-3 },
};

export const HARDWARE_PROFILES: readonly HardwareProfile[] = [H100, H200, A100_80G, L40S, B200];

const byName = new Map<string, HardwareProfile>();
for (const profile of HARDWARE_PROFILES) {
  for (const key of [profile.name, ...profile.aliases]) byName.set(key.toLowerCase(), profile);
}

/** The profile for an accelerator name (case-insensitive; `h100`, `H100-80G`, `a100`, ...), or `undefined`. */
export function findHardwareProfile(name: string): HardwareProfile | undefined {
  return byName.get(name.trim().toLowerCase());
}

/** Canonical names of the known accelerators, for error messages and `--help`. */
export function hardwareNames(): string[] {
  return HARDWARE_PROFILES.map((profile) => profile.name);
}
