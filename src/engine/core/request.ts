/**
 * The engine's per-sequence state (vLLM's `vllm/v1/request.py`): tokens so far, how many have KV computed,
 * the blocks holding that KV and the block hashes of its full blocks. The scheduler and the KV-cache
 * manager mutate it in place; one object per sequence keeps the step loop allocation-free.
 */
import { appendBlockHashes, type BlockHash, type BlockHashParams } from './block-hash.js';
import type { KvBlock } from './block-pool.js';
import type { EngineRequestInit, PrefixHashAlgo } from './types.js';

export type RequestStatus = 'waiting' | 'running' | 'preempted' | 'finished';

export class EngineRequest implements BlockHashParams {
  readonly requestId: string;
  readonly arrivalTime: number;
  readonly maxTokens: number;
  readonly outputTokenIds: readonly number[];
  readonly numPromptTokens: number;
  readonly loraName: string | undefined;
  readonly cacheSalt: string | undefined;
  /** Prompt followed by the tokens emitted so far. */
  readonly allTokenIds: number[];
  numOutputTokens = 0;
  /** Tokens whose KV is computed (or served from the prefix cache). */
  numComputedTokens = 0;
  /** Prompt tokens served from the prefix cache when first scheduled; -1 until then. */
  numCachedTokens = -1;
  numPreemptions = 0;
  status: RequestStatus = 'waiting';
  /** See `EngineRequestInit.holdBlocksOnFinish`. */
  readonly holdOnFinish: boolean;
  /** See `EngineRequestInit.remotePrefilled`; cleared once the first step used it. */
  remotePrefill: boolean;

  /** The request's KV blocks, in sequence order. */
  readonly blocks: KvBlock[] = [];
  /** How many leading `blocks` are registered in the prefix cache. */
  numCachedBlocks = 0;
  /** Hashes of all full blocks of `allTokenIds` (kept only with prefix caching on). */
  readonly blockHashes: BlockHash[] = [];

  /** Tokens scheduled in the current step. */
  numScheduledTokens = 0;

  firstScheduledTime = -1;
  firstTokenTime = -1;
  lastTokenTime = -1;

  constructor(
    init: EngineRequestInit,
    readonly algo: PrefixHashAlgo,
    readonly noneHash: Uint8Array,
    readonly blockSize: number,
    private readonly hashBlocks: boolean,
  ) {
    this.requestId = init.requestId;
    this.arrivalTime = init.arrivalTime;
    this.maxTokens = init.maxTokens;
    this.outputTokenIds = init.outputTokenIds;
    this.numPromptTokens = init.promptTokenIds.length;
    this.loraName = init.loraName;
    this.cacheSalt = init.cacheSalt;
    this.holdOnFinish = init.holdBlocksOnFinish === true;
    this.remotePrefill = init.remotePrefilled === true;
    this.allTokenIds = init.promptTokenIds.slice();
    if (hashBlocks) appendBlockHashes(this, this.allTokenIds, this.allTokenIds.length, this.blockHashes);
  }

  get numTokens(): number {
    return this.allTokenIds.length;
  }

  /** Appends one generated token, hashing the block it completes. */
  appendOutputToken(token: number): void {
    this.allTokenIds.push(token);
    this.numOutputTokens++;
    if (this.hashBlocks && this.allTokenIds.length % this.blockSize === 0) {
      appendBlockHashes(this, this.allTokenIds, this.allTokenIds.length, this.blockHashes);
    }
  }
}
