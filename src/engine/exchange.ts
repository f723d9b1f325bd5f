/**
 * One client request in flight: its engine sequences (prompts × n), and the response it is writing —
 * a JSON body at the end, or SSE chunks as tokens arrive. This is the per-token hot path: chunks are
 * built by string concatenation around pre-serialised prefixes, and nothing is re-serialised.
 */
import type { ServerResponse } from 'node:http';
import { SSE_DONE, SSE_HEADERS } from '../api/sse.js';
import { SseWriter } from '../core/sse-writer.js';
import type { FinishReason, RequestOutput } from './core/types.js';
import type { EngineMetrics } from './metrics.js';
import type { OutputTextStream } from './output/index.js';

export type ExchangeKind = 'completion' | 'chat';

/** What follows the text value in a mid-stream chunk (not finished, no stop reason, no usage). */
const COMPLETION_SUFFIX = Buffer.from(',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n');
const CHAT_SUFFIX = Buffer.from('},"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n');

/** One engine sequence (one choice of one prompt). */
export class Sequence {
  text = '';
  /** Text produced but not yet written to the stream (held until `streamInterval` tokens). */
  pending = '';
  pendingTokens = 0;
  numGenerated = 0;
  numCachedTokens = 0;
  firstTokenTime = -1;
  lastTokenTime = -1;
  finishReason: FinishReason | null = null;
  stopReason: string | number | null = null;
  /** Whether the chat role delta (or the completion echo) went out already. */
  started = false;
  /** P/D prefill: the blocks the engine holds for a remote decoder once this sequence finished. */
  heldBlockIds: readonly number[] | null = null;
  /** The bytes of this sequence's mid-stream chunks up to the text value (built on first use). */
  framePrefix: Buffer | null = null;

  constructor(
    readonly engineId: string,
    readonly index: number,
    readonly promptIndex: number,
    readonly numPromptTokens: number,
    readonly maxTokens: number,
    readonly arrivalTime: number,
    /** Detokenization, stop strings and stop tokens of this sequence. */
    readonly textStream: OutputTextStream,
    /** Completion `echo`: the prompt text goes before the output. */
    readonly echoText: string,
  ) {}
}

export interface ExchangeOptions {
  kind: ExchangeKind;
  id: string;
  created: number;
  model: string;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
  streamInterval: number;
  promptTokenDetails: boolean;
  /** Prompt token counts, one per prompt. */
  promptTokens: readonly number[];
  metrics: EngineMetrics;
  /** P/D prefill: the response's `kv_transfer_params` for a finished sequence (null: none). */
  transferParams: ((seq: Sequence) => Record<string, unknown> | null) | null;
  /** Ask the engine to stop a sequence (a stop string or stop token was hit). */
  abort: (engineId: string) => void;
  /** Called once when the exchange is done (all sequences finished or client gone). */
  onDone: (ex: Exchange) => void;
}

export class Exchange {
  readonly sequences: Sequence[] = [];
  private remaining = 0;
  private done = false;
  /** `{"id":…,"object":…,"created":…,"model":…,"choices":[` — the fixed head of every chunk. */
  private readonly chunkHead: string;
  private readonly sse: SseWriter | null;

  constructor(
    readonly res: ServerResponse,
    readonly opts: ExchangeOptions,
  ) {
    const object = opts.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.chunkHead =
      'data: {"id":' +
      JSON.stringify(opts.id) +
      ',"object":"' +
      object +
      '","created":' +
      opts.created +
      ',"model":' +
      JSON.stringify(opts.model) +
      ',"choices":[';
    this.sse = opts.stream ? new SseWriter(res) : null;
  }

  add(seq: Sequence): void {
    this.sequences.push(seq);
    this.remaining++;
  }

  get finished(): boolean {
    return this.done;
  }

  /** Start the response: SSE headers now, JSON at the end. */
  begin(extraHeaders: Record<string, string>): void {
    for (const k in extraHeaders) this.res.setHeader(k, extraHeaders[k]!);
    this.sse?.begin(SSE_HEADERS);
  }

  /** The engine produced something for one of our sequences. `now` is the step end on the engine clock. */
  onOutput(seq: Sequence, out: RequestOutput, now: number): void {
    if (seq.finishReason !== null || this.done) return;
    const ids = out.newTokenIds;
    const n = ids.length;
    const m = this.opts.metrics;
    if (n > 0) {
      if (seq.firstTokenTime < 0) {
        seq.firstTokenTime = now;
        seq.numCachedTokens = out.numCachedTokens;
        m.observeFirstToken(now - seq.arrivalTime, seq.numPromptTokens);
        if (n > 1) m.observeTokens(n - 1, 0);
      } else {
        m.observeTokens(n, now - seq.lastTokenTime);
      }
      seq.lastTokenTime = now;
    }
    let finish: FinishReason | null = out.finishReason;
    const ts = seq.textStream;
    let delta = '';
    for (let i = 0; i < n && !ts.stopped; i++) delta += ts.push(ids[i]!);
    if (!ts.stopped && finish !== null) delta += ts.finish();
    seq.numGenerated = ts.numTokens;
    if (ts.stopped) {
      finish = 'stop';
      seq.stopReason = ts.stopReason;
    }
    // A stop string the engine did not know about ended the text: free the engine's sequence.
    if (finish !== null && out.finishReason === null) this.opts.abort(seq.engineId);
    if (this.opts.stream) this.streamDelta(seq, delta, n, finish);
    else seq.text += delta;
    if (finish !== null) this.finish(seq, finish, out);
  }

  private streamDelta(seq: Sequence, delta: string, n: number, finish: FinishReason | null): void {
    seq.pending += delta;
    seq.pendingTokens += n;
    if (finish === null && seq.pendingTokens < this.opts.streamInterval) return;
    if (finish === null && seq.pending === '' && seq.started) return;
    if (finish === null && seq.started && !this.opts.continuousUsage) {
      // The chunk of almost every token: only the text differs from the sequence's previous one.
      const kind = this.opts.kind;
      seq.framePrefix ??= Buffer.from(
        this.chunkHead + '{"index":' + seq.index + (kind === 'chat' ? ',"delta":{"content":' : ',"text":'),
      );
      this.sse!.writeParts(
        seq.framePrefix,
        JSON.stringify(seq.pending),
        kind === 'chat' ? CHAT_SUFFIX : COMPLETION_SUFFIX,
      );
      seq.pending = '';
      seq.pendingTokens = 0;
      return;
    }
    let chunk: string;
    const reason = finish === null ? 'null' : finish === 'abort' ? '"abort"' : '"' + finish + '"';
    const stopReason =
      seq.stopReason === null
        ? 'null'
        : typeof seq.stopReason === 'number'
          ? String(seq.stopReason)
          : JSON.stringify(seq.stopReason);
    if (this.opts.kind === 'chat') {
      if (!seq.started) {
        seq.started = true;
        // The first chunk of a choice carries the role, as vLLM sends it.
        this.sse!.write(
          this.chunkHead +
            '{"index":' +
            seq.index +
            ',"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n',
        );
      }
      chunk =
        this.chunkHead +
        '{"index":' +
        seq.index +
        ',"delta":' +
        (seq.pending === '' ? '{}' : '{"content":' + JSON.stringify(seq.pending) + '}') +
        ',"logprobs":null,"finish_reason":' +
        reason +
        ',"stop_reason":' +
        stopReason +
        '}]';
    } else {
      let text = seq.pending;
      if (!seq.started) {
        seq.started = true;
        text = seq.echoText + text;
      }
      chunk =
        this.chunkHead +
        '{"index":' +
        seq.index +
        ',"text":' +
        JSON.stringify(text) +
        ',"logprobs":null,"finish_reason":' +
        reason +
        ',"stop_reason":' +
        stopReason +
        '}]';
    }
    if (this.opts.continuousUsage && this.opts.includeUsage) {
      chunk += ',"usage":' + JSON.stringify(this.seqUsage(seq));
    }
    this.sse!.write(chunk + '}\n\n');
    seq.pending = '';
    seq.pendingTokens = 0;
  }

  private seqUsage(seq: Sequence): Record<string, number> {
    const prompt = seq.numPromptTokens;
    return {
      prompt_tokens: prompt,
      completion_tokens: seq.numGenerated,
      total_tokens: prompt + seq.numGenerated,
    };
  }

  private finish(seq: Sequence, reason: FinishReason, out: RequestOutput): void {
    seq.finishReason = reason;
    if (out.heldBlockIds !== undefined) seq.heldBlockIds = out.heldBlockIds;
    const t = out.timings;
    if (t) {
      this.opts.metrics.observeFinished({
        finishReason: reason,
        numPromptTokens: seq.numPromptTokens,
        numGenerationTokens: seq.numGenerated,
        maxTokens: seq.maxTokens,
        timings: t,
      });
    } else if (seq.firstTokenTime >= 0) {
      // Ended by a stop string: the engine was told to abort, so the timings are ours.
      this.opts.metrics.observeFinished({
        finishReason: reason,
        numPromptTokens: seq.numPromptTokens,
        numGenerationTokens: seq.numGenerated,
        maxTokens: seq.maxTokens,
        timings: {
          arrivalTime: seq.arrivalTime,
          firstScheduledTime: seq.arrivalTime,
          firstTokenTime: seq.firstTokenTime,
          lastTokenTime: seq.lastTokenTime,
          finishedTime: seq.lastTokenTime,
        },
      });
    }
    if (--this.remaining === 0) this.complete();
  }

  /** Usage over all sequences: prompts are counted once each, not once per choice. */
  usage(): Record<string, unknown> {
    let prompt = 0;
    for (const p of this.opts.promptTokens) prompt += p;
    let completion = 0;
    let cached = 0;
    const cachedSeen = new Set<number>();
    for (const s of this.sequences) {
      completion += s.numGenerated;
      if (!cachedSeen.has(s.promptIndex)) {
        cachedSeen.add(s.promptIndex);
        cached += s.numCachedTokens;
      }
    }
    const usage: Record<string, unknown> = {
      prompt_tokens: prompt,
      total_tokens: prompt + completion,
      completion_tokens: completion,
    };
    usage.prompt_tokens_details = this.opts.promptTokenDetails ? { cached_tokens: cached } : null;
    return usage;
  }

  private complete(): void {
    if (this.done) return;
    this.done = true;
    const o = this.opts;
    if (this.sse !== null) {
      if (o.includeUsage) {
        this.sse.write(
          'data: {"id":' +
            JSON.stringify(o.id) +
            ',"object":"' +
            (o.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion') +
            '","created":' +
            o.created +
            ',"model":' +
            JSON.stringify(o.model) +
            ',"choices":[],"usage":' +
            JSON.stringify(this.usage()) +
            '}\n\n',
        );
      }
      this.sse.end(SSE_DONE);
    } else {
      const body = JSON.stringify(this.finalBody());
      this.res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      this.res.end(body);
    }
    o.onDone(this);
  }

  private finalBody(): Record<string, unknown> {
    const o = this.opts;
    const seqs = [...this.sequences].sort((a, b) => a.index - b.index);
    const kvTransferParams =
      o.transferParams !== null && seqs.length === 1 ? o.transferParams(seqs[0]!) : null;
    if (o.kind === 'chat') {
      return {
        id: o.id,
        object: 'chat.completion',
        created: o.created,
        model: o.model,
        choices: seqs.map((s) => ({
          index: s.index,
          message: {
            role: 'assistant',
            content: s.text,
            refusal: null,
            reasoning_content: null,
            tool_calls: [],
          },
          logprobs: null,
          finish_reason: s.finishReason,
          stop_reason: s.stopReason,
        })),
        usage: this.usage(),
        prompt_logprobs: null,
        kv_transfer_params: kvTransferParams,
      };
    }
    return {
      id: o.id,
      object: 'text_completion',
      created: o.created,
      model: o.model,
      choices: seqs.map((s) => ({
        index: s.index,
        text: s.echoText + s.text,
        logprobs: null,
        finish_reason: s.finishReason,
        stop_reason: s.stopReason,
        prompt_logprobs: null,
      })),
      usage: this.usage(),
      kv_transfer_params: kvTransferParams,
    };
  }

  /** The client went away: stop everything still running. */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    for (const s of this.sequences) {
      if (s.finishReason === null) {
        s.finishReason = 'abort';
        this.opts.abort(s.engineId);
      }
    }
    this.opts.onDone(this);
  }
}
