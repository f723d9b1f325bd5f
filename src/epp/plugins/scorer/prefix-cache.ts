/**
 * `prefix-cache-scorer`: scores by how much of the prompt each endpoint is believed to have cached, from
 * the `PrefixCacheMatchInfo` a producer wrote (the approximate index by default):
 * `w · min(1, matchBlocks · blockSize / matchLengthScaleTokens)² + (1 − w) · matchBlocks / totalBlocks`
 * with `w = matchLengthWeight` (0: the plain match ratio). No info, or an empty prompt, scores 0.
 *
 * The GIE scorer hashed prompts itself and took `hashBlockSize` (characters), `blockSize` (tokens),
 * `maxPrefixBlocksToMatch` and `lruCapacityPerServer`. Those now belong to the producer: they are still
 * accepted here and handed to the `approx-prefix-cache-producer` the loader creates for this scorer.
 */
import { z } from 'zod';
import type { DataKey } from '../../framework/cycle-state.js';
import {
  PREFIX_CACHE_MATCH_INFO,
  matchBlocksOf,
  type PrefixCacheMatchInfo,
} from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { DataConsumer } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Scorer } from '../../framework/scheduling.js';

export const TYPE = 'prefix-cache-scorer';

const LEGACY = ['hashBlockSize', 'blockSize', 'maxPrefixBlocksToMatch', 'lruCapacityPerServer'] as const;

const Params = z
  .object({
    matchLengthWeight: z.number().min(0).max(1).default(0),
    matchLengthScaleTokens: z.number().int().positive().default(8192),
    prefixMatchInfoProducerName: z.string().min(1).optional(),
    /** Legacy, in characters: about 4 per token. */
    hashBlockSize: z.number().int().positive().optional(),
    /** Legacy, in tokens. */
    blockSize: z.number().int().positive().optional(),
    maxPrefixBlocksToMatch: z.number().int().nonnegative().optional(),
    lruCapacityPerServer: z.number().int().positive().optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.hashBlockSize !== undefined && p.blockSize !== undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['blockSize'],
        message: 'cannot be combined with hashBlockSize (characters); give one block size',
      });
    }
  });

export type PrefixCacheScorerParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new PrefixCacheScorer(name, params, handle),
});

/** What `approx-prefix-cache-producer` takes, as far as the legacy parameters say. */
export interface ApproxProducerParams {
  blockSizeTokens?: number;
  autoTune?: boolean;
  maxPrefixTokensToMatch?: number;
  maxPrefixBlocksToMatch?: number;
  lruCapacityPerServer?: number;
}

/** The producer parameters that the legacy scorer parameters stand for; undefined when none was given. */
export function legacyProducerParams(p: PrefixCacheScorerParams): ApproxProducerParams | undefined {
  const out: ApproxProducerParams = {};
  if (p.hashBlockSize !== undefined) {
    out.blockSizeTokens = Math.max(1, Math.ceil(p.hashBlockSize / 4));
    out.autoTune = false;
  }
  if (p.blockSize !== undefined) {
    out.blockSizeTokens = p.blockSize;
    out.autoTune = false;
  }
  if (p.maxPrefixBlocksToMatch !== undefined) {
    out.maxPrefixBlocksToMatch = p.maxPrefixBlocksToMatch;
    // The producer prefers its token limit when it is > 0; zero it so the block limit governs.
    out.maxPrefixTokensToMatch = 0;
  }
  if (p.lruCapacityPerServer !== undefined) out.lruCapacityPerServer = p.lruCapacityPerServer;
  return Object.keys(out).length > 0 ? out : undefined;
}

const CONSUMES: readonly DataKey<unknown>[] = [PREFIX_CACHE_MATCH_INFO];

export class PrefixCacheScorer implements Scorer, DataConsumer {
  readonly typedName: TypedName;
  readonly category = 'affinity';
  readonly consumes = CONSUMES;
  private readonly weight: number;
  private readonly scaleTokens: number;
  private readonly producer: string | undefined;
  private readonly legacy: ApproxProducerParams | undefined;

  constructor(name: string, params: PrefixCacheScorerParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    this.weight = params.matchLengthWeight;
    this.scaleTokens = params.matchLengthScaleTokens;
    this.producer = params.prefixMatchInfoProducerName;
    this.legacy = legacyProducerParams(params);
    if (this.legacy !== undefined) {
      handle.logger.warn(
        { plugin: name, plugin_type: TYPE, params: LEGACY.filter((k) => params[k] !== undefined) },
        'prefix-cache-scorer: hashBlockSize, blockSize, maxPrefixBlocksToMatch and lruCapacityPerServer ' +
          'are deprecated; they are passed to approx-prefix-cache-producer, configure them there',
      );
    }
  }

  producerParams(key: DataKey<unknown>): Record<string, unknown> | undefined {
    if (key.name !== PREFIX_CACHE_MATCH_INFO.name || this.legacy === undefined) return undefined;
    return { ...this.legacy };
  }

  private matchInfo(req: InferenceRequest): PrefixCacheMatchInfo | undefined {
    return this.producer === undefined
      ? req.state.read(PREFIX_CACHE_MATCH_INFO)
      : req.state.readAs(PREFIX_CACHE_MATCH_INFO, this.producer);
  }

  score(req: InferenceRequest, endpoints: readonly Endpoint[], out: Float64Array): void {
    const n = endpoints.length;
    const info = this.matchInfo(req);
    if (info === undefined || info.totalBlocks <= 0) {
      out.fill(0, 0, n);
      return;
    }
    const total = info.totalBlocks;
    const w = this.weight;
    const blockSize = info.blockSizeTokens > 0 ? info.blockSizeTokens : 0;
    for (let i = 0; i < n; i++) {
      const blocks = matchBlocksOf(info, endpoints[i]!.slot);
      const ratio = blocks / total;
      if (w === 0) {
        out[i] = ratio;
      } else {
        const len = Math.min(1, (blocks * blockSize) / this.scaleTokens);
        out[i] = w * len * len + (1 - w) * ratio;
      }
    }
  }
}
