/**
 * The KV-cache indexer's configuration in llm-d's JSON shape (llm-d-kv-cache `docs/configuration.md`,
 * the router's `precise-prefix-cache-producer` parameters): `tokenProcessorConfig`, `indexerConfig`,
 * `kvEventsConfig`, with upstream's defaults. Shared by the EPP plugin and `llmd kv-indexer`.
 *
 * Every object is strict, so a misspelt field fails at start-up naming its path. Upstream fields that
 * change nothing here are accepted (`enableRDMA`, `tracing`, `metricsLoggingInterval`) so that an
 * llm-d config loads unchanged. `indexerConfig.remoteIndexerConfig` is ours: score through a running
 * `llmd kv-indexer` instead of an embedded index.
 */
import { z } from 'zod';
import { parseDurationMs } from '../core/duration.js';
import { DEFAULT_TIER_WEIGHTS, type TierWeights } from './index/index.js';
import { DEFAULT_MAX_KEYS, DEFAULT_POD_CACHE_SIZE } from './index/memory.js';
import type { TokenProcessorConfig } from './keys.js';

/** A Go duration string (`2s`, `500ms`) or a number: Go's JSON encoding of a Duration is nanoseconds. */
export const goDuration = (field: string, nanosecondsWhenNumber: boolean) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const ms = typeof v === 'number' ? (nanosecondsWhenNumber ? v / 1e6 : v) : parseDurationMs(v);
    if (ms === null || !(ms >= 0)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${field}: not a duration (e.g. 500ms, 2s)` });
      return z.NEVER;
    }
    return ms;
  });

/** A byte size as go-humanize reads it: `2GiB`, `512MB`, `1e9`, or a number. */
const byteSize = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = parseByteSize(v);
  if (bytes === null) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `not a byte size (e.g. 2GiB, 512MB): ${String(v)}`,
    });
    return z.NEVER;
  }
  return bytes;
});

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 1024,
  kib: 1024,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
};

export function parseByteSize(v: string | number): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? Math.floor(v) : null;
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (m === null) return null;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const n = Number(m[1]) * unit;
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : null;
}

export const TokenProcessorConfigSchema = z
  .object({
    blockSizeTokens: z.number().int().min(0).optional(),
    /** Deprecated upstream name; `blockSizeTokens` wins when both are set. */
    blockSize: z.number().int().min(0).optional(),
    hashSeed: z.string().default(''),
    hashAlgorithm: z.enum(['', 'cbor-fnv', 'xxh64']).default('cbor-fnv'),
  })
  .strict()
  .transform((c, ctx): TokenProcessorConfig => {
    const bs = c.blockSizeTokens || c.blockSize || 16;
    if (c.blockSizeTokens === 0 && c.blockSize === 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['blockSizeTokens'],
        message: 'must be more than 0',
      });
    }
    return { blockSizeTokens: bs, hashSeed: c.hashSeed, hashAlgorithm: c.hashAlgorithm || 'cbor-fnv' };
  });

const RedisConfigSchema = z
  .object({
    address: z.string().min(1).optional(),
    backendType: z.enum(['redis', 'valkey']).optional(),
    enableRDMA: z.boolean().optional(),
  })
  .strict();

const KvBlockIndexConfigSchema = z
  .object({
    inMemoryConfig: z
      .object({
        size: z.number().int().positive().default(DEFAULT_MAX_KEYS),
        podCacheSize: z.number().int().min(1).max(255).default(DEFAULT_POD_CACHE_SIZE),
      })
      .strict()
      .nullish(),
    costAwareMemoryConfig: z
      .object({ size: byteSize.default('2GiB') })
      .strict()
      .nullish(),
    redisConfig: RedisConfigSchema.nullish(),
    valkeyConfig: RedisConfigSchema.nullish(),
    enableMetrics: z.boolean().default(false),
    metricsLoggingInterval: goDuration('metricsLoggingInterval', true).optional(),
  })
  .strict();

const BackendConfigSchema = z.object({ name: z.string().min(1), weight: z.number().min(0) }).strict();

export const IndexerConfigSchema = z
  .object({
    kvBlockIndexConfig: KvBlockIndexConfigSchema.default({}),
    kvCacheBackendConfigs: z.array(BackendConfigSchema).optional(),
    /** Deprecated upstream: the indexer's own tokenizer pool. Tokens come from the token-producer. */
    tokenizersPoolConfig: z.unknown().optional(),
    remoteIndexerConfig: z
      .object({ url: z.string().url(), timeout: goDuration('timeout', false).default('200ms') })
      .strict()
      .optional(),
  })
  .strict();

export const KvEventsConfigSchema = z
  .object({
    zmqEndpoint: z.string().default(''),
    topicFilter: z.string().default('kv@'),
    concurrency: z.number().int().positive().default(4),
    engineType: z.enum(['vllm', 'sglang']).default('vllm'),
    discoverPods: z.boolean().default(true),
    podDiscoveryConfig: z
      .object({
        podLabelSelector: z.string().default('llm-d.ai/inference-serving=true'),
        podNamespace: z.string().default(''),
        socketPort: z.number().int().min(1).max(65535).default(5557),
        replaySocketPort: z.number().int().min(0).max(65535).default(0),
      })
      .strict()
      .default({}),
    tracing: z.boolean().optional(),
  })
  .strict();

export type IndexerConfigInput = z.input<typeof IndexerConfigSchema>;
export type KvEventsConfig = z.output<typeof KvEventsConfigSchema>;

/** Which index backs the indexer, resolved from `kvBlockIndexConfig` in upstream's order. */
export type IndexBackendConfig =
  | { readonly kind: 'memory'; readonly maxKeys: number; readonly podCacheSize: number }
  | { readonly kind: 'redis'; readonly address: string }
  | { readonly kind: 'remote'; readonly url: string; readonly timeoutMs: number };

/** What a memory budget holds: the in-memory index costs about this much per indexed block. */
export const BYTES_PER_BLOCK_ESTIMATE = 80;

export interface ResolvedIndexerConfig {
  readonly backend: IndexBackendConfig;
  readonly weights: TierWeights;
  readonly enableMetrics: boolean;
}

/**
 * Upstream picks the first configured of costAware, valkey, redis, inMemory; a cost-aware budget
 * becomes the in-memory index sized to fit it. The remote indexer, when set, replaces them all.
 */
export function resolveIndexerConfig(raw: unknown): ResolvedIndexerConfig {
  const c = IndexerConfigSchema.parse(raw ?? {});
  if (c.tokenizersPoolConfig !== undefined) {
    throw new z.ZodError([
      {
        code: z.ZodIssueCode.custom,
        path: ['tokenizersPoolConfig'],
        message: 'is not supported: configure a token-producer plugin for token ids',
      },
    ]);
  }
  const weights: Record<string, number> = { ...DEFAULT_TIER_WEIGHTS };
  if (c.kvCacheBackendConfigs !== undefined) {
    for (const k of Object.keys(weights)) delete weights[k];
    for (const b of c.kvCacheBackendConfigs) weights[b.name.toLowerCase()] = b.weight;
  }
  const ix = c.kvBlockIndexConfig;
  let backend: IndexBackendConfig;
  if (c.remoteIndexerConfig !== undefined) {
    backend = { kind: 'remote', url: c.remoteIndexerConfig.url, timeoutMs: c.remoteIndexerConfig.timeout };
  } else if (ix.costAwareMemoryConfig) {
    backend = {
      kind: 'memory',
      maxKeys: Math.max(1, Math.floor(ix.costAwareMemoryConfig.size / BYTES_PER_BLOCK_ESTIMATE)),
      podCacheSize: DEFAULT_POD_CACHE_SIZE,
    };
  } else if (ix.valkeyConfig) {
    backend = { kind: 'redis', address: ix.valkeyConfig.address ?? 'valkey://127.0.0.1:6379' };
  } else if (ix.redisConfig) {
    backend = { kind: 'redis', address: ix.redisConfig.address ?? 'redis://127.0.0.1:6379' };
  } else {
    const m = ix.inMemoryConfig ?? { size: DEFAULT_MAX_KEYS, podCacheSize: DEFAULT_POD_CACHE_SIZE };
    backend = { kind: 'memory', maxKeys: m.size, podCacheSize: m.podCacheSize };
  }
  return { backend, weights, enableMetrics: ix.enableMetrics };
}
