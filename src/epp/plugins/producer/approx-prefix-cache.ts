/**
 * `approx-prefix-cache-producer` (upstream `dataproducer/approximateprefix`): predicts how much of a
 * request's prompt each endpoint has in its KV cache without asking the endpoints. Before scheduling
 * it hashes the prompt's blocks (`prefix-hash.ts`) and matches them against its index of what it sent
 * where (`prefix-index.ts`), writing `PrefixCacheMatchInfo`; after scheduling (PreRequest) it records
 * the chain for the chosen endpoint and, in P/D, for the `prefill` profile's endpoint.
 *
 * The hashes of Produce are kept in the request's state, so PreRequest adds them without hashing
 * again. Upstream adds asynchronously; here the add is synchronous, which keeps the producer
 * deterministic under a virtual clock: a probe and a few typed-array writes per block, ≈ 5 µs for an
 * 8k-token prompt and 70 µs for 100k tokens (`bench/prefix-hash.ts`).
 */
import { z } from 'zod';
import { DataKey } from '../../framework/cycle-state.js';
import {
  PREFIX_CACHE_MATCH_INFO,
  TOKENIZED_REQUEST,
  type PrefixCacheMatchInfo,
} from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { DataConsumer, DataProducer, PreRequest } from '../../framework/requestcontrol.js';
import type { SchedulingResult } from '../../framework/scheduling.js';
import { hashPrompt } from './prefix-hash.js';
import { PrefixIndex, type PrefixIndexStats } from './prefix-index.js';

export const TYPE = 'approx-prefix-cache-producer';

/**
 * The routing index keeps one entry per (server, block), so small blocks (vLLM's default is 16)
 * multiply its memory; matches are measured at a coarser grain than the server's (upstream #1158).
 */
export const MIN_BLOCK_SIZE_TOKENS = 64;
/** Upstream's P/D convention: the prefill profile is the one named so. */
const PREFILL_PROFILE = 'prefill';
/** Bytes a token stands for in the hit-bytes statistic, as upstream reports it. */
const BYTES_PER_TOKEN = 4;

const count = z.number().int().nonnegative();

export const params = z
  .object({
    blockSizeTokens: z.number().int().positive().optional(),
    /** Deprecated upstream name of `blockSizeTokens`. */
    blockSize: z.number().int().positive().optional(),
    /** GIE ≤ v1 name: the block size in characters (≈ 4 a token); turns autoTune off. */
    hashBlockSize: z.number().int().positive().optional(),
    autoTune: z.boolean().optional(),
    maxPrefixTokensToMatch: count.default(131072),
    maxPrefixBlocksToMatch: count.default(2048),
    lruCapacityPerServer: z.number().int().positive().default(31250),
  })
  .strict()
  .superRefine((p, ctx) => {
    const set = (['blockSizeTokens', 'blockSize', 'hashBlockSize'] as const).filter(
      (k) => p[k] !== undefined,
    );
    if (set.length > 1) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: [set[1]!],
        message: `set only one of ${set.join(', ')}`,
      });
    }
  })
  .transform((p) => ({
    blockSizeTokens:
      p.blockSizeTokens ??
      p.blockSize ??
      (p.hashBlockSize !== undefined ? Math.max(1, Math.ceil(p.hashBlockSize / 4)) : 16),
    autoTune: p.autoTune ?? p.hashBlockSize === undefined,
    maxPrefixTokensToMatch: p.maxPrefixTokensToMatch,
    maxPrefixBlocksToMatch: p.maxPrefixBlocksToMatch,
    lruCapacityPerServer: p.lruCapacityPerServer,
  }));

export type ApproxPrefixCacheParams = z.output<typeof params>;

export const definition = definePlugin({
  type: TYPE,
  params,
  create: (name, p, handle) => new ApproxPrefixCacheProducer(name, p, handle),
});

/** What Produce leaves for PreRequest. */
interface HashedRequest {
  readonly hashesPerPrompt: readonly Uint32Array[];
  readonly blockSize: number;
  readonly info: PrefixCacheMatchInfo;
}

export interface ApproxPrefixCacheStats extends PrefixIndexStats {
  /** Over the requests recorded so far: blocks the chosen endpoint was predicted to hold / blocks. */
  readonly hitRatio: number;
  /** Predicted cached bytes of the chosen endpoints (blocks × block size × 4), summed. */
  readonly hitBytes: number;
  readonly recordedRequests: number;
}

export class ApproxPrefixCacheProducer implements DataProducer, DataConsumer, PreRequest {
  readonly typedName: TypedName;
  readonly produces = [PREFIX_CACHE_MATCH_INFO];
  readonly consumes = [TOKENIZED_REQUEST];
  readonly index: PrefixIndex;
  private readonly hashed: DataKey<HashedRequest>;
  private hitBlocks = 0;
  private totalBlocks = 0;
  private hitBytes = 0;
  private recorded = 0;

  constructor(
    name: string,
    private readonly p: ApproxPrefixCacheParams,
    handle: PluginHandle,
  ) {
    this.typedName = { type: TYPE, name };
    this.index = new PrefixIndex(p.lruCapacityPerServer);
    this.hashed = new DataKey<HashedRequest>(`${TYPE}/${name}/hashes`);
    if (p.blockSizeTokens < MIN_BLOCK_SIZE_TOKENS) {
      handle.logger.debug(
        { plugin: name, blockSizeTokens: p.blockSizeTokens, minimum: MIN_BLOCK_SIZE_TOKENS },
        'block size below the minimum; using the minimum',
      );
    }
    const source = handle.endpoints;
    source.onRemove((ep) => {
      // A replaced endpoint (same id, new object) is still the same server with the same cache.
      const live = source.get(ep.meta.id);
      if (live === undefined || live === ep) this.index.remove(ep.meta.id);
    });
  }

  /** Tokens per block: configured, or with autoTune the first candidate's KV block size; ≥ 64. */
  blockSize(endpoints: readonly Endpoint[]): number {
    let bs = this.p.blockSizeTokens;
    const reported = endpoints[0]?.metrics.cacheBlockSize ?? 0;
    if (this.p.autoTune && reported > 0) bs = reported;
    return Math.max(bs, MIN_BLOCK_SIZE_TOKENS);
  }

  /** Blocks hashed per prompt; Infinity when both limits are 0. */
  maxBlocks(blockSize: number): number {
    if (this.p.maxPrefixTokensToMatch > 0) return Math.floor(this.p.maxPrefixTokensToMatch / blockSize);
    return this.p.maxPrefixBlocksToMatch === 0 ? Infinity : this.p.maxPrefixBlocksToMatch;
  }

  /** A server's LRU capacity in our blocks: its KV capacity with autoTune when known. */
  capacityFor(ep: Endpoint, blockSize: number): number {
    const m = ep.metrics;
    if (this.p.autoTune && m.cacheNumBlocks > 0 && m.cacheBlockSize > 0) {
      return Math.max(1, Math.ceil((m.cacheNumBlocks * m.cacheBlockSize) / blockSize));
    }
    return this.p.lruCapacityPerServer;
  }

  produce(req: InferenceRequest, endpoints: readonly Endpoint[]): void {
    const blockSize = this.blockSize(endpoints);
    const maxBlocks = this.maxBlocks(blockSize);
    let slots = 0;
    for (let i = 0; i < endpoints.length; i++) slots = Math.max(slots, endpoints[i]!.slot + 1);
    const matchBlocks = new Int32Array(slots);
    const hashesPerPrompt: Uint32Array[] = [];
    let totalBlocks = 0;
    const tokenized = req.state.read(TOKENIZED_REQUEST);
    if (tokenized !== undefined) {
      const salt = req.body.cacheSalt ?? '';
      for (const prompt of tokenized.prompts) {
        const hashes = hashPrompt(prompt, blockSize, maxBlocks, req.targetModel, salt);
        if (hashes.length === 0) continue;
        hashesPerPrompt.push(hashes);
        totalBlocks += hashes.length >>> 1;
        this.index.match(hashes, endpoints, matchBlocks);
      }
    }
    const info: PrefixCacheMatchInfo = { totalBlocks, blockSizeTokens: blockSize, matchBlocks };
    req.state.write(PREFIX_CACHE_MATCH_INFO, info);
    req.state.writeAs(PREFIX_CACHE_MATCH_INFO, this.typedName.name, info);
    req.state.write(this.hashed, { hashesPerPrompt, blockSize, info });
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    const hashed = req.state.read(this.hashed);
    if (hashed === undefined || hashed.hashesPerPrompt.length === 0) return;
    const target = result.profileResults.get(result.primaryProfileName)?.targetEndpoints[0];
    if (target === undefined) return;
    this.record(target, hashed);
    const prefill = result.profileResults.get(PREFILL_PROFILE)?.targetEndpoints[0];
    if (prefill !== undefined && prefill.meta.id !== target.meta.id) this.record(prefill, hashed);

    const { info } = hashed;
    const hit = target.slot < info.matchBlocks.length ? info.matchBlocks[target.slot]! : 0;
    this.hitBlocks += hit;
    this.totalBlocks += info.totalBlocks;
    this.hitBytes += hit * hashed.blockSize * BYTES_PER_TOKEN;
    this.recorded++;
  }

  stats(): ApproxPrefixCacheStats {
    return {
      ...this.index.stats(),
      hitRatio: this.totalBlocks === 0 ? 0 : this.hitBlocks / this.totalBlocks,
      hitBytes: this.hitBytes,
      recordedRequests: this.recorded,
    };
  }

  private record(ep: Endpoint, hashed: HashedRequest): void {
    const capacity = this.capacityFor(ep, hashed.blockSize);
    for (const hashes of hashed.hashesPerPrompt) this.index.add(ep.meta.id, hashes, capacity);
  }
}
