/**
 * Model profiles: the architecture figures the timing model and the KV-capacity calculation need, taken
 * from each model's Hugging Face `config.json` and model card.
 *
 * Parameter counts are the published totals. `activeParams` is what one token multiplies through
 * (2 FLOPs each); for dense models it is the total, which overstates the work by the input-embedding
 * lookup (a gather, not a matmul) — a few percent, accepted for simplicity.
 */

/** Mixture-of-experts figures; the expert weights are what a decode step may only partly read. */
export interface MoeProfile {
  readonly numExperts: number;
  readonly expertsPerToken: number;
  /** Parameters in all expert MLPs together (router included). */
  readonly expertParams: number;
  /** Storage bytes per expert parameter (MXFP4: 4-bit values + one 8-bit scale per 32 → 4.25 bits). */
  readonly expertBytesPerParam: number;
}

/** Layers that attend only to the last `window` tokens (gpt-oss alternates these with full attention). */
export interface SlidingWindowProfile {
  readonly window: number;
  readonly numLayers: number;
}

export interface ModelProfile {
  /** Canonical Hugging Face id. */
  readonly name: string;
  /** Other names that select this profile (matched case-insensitively, like `name`). */
  readonly aliases: readonly string[];
  readonly numLayers: number;
  readonly hiddenSize: number;
  readonly numAttentionHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly totalParams: number;
  /** Parameters in the matmuls one token goes through. */
  readonly activeParams: number;
  /** The context length vLLM uses when `--max-model-len` is not given (`max_position_embeddings`). */
  readonly maxModelLen: number;
  /** Storage bytes per non-expert parameter (bf16 = 2). */
  readonly weightBytesPerParam: number;
  /** Bytes per KV-cache element (bf16 = 2). */
  readonly kvDtypeBytes: number;
  readonly moe?: MoeProfile;
  readonly slidingWindow?: SlidingWindowProfile;
}

const MXFP4_BYTES_PER_PARAM = 4.25 / 8;

export const QWEN3_0_6B: ModelProfile = {
  name: 'Qwen/Qwen3-0.6B',
  aliases: ['qwen3-0.6b'],
  numLayers: 28,
  hiddenSize: 1024,
  numAttentionHeads: 16,
  numKvHeads: 8,
  headDim: 128,
  // Tied embeddings: the 155.6M-parameter table is also the LM head, so it counts as active.
  totalParams: 0.596e9,
  activeParams: 0.596e9,
  maxModelLen: 40960,
  weightBytesPerParam: 2,
  kvDtypeBytes: 2,
};

export const QWEN3_8B: ModelProfile = {
  name: 'Qwen/Qwen3-8B',
  aliases: ['qwen3-8b'],
  numLayers: 36,
  hiddenSize: 4096,
  numAttentionHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  totalParams: 8.19e9,
  activeParams: 8.19e9,
  maxModelLen: 40960,
  weightBytesPerParam: 2,
  kvDtypeBytes: 2,
};

export const QWEN3_32B: ModelProfile = {
  name: 'Qwen/Qwen3-32B',
  aliases: ['qwen3-32b'],
  numLayers: 64,
  hiddenSize: 5120,
  numAttentionHeads: 64,
  numKvHeads: 8,
  headDim: 128,
  totalParams: 32.76e9,
  activeParams: 32.76e9,
  maxModelLen: 40960,
  weightBytesPerParam: 2,
  kvDtypeBytes: 2,
};

export const LLAMA_3_1_8B: ModelProfile = {
  name: 'meta-llama/Llama-3.1-8B-Instruct',
  aliases: [
    'meta-llama/Llama-3.1-8B',
    'meta-llama/Meta-Llama-3.1-8B-Instruct',
    'llama-3.1-8b',
    'llama-3.1-8b-instruct',
  ],
  numLayers: 32,
  hiddenSize: 4096,
  numAttentionHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  totalParams: 8.03e9,
  activeParams: 8.03e9,
  maxModelLen: 131072,
  weightBytesPerParam: 2,
  kvDtypeBytes: 2,
};

export const LLAMA_3_1_70B: ModelProfile = {
  name: 'meta-llama/Llama-3.1-70B-Instruct',
  aliases: [
    'meta-llama/Llama-3.1-70B',
    'meta-llama/Meta-Llama-3.1-70B-Instruct',
    'llama-3.1-70b',
    'llama-3.1-70b-instruct',
  ],
  numLayers: 80,
  hiddenSize: 8192,
  numAttentionHeads: 64,
  numKvHeads: 8,
  headDim: 128,
  totalParams: 70.55e9,
  activeParams: 70.55e9,
  maxModelLen: 131072,
  weightBytesPerParam: 2,
  kvDtypeBytes: 2,
};

/**
 * gpt-oss-120b (model card): 116.83B parameters = 114.71B in the 128 expert MLPs (4 routed per token)
 * + 0.96B attention + 1.16B embedding and unembedding. Active per token 5.13B = attention + unembedding
 * + 4/128 of the experts. Experts are stored in MXFP4 (≈0.53 B/param), everything else in bf16, which
 * gives ≈65 GB of weights (the checkpoint is 60.8 GiB). Half of the 36 layers use a 128-token sliding
 * window; the KV capacity still counts every layer as full (conservative: vLLM's hybrid allocator
 * frees out-of-window blocks and fits more).
 */
export const GPT_OSS_120B: ModelProfile = {
  name: 'openai/gpt-oss-120b',
  aliases: ['gpt-oss-120b'],
  numLayers: 36,
  hiddenSize: 2880,
  numAttentionHeads: 64,
  numKvHeads: 8,
  headDim: 64,
  totalParams: 116.83e9,
  activeParams: 5.13e9,
  maxModelLen: 131072,
  weightBytesPerParam: 2,
  kvDtypeBytes: 2,
  moe: {
    numExperts: 128,
    expertsPerToken: 4,
    expertParams: 114.71e9,
    expertBytesPerParam: MXFP4_BYTES_PER_PARAM,
  },
  slidingWindow: { window: 128, numLayers: 18 },
};

export const MODEL_PROFILES: readonly ModelProfile[] = [
  QWEN3_0_6B,
  QWEN3_8B,
  QWEN3_32B,
  LLAMA_3_1_8B,
  LLAMA_3_1_70B,
  GPT_OSS_120B,
];

/**
 * What an unknown model name (e.g. `random`, which llm-d's simulator setups serve) is timed as: a
 * Qwen3-8B-shaped dense 8B model, the size llm-d-inference-sim's shipped latency profiles describe.
 */
export const DEFAULT_MODEL_PROFILE: ModelProfile = QWEN3_8B;

const byName = new Map<string, ModelProfile>();
for (const profile of MODEL_PROFILES) {
  for (const key of [profile.name, ...profile.aliases]) {
    const lower = key.toLowerCase();
    byName.set(lower, profile);
    // `org/model` ids also match by their bare model name (`Qwen3-32B`, `gpt-oss-120b`).
    const slash = lower.lastIndexOf('/');
    if (slash >= 0 && !byName.has(lower.slice(slash + 1))) byName.set(lower.slice(slash + 1), profile);
  }
}

/** The profile for a served model name, or `undefined` when none matches. */
export function findModelProfile(name: string): ModelProfile | undefined {
  const lower = name.trim().toLowerCase();
  const exact = byName.get(lower);
  if (exact) return exact;
  // A local path or another org's copy (`/models/Qwen3-32B`, `RedHatAI/Qwen3-32B`): match the last segment.
  const slash = lower.lastIndexOf('/');
  return slash >= 0 ? byName.get(lower.slice(slash + 1)) : undefined;
}

/** The profile for a served model name, falling back to {@link DEFAULT_MODEL_PROFILE}. */
export function resolveModelProfile(name: string): ModelProfile {
  return findModelProfile(name) ?? DEFAULT_MODEL_PROFILE;
}

/** Bytes of weights the whole model occupies (all GPUs together). */
export function modelWeightsBytes(model: ModelProfile): number {
  const moe = model.moe;
  if (!moe) return model.totalParams * model.weightBytesPerParam;
  return (
    (model.totalParams - moe.expertParams) * model.weightBytesPerParam +
    moe.expertParams * moe.expertBytesPerParam
  );
}

/** KV-cache bytes one token occupies across the whole model (K and V, every layer, every KV head). */
export function kvBytesPerToken(model: ModelProfile): number {
  return 2 * model.numLayers * model.numKvHeads * model.headDim * model.kvDtypeBytes;
}
