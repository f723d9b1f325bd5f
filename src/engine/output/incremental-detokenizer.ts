/**
 * Token ids to streamed text deltas, the way vLLM's incremental detokenizer does it: decode a short
 * window of recent tokens twice (up to the last emitted token, and up to the newest) and emit the
 * difference, holding back while the newest text ends in U+FFFD (a multi-byte character split across
 * byte-level tokens). The window keeps one emitted token of context so tokenizers that strip a leading
 * space from the first token still decode spaces correctly.
 *
 * Fast path: when nothing is held back and the token's own text is context-free (`tokenText`), that
 * memoised text is the delta and no BPE decoding happens. Random-mode output always takes it.
 */
import type { LlmdTokenizer } from '../tokenizer/tokenizer.js';

/** vLLM starts the window with this many prompt tokens of context. */
export const PROMPT_CONTEXT_TOKENS = 5;

export interface DetokenizerOptions {
  /** Default true. */
  readonly skipSpecialTokens?: boolean | undefined;
  /** The prompt's token ids; its last few give the first output tokens their context. */
  readonly promptTokenIds?: readonly number[] | undefined;
}

export class IncrementalDetokenizer {
  private readonly tokenizer: LlmdTokenizer;
  private readonly skipSpecial: boolean;
  /** Context tokens from the prompt, then every output token. */
  private readonly ids: number[];
  /** Start of the decode window. */
  private prefixOffset: number;
  /** End of the text already emitted. */
  private readOffset: number;
  /** `decode(ids[prefixOffset:readOffset])`, kept so it is decoded once. */
  private prefixText = '';

  constructor(tokenizer: LlmdTokenizer, options?: DetokenizerOptions) {
    this.tokenizer = tokenizer;
    this.skipSpecial = options?.skipSpecialTokens ?? true;
    const prompt = options?.promptTokenIds;
    this.ids = prompt === undefined ? [] : prompt.slice(Math.max(0, prompt.length - PROMPT_CONTEXT_TOKENS));
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
    this.prefixText = this.ids.length === 0 ? '' : this.decode(0, this.readOffset);
  }

  /** Append one token; returns the text it completes ('' while held back). */
  push(id: number): string {
    const ids = this.ids;
    if (this.readOffset === ids.length) {
      const fast = this.skipSpecial && this.tokenizer.isSpecial(id) ? '' : this.tokenizer.tokenText(id);
      if (fast !== undefined) {
        ids.push(id);
        this.advance(fast);
        return fast;
      }
    }
    ids.push(id);
    const text = this.decode(this.prefixOffset, ids.length);
    if (text.length <= this.prefixText.length || text.charCodeAt(text.length - 1) === 0xfffd) return '';
    const delta = text.slice(this.prefixText.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = ids.length;
    this.prefixText =
      this.prefixOffset === this.readOffset ? '' : this.decode(this.prefixOffset, this.readOffset);
    return delta;
  }

  /** Text still held back (an incomplete character at the very end), for when the output ends. */
  flush(): string {
    const ids = this.ids;
    if (this.readOffset === ids.length) return '';
    const text = this.decode(this.prefixOffset, ids.length);
    const delta = text.length > this.prefixText.length ? text.slice(this.prefixText.length) : '';
    this.prefixOffset = this.readOffset;
    this.readOffset = ids.length;
    this.prefixText = this.decode(this.prefixOffset, this.readOffset);
    return delta;
  }

  /** Fast-path bookkeeping: the window becomes just the new token, whose text is `text`. */
  private advance(text: string): void {
    this.prefixOffset = this.ids.length - 1;
    this.readOffset = this.ids.length;
    this.prefixText = text;
  }

  private decode(from: number, to: number): string {
    return this.tokenizer.decode(this.ids.slice(from, to), { skipSpecialTokens: this.skipSpecial });
  }
}
