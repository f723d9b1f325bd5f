/**
 * `prefix-cache-affinity-filter`: narrows the candidates to the "sticky" endpoints, those whose prefix
 * match ratio `matchBlocks/totalBlocks` is at least `affinityThreshold`, so that a prompt goes where
 * it is cached. It keeps every candidate instead when none is sticky, with probability
 * `explorationProbability`, or when stickiness costs too much: the best sticky TTFT estimate minus the
 * best non-sticky one exceeds `maxTTFTPenaltyMs` (0 = always stick). With `ttftSource:
 * prefillThroughput` the estimate is `inFlightTokens / peakPrefillThroughput × 1000` ms.
 */
import { z } from 'zod';
import { ConfigError } from '../../../core/errors.js';
import type { Rng } from '../../../core/rng.js';
import type { DataKey } from '../../framework/cycle-state.js';
import {
  INFLIGHT_LOAD,
  INFLIGHT_LOAD_ATTR,
  PREFIX_CACHE_MATCH_INFO,
  matchBlocksOf,
  type PrefixCacheMatchInfo,
} from '../../framework/data-keys.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import type { DataConsumer } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { Filter } from '../../framework/scheduling.js';

export const TYPE = 'prefix-cache-affinity-filter';

const Params = z
  .object({
    affinityThreshold: z.number().min(0).max(1).default(0.8),
    explorationProbability: z.number().min(0).max(1).default(0),
    maxTTFTPenaltyMs: z.number().nonnegative().default(18000),
    ttftSource: z.enum(['prefillThroughput', 'latencyPredictor']).default('prefillThroughput'),
    // Qwen 32B on 2×H100 (TP=2), vLLM 0.19, as upstream calibrated it.
    peakPrefillThroughput: z.number().nonnegative().default(15928),
    prefixMatchInfoProducerName: z.string().min(1).optional(),
    // Accepted for upstream configs; llmd keeps one in-flight load per endpoint, whoever produces it.
    inFlightLoadProducerName: z.string().optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.maxTTFTPenaltyMs > 0 && p.peakPrefillThroughput === 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['peakPrefillThroughput'],
        message: 'must be > 0 when maxTTFTPenaltyMs is > 0',
      });
    }
  });

export type PrefixCacheAffinityParams = z.output<typeof Params>;

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new PrefixCacheAffinityFilter(name, params, handle),
});

export class PrefixCacheAffinityFilter implements Filter, DataConsumer {
  readonly typedName: TypedName;
  readonly consumes: readonly DataKey<unknown>[];
  private readonly threshold: number;
  private readonly exploration: number;
  private readonly maxPenaltyMs: number;
  private readonly msPerToken: number;
  private readonly producer: string | undefined;
  private readonly rng: Rng;

  constructor(name: string, params: PrefixCacheAffinityParams, handle: PluginHandle) {
    this.typedName = { type: TYPE, name };
    if (params.ttftSource === 'latencyPredictor') {
      throw new ConfigError(
        `plugin ${name} (${TYPE}): ttftSource latencyPredictor needs the predicted-latency-producer, ` +
          'which llmd does not provide; use ttftSource prefillThroughput',
        'ttftSource',
      );
    }
    this.threshold = params.affinityThreshold;
    this.exploration = params.explorationProbability;
    this.maxPenaltyMs = params.maxTTFTPenaltyMs;
    this.msPerToken = 1000 / params.peakPrefillThroughput;
    this.producer = params.prefixMatchInfoProducerName;
    this.rng = handle.rng;
    this.consumes =
      this.maxPenaltyMs > 0 ? [PREFIX_CACHE_MATCH_INFO, INFLIGHT_LOAD] : [PREFIX_CACHE_MATCH_INFO];
  }

  private matchInfo(req: InferenceRequest): PrefixCacheMatchInfo | undefined {
    return this.producer === undefined
      ? req.state.read(PREFIX_CACHE_MATCH_INFO)
      : req.state.readAs(PREFIX_CACHE_MATCH_INFO, this.producer);
  }

  filter(req: InferenceRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const n = endpoints.length;
    if (n <= 1 || this.threshold <= 0) return endpoints;
    // Drawn only when exploring is possible, so a zero probability leaves the shared rng untouched.
    if (this.exploration > 0 && this.rng.next() < this.exploration) return endpoints;
    const info = this.matchInfo(req);
    if (info === undefined || info.totalBlocks <= 0) return endpoints;

    // One pass without allocating: count the sticky endpoints and find the best TTFT on each side.
    const total = info.totalBlocks;
    let sticky = 0;
    let bestSticky = Infinity;
    let bestOther = Infinity;
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]!;
      const ttft = (e.attributes.get(INFLIGHT_LOAD_ATTR)?.tokens ?? 0) * this.msPerToken;
      if (matchBlocksOf(info, e.slot) / total >= this.threshold) {
        sticky++;
        if (ttft < bestSticky) bestSticky = ttft;
      } else if (ttft < bestOther) {
        bestOther = ttft;
      }
    }
    if (sticky === 0 || sticky === n) return endpoints;
    if (this.maxPenaltyMs > 0 && bestSticky - bestOther > this.maxPenaltyMs) return endpoints;

    const out: Endpoint[] = [];
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]!;
      if (matchBlocksOf(info, e.slot) / total >= this.threshold) out.push(e);
    }
    return out;
  }
}
