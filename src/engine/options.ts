/**
 * The options of `llmd serve`, with vLLM's names and defaults where vLLM has them. The CLI maps flags
 * onto this schema; programmatic callers (tests, `llmd up`) pass the same object.
 */
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { LOG_LEVELS } from '../core/log.js';

/** vLLM's `--kv-events-config` (vllm/config/kv_events.py). Consumed by the KV-event publisher. */
export const KvEventsConfigSchema = z
  .object({
    enable_kv_cache_events: z.boolean().default(false),
    publisher: z.enum(['null', 'zmq']).optional(),
    endpoint: z.string().default('tcp://*:5557'),
    replay_endpoint: z.string().nullish(),
    buffer_steps: z.number().int().positive().default(10_000),
    hwm: z.number().int().nonnegative().default(100_000),
    max_queue_size: z.number().int().positive().default(100_000),
    topic: z.string().default(''),
  })
  .strict();
export type KvEventsConfig = z.infer<typeof KvEventsConfigSchema>;

/** vLLM's `--kv-transfer-config` (vllm/config/kv_transfer.py); the fields P/D uses. */
export const KvTransferConfigSchema = z
  .object({
    kv_connector: z.string().nullish(),
    engine_id: z.string().nullish(),
    kv_role: z.enum(['kv_producer', 'kv_consumer', 'kv_both']).nullish(),
    kv_rank: z.number().int().nullish(),
    kv_parallel_size: z.number().int().positive().default(1),
    kv_ip: z.string().default('127.0.0.1'),
    kv_port: z.number().int().min(0).max(65535).default(14579),
    kv_buffer_device: z.string().nullish(),
    kv_connector_extra_config: z.record(z.unknown()).default({}),
    /** What a decoder does when the KV pull fails: an error response, or compute the prompt itself. */
    kv_load_failure_policy: z.enum(['fail', 'recompute']).default('fail'),
  })
  .passthrough();
export type KvTransferConfig = z.infer<typeof KvTransferConfigSchema>;

export const ServeOptionsSchema = z.object({
  model: z.string().min(1),
  host: z.string().default('0.0.0.0'),
  port: z.number().int().min(0).max(65535).default(8000),
  servedModelName: z.array(z.string().min(1)).min(1).optional(),
  /** Default: the model profile's context length. */
  maxModelLen: z.number().int().positive().optional(),
  blockSize: z.number().int().positive().max(1024).default(16),
  numGpuBlocksOverride: z.number().int().positive().optional(),
  gpuMemoryUtilization: z.number().gt(0).max(1).default(0.9),
  maxNumSeqs: z.number().int().positive().default(256),
  maxNumBatchedTokens: z.number().int().positive().default(8192),
  enablePrefixCaching: z.boolean().default(true),
  prefixCachingHashAlgo: z.enum(['sha256_cbor', 'xxhash_cbor']).default('sha256_cbor'),
  seed: z.number().int().default(0),
  tokenizer: z.string().optional(),
  tensorParallelSize: z.number().int().positive().max(64).default(1),
  streamInterval: z.number().int().positive().default(1),
  enablePromptTokensDetails: z.boolean().default(false),
  kvTransferConfig: KvTransferConfigSchema.optional(),
  kvEventsConfig: KvEventsConfigSchema.optional(),
  /** KV events as `type`-tagged maps (vLLM ≥ PR #42892) instead of the positional arrays. */
  kvEventsMapFormat: z.boolean().default(false),
  hardware: z.string().default('H100'),
  mode: z.enum(['random', 'echo']).default('random'),
  maxWaitingQueueLength: z.number().int().positive().default(1000),
  maxRequestBodyBytes: z
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024),
  /** Timing-model overrides (see docs/timing-model.md). */
  simMfu: z.number().gt(0).max(1).optional(),
  simMbu: z.number().gt(0).max(1).optional(),
  simStepOverheadMs: z.number().min(0).optional(),
  simJitter: z.number().min(0).max(0.5).optional(),
  /** Every step takes exactly this long: a fixed-latency simulator, for benchmarks of llmd itself. */
  simFixedStepMs: z.number().gt(0).optional(),
  /** P/D (NixlConnector): fraction of the real KV bytes each transferred block carries. */
  simKvTransferScale: z
    .number()
    .gt(0)
    .max(1)
    .default(1 / 4096),
  /** P/D: the simulated prefiller → decoder link, in Gbit/s, for the full-size KV. */
  simKvTransferGbps: z.number().gt(0).default(100),
  /** P/D: corrupt every block this prefiller sends (to exercise `kv_load_failure_policy`). */
  simKvTransferCorrupt: z.boolean().default(false),
  /** P/D: a pull that takes longer fails. */
  kvTransferTimeoutMs: z.number().int().positive().default(30_000),
  /** `VLLM_NIXL_SIDE_CHANNEL_HOST`: the address decoders are told to read blocks from. */
  nixlSideChannelHost: z.string().min(1).default('localhost'),
  /** `VLLM_NIXL_SIDE_CHANNEL_PORT`; 0 picks a free port. */
  nixlSideChannelPort: z.number().int().min(0).max(65535).default(5600),
  /** `VLLM_NIXL_ABORT_REQUEST_TIMEOUT`: seconds a prefill holds blocks no decoder came for. */
  nixlAbortTimeoutS: z.number().positive().default(480),
  /** PYTHONHASHSEED, as vLLM reads it from the environment. */
  hashSeed: z.string().optional(),
  logLevel: z.enum(LOG_LEVELS).default('info'),
});
export type ServeOptionsInput = z.input<typeof ServeOptionsSchema>;
export type ServeOptions = z.output<typeof ServeOptionsSchema>;

export function parseServeOptions(input: ServeOptionsInput): ServeOptions {
  const r = ServeOptionsSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = i.path.join('.');
    throw new ConfigError(`Invalid option ${field ? `\`${field}\`` : ''}: ${i.message}`, field || null);
  }
  return r.data;
}

/** Parse a JSON flag value (`--kv-events-config '{...}'`) against its schema, naming the flag on error. */
export function parseJsonFlag<T>(flag: string, text: string, schema: z.ZodType<T, z.ZodTypeDef, unknown>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigError(`${flag}: not valid JSON`, flag);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ConfigError(`${flag}: field \`${i.path.join('.')}\`: ${i.message}`, flag);
  }
  return r.data;
}
