/**
 * The engine core the model server drives: requests in, one `step(now)` at a time, outputs out. It
 * wires the scheduler, the KV-cache manager and block hashing together and asks the timing model how
 * long each step takes. It never reads a clock, so real-time serving and virtual-time runs share it.
 */
import { computeBlockHashes, computeNoneHash, externalBlockHash } from './block-hash.js';
import { KvCacheManager } from './kv-cache-manager.js';
import { EngineRequest } from './request.js';
import { Scheduler } from './scheduler.js';
import type {
  EngineRequestInit,
  EngineStats,
  KvEvent,
  PrefixHashAlgo,
  RequestOutput,
  StepResult,
  StepTimer,
} from './types.js';

export interface EngineCoreConfig {
  blockSize: number;
  numGpuBlocks: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  maxModelLen: number;
  enablePrefixCaching: boolean;
  hashAlgo: PrefixHashAlgo;
  /** PYTHONHASHSEED or undefined */
  hashSeed: string | undefined;
  enableKvEvents: boolean;
  timer: StepTimer;
  /** How long a finished P/D prefill holds its blocks for the decoder (vLLM's VLLM_NIXL_ABORT_REQUEST_TIMEOUT). */
  heldBlocksTimeoutS?: number;
  /**
   * NONE_HASH to use when `hashSeed` is undefined, instead of 32 random bytes (vLLM's behaviour); lets
   * tests and replays pin the hashes of an unseeded engine.
   */
  noneHash?: Uint8Array | undefined;
}

export interface BlockHashOptions {
  readonly cacheSalt?: string | undefined;
  readonly loraName?: string | undefined;
}

const NO_OUTPUTS: readonly RequestOutput[] = Object.freeze([]);

export class EngineCore {
  readonly noneHash: Uint8Array;
  private readonly kv: KvCacheManager;
  private readonly scheduler: Scheduler;
  private readonly requests = new Map<string, EngineRequest>();
  /** Finished prefills holding their blocks for a remote decoder, in finishing order. */
  private readonly held = new Map<string, { req: EngineRequest; expiresAt: number }>();
  private readonly heldTimeout: number;
  private readonly timer: StepTimer;

  constructor(private readonly config: EngineCoreConfig) {
    const { blockSize, maxNumSeqs, maxNumBatchedTokens, maxModelLen } = config;
    for (const [name, v] of Object.entries({ blockSize, maxNumSeqs, maxNumBatchedTokens, maxModelLen })) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    this.noneHash =
      config.hashSeed === undefined && config.noneHash !== undefined
        ? config.noneHash
        : computeNoneHash(config.hashAlgo, config.hashSeed);
    this.kv = new KvCacheManager(config);
    this.scheduler = new Scheduler(config, this.kv);
    this.timer = config.timer;
    this.heldTimeout = config.heldBlocksTimeoutS ?? 480;
  }

  /**
   * Queues one sequence. Throws on a duplicate id and on requests the server should have rejected (no
   * prompt, `maxTokens` < 1, a prompt longer than `maxModelLen`); a prompt plus `maxTokens` beyond
   * `maxModelLen` is accepted and ends with `length` at the limit.
   */
  addRequest(init: EngineRequestInit): void {
    if (this.requests.has(init.requestId)) throw new Error(`duplicate request id ${init.requestId}`);
    const n = init.promptTokenIds.length;
    if (n === 0) throw new RangeError(`request ${init.requestId} has an empty prompt`);
    if (n > this.config.maxModelLen) {
      throw new RangeError(`request ${init.requestId}: prompt of ${n} tokens exceeds maxModelLen`);
    }
    if (!(init.maxTokens >= 1)) throw new RangeError(`request ${init.requestId}: maxTokens must be ≥ 1`);
    const req = new EngineRequest(
      init,
      this.config.hashAlgo,
      this.noneHash,
      this.config.blockSize,
      this.config.enablePrefixCaching,
    );
    this.requests.set(init.requestId, req);
    this.scheduler.addRequest(req);
  }

  /**
   * Drops a request wherever it is and frees its blocks, held ones included; no output is produced for
   * it afterwards.
   */
  abortRequest(requestId: string): boolean {
    const req = this.requests.get(requestId);
    // A finished prefill whose answer was never delivered: no decoder will come for its blocks.
    if (req === undefined) return this.releaseHeld(requestId);
    this.requests.delete(requestId);
    return this.scheduler.abort(req);
  }

  /** The decoder has read the blocks of a finished prefill (or gave up): free them. */
  releaseHeld(requestId: string): boolean {
    const h = this.held.get(requestId);
    if (h === undefined) return false;
    this.held.delete(requestId);
    this.kv.free(h.req);
    return true;
  }

  /** Frees held blocks whose decoder never came for them; returns how many prefills were released. */
  releaseExpired(now: number): number {
    let n = 0;
    // In finishing order, so the first one not yet expired ends the scan.
    for (const [id, h] of this.held) {
      if (h.expiresAt > now) break;
      this.held.delete(id);
      this.kv.free(h.req);
      n++;
    }
    return n;
  }

  /**
   * What a finished prefill holds for its decoder — block ids in order and the prompt they hold — or
   * undefined once released or expired.
   */
  heldBlocks(
    requestId: string,
  ): { readonly blockIds: readonly number[]; readonly promptTokenIds: readonly number[] } | undefined {
    const h = this.held.get(requestId);
    if (h === undefined) return undefined;
    return {
      blockIds: h.req.blocks.map((b) => b.blockId),
      promptTokenIds: h.req.allTokenIds.slice(0, h.req.numPromptTokens),
    };
  }

  hasUnfinishedRequests(): boolean {
    return this.requests.size > 0;
  }

  /**
   * Schedules and "executes" one step starting at `now`; its outputs are ready at `endTime`. With nothing
   * schedulable the result is empty and `endTime === now`.
   */
  step(now: number): StepResult {
    const scheduler = this.scheduler;
    const numSeqs = scheduler.schedule(now);
    const numPreempted = scheduler.numPreemptedInStep;
    if (numSeqs === 0) {
      return {
        startTime: now,
        endTime: now,
        outputs: NO_OUTPUTS,
        numScheduledTokens: 0,
        numScheduledSeqs: 0,
        numPreempted,
      };
    }
    const numScheduledTokens = scheduler.shape.numTokens;
    const endTime = now + this.timer.stepDuration(scheduler.shape);
    const outputs = scheduler.updateFromOutput(endTime);
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i] as RequestOutput;
      if (o.finishReason === null) continue;
      if (o.heldBlockIds !== undefined) {
        this.held.set(o.requestId, {
          req: this.requests.get(o.requestId)!,
          expiresAt: endTime + this.heldTimeout,
        });
      }
      this.requests.delete(o.requestId);
    }
    if (this.held.size > 0) this.releaseExpired(endTime);
    return { startTime: now, endTime, outputs, numScheduledTokens, numScheduledSeqs: numSeqs, numPreempted };
  }

  stats(): EngineStats {
    return {
      numRunning: this.scheduler.running.length,
      numWaiting: this.scheduler.waiting.size,
      kvCacheUsage: this.kv.usage,
      prefixCacheQueries: this.kv.prefixCacheQueries,
      prefixCacheHits: this.kv.prefixCacheHits,
      numPreemptions: this.scheduler.numPreemptions,
      numGpuBlocks: this.config.numGpuBlocks,
      blockSize: this.config.blockSize,
      numHeld: this.held.size,
    };
  }

  /** KV events since the last drain (always empty unless `enableKvEvents`). */
  drainEvents(): KvEvent[] {
    return this.kv.pool.drainEvents();
  }

  /** Forgets all cached blocks; refused (false) while any request holds blocks, as in vLLM. */
  resetPrefixCache(): boolean {
    return this.kv.resetPrefixCache();
  }

  /**
   * How many leading full blocks of this prompt the prefix cache holds now (at most all but the block of
   * the last token, as a lookup at scheduling would find). A query: no statistics move.
   */
  localPrefixHitBlocks(promptTokenIds: readonly number[], opts: BlockHashOptions = {}): number {
    const max = Math.floor((promptTokenIds.length - 1) / this.config.blockSize);
    return Math.min(max, this.cachedLeadingBlocks(promptTokenIds, opts));
  }

  /** How many leading full blocks of `tokenIds` the prefix cache holds, every full block considered. */
  cachedLeadingBlocks(tokenIds: readonly number[], opts: BlockHashOptions = {}): number {
    if (!this.config.enablePrefixCaching) return 0;
    const hashes = computeBlockHashes(
      {
        algo: this.config.hashAlgo,
        noneHash: this.noneHash,
        blockSize: this.config.blockSize,
        loraName: opts.loraName,
        cacheSalt: opts.cacheSalt,
      },
      tokenIds,
    );
    let n = 0;
    while (n < hashes.length && this.kv.pool.getCachedBlock(hashes[n]!) !== undefined) n++;
    return n;
  }

  /** External (64-bit) hash → number of blocks the prefix cache holds under it. */
  cachedBlockHashes(): Map<bigint, number> {
    return this.kv.pool.cachedExternalHashes();
  }

  /** The 64-bit external hashes of the full blocks of `tokenIds`, as this engine would publish them. */
  blockHashesOf(tokenIds: readonly number[], opts: BlockHashOptions = {}): bigint[] {
    const hashes = computeBlockHashes(
      {
        algo: this.config.hashAlgo,
        noneHash: this.noneHash,
        blockSize: this.config.blockSize,
        loraName: opts.loraName,
        cacheSalt: opts.cacheSalt,
      },
      tokenIds,
    );
    return hashes.map((h) => externalBlockHash(h.digest));
  }
}
