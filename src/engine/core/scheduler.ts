/**
 * vLLM v1's scheduler (`vllm/v1/core/sched/scheduler.py`, FCFS policy, chunked prefill on): each step
 * spends a token budget first on the running sequences (one token per decode, the next chunk of a long
 * prefill), then on waiting ones (after a prefix-cache lookup), preempting the newest running sequence
 * by recompute when the KV pool runs out. `updateFromOutput` then plays the model's part: it emits the
 * tokens the step produced and retires finished sequences.
 */
import type { KvCacheManager } from './kv-cache-manager.js';
import { RequestQueue } from './request-queue.js';
import type { EngineRequest } from './request.js';
import type { FinishReason, RequestOutput, StepShape } from './types.js';

export interface SchedulerConfig {
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly maxModelLen: number;
}

const NO_TOKENS: readonly number[] = Object.freeze([]);

export class Scheduler {
  readonly waiting = new RequestQueue<EngineRequest>();
  /** Running sequences, oldest first: preemption takes the last. */
  readonly running: EngineRequest[] = [];
  /** Sequences scheduled in the current step, in scheduling order. */
  readonly scheduled: EngineRequest[] = [];
  readonly shape: StepShape = { numSeqs: 0, numTokens: 0, kvTokensRead: 0, attentionPairs: 0 };
  numPreemptedInStep = 0;
  numPreemptions = 0;

  constructor(
    private readonly config: SchedulerConfig,
    private readonly kv: KvCacheManager,
  ) {}

  addRequest(request: EngineRequest): void {
    request.status = 'waiting';
    this.waiting.pushBack(request);
  }

  /** Picks this step's batch into `scheduled` and `shape`; returns the number of sequences. */
  schedule(now: number): number {
    const kv = this.kv;
    const running = this.running;
    const scheduled = this.scheduled;
    const shape = this.shape;
    scheduled.length = 0;
    shape.numSeqs = 0;
    shape.numTokens = 0;
    shape.kvTokensRead = 0;
    shape.attentionPairs = 0;
    this.numPreemptedInStep = 0;
    let budget = this.config.maxNumBatchedTokens;

    // Running sequences first.
    let i = 0;
    while (i < running.length && budget > 0) {
      const req = running[i] as EngineRequest;
      let n = req.numTokens - req.numComputedTokens;
      if (n > budget) n = budget;
      if (n <= 0) {
        i++;
        continue;
      }
      let allocated = kv.allocateSlots(req, n);
      while (!allocated) {
        const victim = running.pop() as EngineRequest;
        this.preempt(victim);
        if (victim === req) break;
        allocated = kv.allocateSlots(req, n);
      }
      if (!allocated) break;
      this.add(req, n, now);
      budget -= n;
      i++;
    }

    // Then waiting ones, unless the pool was just short enough to preempt.
    if (this.numPreemptedInStep === 0) {
      const waiting = this.waiting;
      while (waiting.size > 0 && budget > 0 && running.length < this.config.maxNumSeqs) {
        const req = waiting.peekFront() as EngineRequest;
        // A request that arrived after this step began joins the next one, as in vLLM's engine loop.
        // The queue is in arrival order (preempted requests at its front arrived earlier still).
        if (req.arrivalTime > now) break;
        const numNewComputed = req.numComputedTokens === 0 ? kv.getComputedBlocks(req) : 0;
        if (req.remotePrefill) {
          // The prompt's KV came from a prefiller: slots for all of it now, local hits reused, and only
          // the last prompt position computed here to sample the first token (vLLM recomputes it too).
          if (!kv.allocateSlots(req, req.numTokens - numNewComputed, numNewComputed)) break;
          waiting.popFront();
          running.push(req);
          req.status = 'running';
          req.remotePrefill = false;
          if (req.numCachedTokens < 0) req.numCachedTokens = numNewComputed;
          req.numComputedTokens = req.numTokens - 1;
          this.add(req, 1, now);
          budget -= 1;
          continue;
        }
        const numComputed = req.numComputedTokens + numNewComputed;
        let n = req.numTokens - numComputed;
        if (n > budget) n = budget;
        if (!kv.allocateSlots(req, n, numNewComputed)) break;
        waiting.popFront();
        running.push(req);
        req.status = 'running';
        req.numComputedTokens = numComputed;
        if (req.numCachedTokens < 0) req.numCachedTokens = numComputed;
        this.add(req, n, now);
        budget -= n;
      }
    }
    return scheduled.length;
  }

  /**
   * Applies the step that ends at `endTime`: advances computed tokens, samples one token for every
   * sequence whose prefill is complete, and frees the blocks of the ones that finish.
   */
  updateFromOutput(endTime: number): RequestOutput[] {
    const scheduled = this.scheduled;
    const maxModelLen = this.config.maxModelLen;
    const outputs: RequestOutput[] = new Array<RequestOutput>(scheduled.length);
    let numFinished = 0;
    for (let i = 0; i < scheduled.length; i++) {
      const req = scheduled[i] as EngineRequest;
      req.numComputedTokens += req.numScheduledTokens;
      req.numScheduledTokens = 0;
      if (req.numComputedTokens < req.numTokens) {
        outputs[i] = output(req, NO_TOKENS, null);
        continue;
      }
      let newTokenIds = NO_TOKENS;
      const k = req.numOutputTokens;
      if (k < req.outputTokenIds.length && k < req.maxTokens) {
        const token = req.outputTokenIds[k] as number;
        req.appendOutputToken(token);
        newTokenIds = [token];
        if (req.firstTokenTime < 0) req.firstTokenTime = endTime;
        req.lastTokenTime = endTime;
      }
      let finish: FinishReason | null = null;
      if (req.numOutputTokens >= req.maxTokens || req.numTokens >= maxModelLen) finish = 'length';
      else if (req.numOutputTokens >= req.outputTokenIds.length) finish = 'stop';
      if (finish === null) {
        outputs[i] = output(req, newTokenIds, null);
        continue;
      }
      req.status = 'finished';
      // A finished P/D prefill keeps its blocks for the decoder that will read them.
      const held = req.holdOnFinish && finish === 'length' && req.blocks.length > 0;
      const heldBlockIds = held ? req.blocks.map((b) => b.blockId) : undefined;
      if (!held) this.kv.free(req);
      numFinished++;
      if (req.firstTokenTime < 0) req.firstTokenTime = endTime;
      if (req.lastTokenTime < 0) req.lastTokenTime = endTime;
      outputs[i] = {
        requestId: req.requestId,
        newTokenIds,
        numCachedTokens: req.numCachedTokens,
        numPromptTokens: req.numPromptTokens,
        finishReason: finish,
        timings: {
          arrivalTime: req.arrivalTime,
          firstScheduledTime: req.firstScheduledTime,
          firstTokenTime: req.firstTokenTime,
          lastTokenTime: req.lastTokenTime,
          finishedTime: endTime,
        },
        heldBlockIds,
      };
    }
    if (numFinished > 0) this.dropFinished();
    return outputs;
  }

  /** Removes a request wherever it is and frees its blocks. */
  abort(req: EngineRequest): boolean {
    if (req.status === 'finished') return false;
    if (req.status === 'running') {
      const i = this.running.indexOf(req);
      if (i >= 0) this.running.splice(i, 1);
    } else {
      this.waiting.remove(req);
    }
    req.status = 'finished';
    this.kv.free(req);
    return true;
  }

  private add(req: EngineRequest, n: number, now: number): void {
    const c = req.numComputedTokens;
    req.numScheduledTokens = n;
    if (req.firstScheduledTime < 0) req.firstScheduledTime = now;
    this.scheduled.push(req);
    const shape = this.shape;
    shape.numSeqs++;
    shape.numTokens += n;
    shape.kvTokensRead += c + n;
    shape.attentionPairs += n * c + (n * (n + 1)) / 2;
  }

  /** Preemption by recompute: drop the KV and start over from the front of the waiting queue. */
  private preempt(req: EngineRequest): void {
    this.kv.free(req);
    req.status = 'preempted';
    req.numComputedTokens = 0;
    req.numPreemptions++;
    this.numPreemptions++;
    this.numPreemptedInStep++;
    this.waiting.pushFront(req);
  }

  private dropFinished(): void {
    const running = this.running;
    let w = 0;
    for (let r = 0; r < running.length; r++) {
      const req = running[r] as EngineRequest;
      if (req.status !== 'finished') running[w++] = req;
    }
    running.length = w;
  }
}

function output(req: EngineRequest, newTokenIds: readonly number[], finish: null): RequestOutput {
  return {
    requestId: req.requestId,
    newTokenIds,
    numCachedTokens: req.numCachedTokens,
    numPromptTokens: req.numPromptTokens,
    finishReason: finish,
    timings: undefined,
  };
}
