/**
 * One output sequence's text, token by token: incremental detokenization, then `stop_token_ids` and
 * stop strings, with vLLM's rules for where the output ends and what text it keeps. The server feeds
 * the engine's tokens in and sends the returned deltas; the concatenated deltas are the final text.
 *
 * Finish reason, as vLLM reports it: `stop` with `stopReason` when `stopped` is set (a stop string or
 * stop token, even if it came on the last allowed token), otherwise whatever the engine said.
 */
import type { LlmdTokenizer } from '../tokenizer/tokenizer.js';
import { IncrementalDetokenizer } from './incremental-detokenizer.js';
import { StopChecker } from './stop-checker.js';

export interface OutputTextOptions {
  readonly stop?: string | readonly string[] | null | undefined;
  readonly stopTokenIds?: readonly number[] | null | undefined;
  readonly includeStopStrInOutput?: boolean | undefined;
  /** Stop strings and stop tokens are ignored until this many tokens exist. */
  readonly minTokens?: number | undefined;
  /** Default true. */
  readonly skipSpecialTokens?: boolean | undefined;
  /** Context for the first output tokens' text. */
  readonly promptTokenIds?: readonly number[] | undefined;
}

const NO_STOP_TOKENS: ReadonlySet<number> = new Set();

export class OutputTextStream {
  /** Ended by a stop string or a stop token; later tokens are ignored. */
  stopped = false;
  /** The stop string or stop token id that ended the output (vLLM's `stop_reason`). */
  stopReason: string | number | null = null;
  /** Tokens taken in, the stopping token included (they count as generated). */
  numTokens = 0;

  private readonly detokenizer: IncrementalDetokenizer;
  private readonly checker: StopChecker;
  private readonly stopTokenIds: ReadonlySet<number>;
  private readonly includeStop: boolean;
  private readonly minTokens: number;

  constructor(tokenizer: LlmdTokenizer, options: OutputTextOptions = {}) {
    this.detokenizer = new IncrementalDetokenizer(tokenizer, options);
    this.includeStop = options.includeStopStrInOutput ?? false;
    this.checker = new StopChecker(options.stop, { includeStopStr: this.includeStop });
    const ids = options.stopTokenIds;
    this.stopTokenIds = ids == null || ids.length === 0 ? NO_STOP_TOKENS : new Set(ids);
    this.minTokens = options.minTokens ?? 0;
  }

  /** Take one generated token; returns the text to send now ('' while held back or after the stop). */
  push(id: number): string {
    if (this.stopped) return '';
    this.numTokens++;
    const check = this.numTokens > this.minTokens;
    if (check && this.stopTokenIds.has(id)) {
      this.stopped = true;
      this.stopReason = id;
      // The stop token's own text is dropped unless include_stop_str_in_output; the rest is final.
      let out = this.includeStop ? this.checker.append(this.detokenizer.push(id), true) : '';
      out += this.checker.append(this.detokenizer.flush(), true);
      if (this.checker.stopped) this.stopReason = this.checker.stopReason;
      else out += this.checker.flush();
      return out;
    }
    const out = this.checker.append(this.detokenizer.push(id), check);
    if (this.checker.stopped) {
      this.stopped = true;
      this.stopReason = this.checker.stopReason;
    }
    return out;
  }

  /** The engine finished the sequence (length or end of sequence): release any held-back text. */
  finish(): string {
    if (this.stopped) return '';
    let out = this.checker.append(this.detokenizer.flush(), this.numTokens > this.minTokens);
    if (this.checker.stopped) {
      this.stopped = true;
      this.stopReason = this.checker.stopReason;
      return out;
    }
    out += this.checker.flush();
    return out;
  }
}
