/**
 * Contracts of the engine core: what the server hands in, what a step hands back.
 *
 * The core mirrors vLLM v1's scheduler and KV-cache manager. It is pure: it never reads a clock, it is
 * given `now` (seconds) and answers with the time the step ends. The real-time driver and the
 * virtual-time tests drive the very same code.
 */

export type FinishReason = 'stop' | 'length' | 'abort';

export type PrefixHashAlgo = 'sha256_cbor' | 'xxhash_cbor';

/** One sequence handed to the engine (a `n>1` request becomes n of these). */
export interface EngineRequestInit {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  /**
   * The tokens this sequence will produce, decided up front by the output generator (random or echo
   * text). The engine emits them one per decode step. When the list is shorter than `maxTokens` the
   * sequence ends with `stop` after the last one (the simulated EOS); otherwise it ends with `length`.
   */
  readonly outputTokenIds: readonly number[];
  readonly maxTokens: number;
  /** Seconds on the injected clock. */
  readonly arrivalTime: number;
  readonly cacheSalt?: string | undefined;
  readonly loraName?: string | undefined;
  /**
   * P/D prefill (`kv_transfer_params.do_remote_decode`): when the sequence ends length-capped its blocks
   * are not freed but held for a remote decoder to read, until `releaseHeld` or the hold timeout.
   */
  readonly holdBlocksOnFinish?: boolean | undefined;
  /**
   * P/D decode: the prompt's KV has been transferred from a prefiller. The first step allocates slots for
   * the whole prompt (reusing local prefix-cache hits) and computes only its last position, to sample
   * the first token.
   */
  readonly remotePrefilled?: boolean | undefined;
}

/** Timestamps of one finished sequence, on the injected clock (seconds). */
export interface RequestTimings {
  readonly arrivalTime: number;
  readonly firstScheduledTime: number;
  readonly firstTokenTime: number;
  readonly lastTokenTime: number;
  readonly finishedTime: number;
}

/** What one sequence got out of one step. */
export interface RequestOutput {
  readonly requestId: string;
  /** Tokens sampled in this step (empty while a chunked prefill is still running). */
  readonly newTokenIds: readonly number[];
  /** Prompt tokens served from the prefix cache (final once the prefill is scheduled). */
  readonly numCachedTokens: number;
  readonly numPromptTokens: number;
  readonly finishReason: FinishReason | null;
  /** Present when `finishReason` is set. */
  readonly timings?: RequestTimings;
  /** Set when the sequence finished with its blocks held for a remote decoder: their ids, in order. */
  readonly heldBlockIds?: readonly number[];
}

/** vLLM KV events, produced by the block pool and drained by the server (published over ZMQ). */
export type KvEvent =
  | {
      readonly type: 'BlockStored';
      /** 64-bit external hashes (last 8 bytes of the digest, big-endian), as vLLM publishes them. */
      readonly blockHashes: readonly bigint[];
      readonly parentBlockHash: bigint | null;
      readonly tokenIds: readonly number[];
      readonly blockSize: number;
      readonly loraName: string | null;
      readonly medium: 'GPU';
      /**
       * vLLM's per-block `extra_keys` (LoRA name, then the cache salt on the first block); null when no
       * block has any.
       */
      readonly extraKeys: readonly (readonly string[] | null)[] | null;
    }
  | { readonly type: 'BlockRemoved'; readonly blockHashes: readonly bigint[]; readonly medium: 'GPU' }
  | { readonly type: 'AllBlocksCleared' };

export interface StepResult {
  readonly startTime: number;
  /** When the step's tokens are ready; the driver delivers `outputs` at this time. */
  readonly endTime: number;
  readonly outputs: readonly RequestOutput[];
  readonly numScheduledTokens: number;
  readonly numScheduledSeqs: number;
  readonly numPreempted: number;
}

/** Live figures the metrics endpoint reads. Counters only ever grow. */
export interface EngineStats {
  readonly numRunning: number;
  readonly numWaiting: number;
  /** Fraction of KV blocks in use, 0..1. */
  readonly kvCacheUsage: number;
  readonly prefixCacheQueries: number;
  readonly prefixCacheHits: number;
  readonly numPreemptions: number;
  readonly numGpuBlocks: number;
  readonly blockSize: number;
  /** Finished prefills whose blocks are held for a remote decoder. */
  readonly numHeld: number;
}

/**
 * The shape of one engine step, aggregated by the scheduler so the timing model needs no per-sequence
 * arrays. The scheduler may reuse one object across steps.
 */
export interface StepShape {
  /** Sequences in the batch (prefill chunks and decodes). */
  numSeqs: number;
  /** Tokens computed in this step (prefill chunk tokens + one per decode). */
  numTokens: number;
  /** Σ over sequences of context tokens whose KV is read (already-computed tokens + this step's tokens). */
  kvTokensRead: number;
  /**
   * Σ over sequences of attention work in token pairs: for a sequence with c computed tokens and n new
   * ones, n × c + n × (n + 1) / 2 (causal attention of the new tokens over the whole context).
   */
  attentionPairs: number;
}

/** The timing model as the engine sees it: how long one step takes, in seconds. */
export interface StepTimer {
  stepDuration(shape: StepShape): number;
}
