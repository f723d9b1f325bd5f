/**
 * The data plugins exchange, with the producer type the loader adds when a consumer needs it and the
 * config has none (upstream's defaults registry).
 */
import { AttributeKey } from './endpoint.js';
import { DataKey } from './cycle-state.js';

/**
 * Per-request prefix-cache match: the request's prompt cut into `totalBlocks` blocks of
 * `blockSizeTokens` tokens, and for each endpoint (indexed by `Endpoint.slot`) how many leading blocks
 * that endpoint is believed to hold. Slots beyond the array hold nothing.
 */
export interface PrefixCacheMatchInfo {
  readonly totalBlocks: number;
  readonly blockSizeTokens: number;
  readonly matchBlocks: Int32Array;
}

/** Written under the default key and under the producing plugin's name (`readAs`). */
export const PREFIX_CACHE_MATCH_INFO = new DataKey<PrefixCacheMatchInfo>(
  'PrefixCacheMatchInfo',
  'approx-prefix-cache-producer',
);

export function matchBlocksOf(info: PrefixCacheMatchInfo, slot: number): number {
  return slot < info.matchBlocks.length ? info.matchBlocks[slot]! : 0;
}

/** The request's prompt(s) as token ids (real or estimated), one array per prompt. */
export interface TokenizedRequest {
  readonly tokenCount: number;
  readonly prompts: readonly Uint32Array[];
  /** `estimate`, `local` or `vllm`: how the ids were obtained. */
  readonly backend: string;
}

export const TOKENIZED_REQUEST = new DataKey<TokenizedRequest>('TokenizedRequest', 'token-producer');

/** What the EPP itself has in flight to one endpoint. */
export interface InflightLoad {
  requests: number;
  /** Estimated input + output tokens of the requests in flight. */
  tokens: number;
}

/** Kept on each endpoint by `inflight-load-producer`. */
export const INFLIGHT_LOAD_ATTR = new AttributeKey<InflightLoad>('InFlightLoad');

/** Consumers of in-flight load declare this key so the producer is added when missing. */
export const INFLIGHT_LOAD = new DataKey<true>('InFlightLoad', 'inflight-load-producer');
