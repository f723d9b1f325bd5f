import { beforeAll, describe, expect, it } from 'vitest';

import { Rng } from '../../../src/core/rng.js';
import { IncrementalDetokenizer } from '../../../src/engine/output/incremental-detokenizer.js';
import { loadTokenizer, type LlmdTokenizer } from '../../../src/engine/tokenizer/tokenizer.js';
import { writeTinyTokenizer } from '../tokenizer/tiny-tokenizer.js';

let qwen: LlmdTokenizer;
let tiny: LlmdTokenizer;

beforeAll(async () => {
  qwen = await loadTokenizer();
  tiny = await loadTokenizer(await writeTinyTokenizer());
});

function stream(
  tok: LlmdTokenizer,
  ids: readonly number[],
  prompt?: readonly number[],
  skip = true,
): string[] {
  const d = new IncrementalDetokenizer(tok, { promptTokenIds: prompt, skipSpecialTokens: skip });
  const deltas = ids.map((id) => d.push(id));
  deltas.push(d.flush());
  return deltas;
}

describe('IncrementalDetokenizer', () => {
  it('streams ASCII text token by token', () => {
    const text = 'The quick brown fox jumps over the lazy dog.';
    const ids = qwen.encode(text, { addSpecialTokens: false });
    const deltas = stream(qwen, ids);
    expect(deltas.join('')).toBe(text);
    expect(deltas.slice(0, -1).every((d) => d.length > 0)).toBe(true);
  });

  it('holds back a multi-byte character until its last byte arrives', () => {
    const text = 'a😀b';
    const ids = qwen.encode(text, { addSpecialTokens: false });
    const deltas = stream(qwen, ids);
    expect(deltas.join('')).toBe(text);
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
    expect(deltas).toContain('😀');
  });

  it('never emits U+FFFD for CJK and emoji text split over byte-level tokens', () => {
    const text = '日本語のテキストと絵文字 🎉🎊 と éàü, 𝄞 音楽.';
    const ids = qwen.encode(text, { addSpecialTokens: false });
    const deltas = stream(qwen, ids);
    expect(deltas.join('')).toBe(text);
    for (const d of deltas) expect(d).not.toContain('\uFFFD');
  });

  it('emits the replacement character at the end for a character that never completes', () => {
    const ids = qwen.encode('😀', { addSpecialTokens: false });
    const partial = ids.slice(0, -1);
    const deltas = stream(qwen, partial);
    expect(deltas.slice(0, -1).join('')).toBe('');
    expect(deltas.join('')).toBe(qwen.decode(partial));
  });

  it('skips special tokens by default and keeps them when asked', () => {
    const ids = qwen.encode('<|im_start|>hi<|im_end|>', { addSpecialTokens: false });
    expect(stream(qwen, ids).join('')).toBe('hi');
    expect(stream(qwen, ids, undefined, false).join('')).toBe('<|im_start|>hi<|im_end|>');
  });

  it('keeps the space of a SentencePiece token by decoding with context', () => {
    // "▁there" alone decodes to "there"; after "hi" it is " there".
    expect(stream(tiny, [7, 16]).join('')).toBe('hi there');
    expect(stream(tiny, [16], [0, 7]).join('')).toBe(' there');
  });

  it('gives the same text as decoding everything at once, for random ids', () => {
    const rng = new Rng(99);
    const pieces = ['héllo', ' 日本', '😀', ' world', 'ü', '🎉x', '\n', ' Привет', '<|im_end|>', 'ab'];
    const pool = [...new Set(pieces.flatMap((p) => qwen.encode(p, { addSpecialTokens: false })))];
    for (let round = 0; round < 300; round++) {
      const n = rng.int(1, 30);
      const ids: number[] = [];
      for (let i = 0; i < n; i++) {
        // Mostly tokens of real text, sometimes any id at all.
        ids.push(
          rng.next() < 0.8 ? (pool[rng.int(0, pool.length - 1)] as number) : rng.int(0, qwen.maxTokenId),
        );
      }
      const skip = rng.next() < 0.5;
      expect(stream(qwen, ids, undefined, skip).join('')).toBe(qwen.decode(ids, { skipSpecialTokens: skip }));
    }
  });
});
