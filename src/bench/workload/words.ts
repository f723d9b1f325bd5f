/**
 * Prompts of an exact token length. The vocabulary gives a pool of words that are one token each with
 * their leading space (" house"); the tokenizer's pre-tokenizer splits text at those spaces, so N such
 * words concatenated are exactly N tokens, and any two such texts concatenated are the sum of their
 * lengths. A prompt is built from token ids and decoded, the way inference-perf builds them.
 */
import type { Rng } from '../../core/rng.js';
import type { LlmdTokenizer } from '../../engine/tokenizer/tokenizer.js';
import { BenchConfigError } from '../errors.js';

/** Words kept in the pool; the vocabulary's first (most frequent) qualifying words. */
const POOL_SIZE = 4096;
const WORD = /^ [a-z]{3,10}$/;

export class WordPool {
  /** Token ids of the pool's words, and their texts. */
  readonly ids: Int32Array;
  readonly texts: readonly string[];

  private constructor(
    ids: number[],
    texts: string[],
    private readonly tokenizer: LlmdTokenizer,
  ) {
    this.ids = Int32Array.from(ids);
    this.texts = texts;
  }

  /** The pool of a tokenizer (cached per tokenizer). */
  static of(tokenizer: LlmdTokenizer): WordPool {
    let pool = pools.get(tokenizer);
    if (pool === undefined) {
      pool = WordPool.build(tokenizer);
      pools.set(tokenizer, pool);
    }
    return pool;
  }

  /** Text of exactly `tokens` tokens, words drawn from `rng`. */
  text(rng: Rng, tokens: number): string {
    const parts = new Array<string>(tokens);
    const n = this.texts.length;
    for (let i = 0; i < tokens; i++) parts[i] = this.texts[rng.nextU32() % n]!;
    return parts.join('');
  }

  /** Throws unless `text` encodes to exactly `tokens` tokens (a tokenizer that breaks the pool's rule). */
  verify(text: string, tokens: number, what: string): void {
    const got = this.tokenizer.encode(text, { addSpecialTokens: false }).length;
    if (got !== tokens) {
      throw new BenchConfigError(
        `the tokenizer (${this.tokenizer.source}) does not keep word prompts exact: ${what} of ${tokens} tokens encodes to ${got}`,
        'tokenizer',
      );
    }
  }

  private static build(tk: LlmdTokenizer): WordPool {
    const ids: number[] = [];
    const texts: string[] = [];
    for (let id = 0; id <= tk.maxTokenId && ids.length < POOL_SIZE; id++) {
      if (tk.isSpecial(id)) continue;
      const text = tk.tokenText(id) ?? tk.decode([id], { skipSpecialTokens: false });
      if (!WORD.test(text)) continue;
      const enc = tk.encode(text, { addSpecialTokens: false });
      if (enc.length !== 1 || enc[0] !== id) continue;
      ids.push(id);
      texts.push(text);
    }
    if (ids.length < 64) {
      throw new BenchConfigError(
        `the tokenizer (${tk.source}) has too few single-token words (${ids.length}) to build prompts`,
        'tokenizer',
      );
    }
    return new WordPool(ids, texts, tk);
  }
}

const pools = new WeakMap<LlmdTokenizer, WordPool>();
