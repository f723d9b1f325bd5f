import { beforeAll, describe, expect, it } from 'vitest';

import { Rng } from '../../../src/core/rng.js';
import { OutputTextStream, type OutputTextOptions } from '../../../src/engine/output/output-text-stream.js';
import { loadTokenizer, type LlmdTokenizer } from '../../../src/engine/tokenizer/tokenizer.js';

let qwen: LlmdTokenizer;

beforeAll(async () => {
  qwen = await loadTokenizer();
});

function run(ids: readonly number[], options: OutputTextOptions): { text: string; stream: OutputTextStream } {
  const stream = new OutputTextStream(qwen, options);
  let text = '';
  for (const id of ids) {
    text += stream.push(id);
    if (stream.stopped) break;
  }
  text += stream.finish();
  return { text, stream };
}

function ids(text: string): number[] {
  return qwen.encode(text, { addSpecialTokens: false });
}

describe('OutputTextStream', () => {
  it('gives the whole text when nothing stops it', () => {
    const { text, stream } = run(ids('Hello there, world.'), {});
    expect(text).toBe('Hello there, world.');
    expect(stream.stopped).toBe(false);
    expect(stream.stopReason).toBeNull();
    expect(stream.numTokens).toBe(ids('Hello there, world.').length);
  });

  it('stops at a stop string that spans tokens and counts the token that completed it', () => {
    const all = ids('The answer is 42. Done and more text.');
    const { text, stream } = run(all, { stop: ['. Done'] });
    expect(text).toBe('The answer is 42');
    expect(stream.stopReason).toBe('. Done');
    expect(stream.numTokens).toBeLessThan(all.length);
  });

  it('keeps the stop string with include_stop_str_in_output', () => {
    const { text } = run(ids('alpha beta gamma'), { stop: 'beta', includeStopStrInOutput: true });
    expect(text).toBe('alpha beta');
  });

  it('stops on a stop token id and drops its text', () => {
    const all = ids('one two three four');
    const stopId = all[2] as number;
    const { text, stream } = run(all, { stopTokenIds: [stopId] });
    expect(text).toBe(qwen.decode(all.slice(0, 2)));
    expect(stream.stopReason).toBe(stopId);
    expect(stream.numTokens).toBe(3);
  });

  it('keeps the stop token text with include_stop_str_in_output', () => {
    const all = ids('one two three four');
    const { text } = run(all, { stopTokenIds: [all[2] as number], includeStopStrInOutput: true });
    expect(text).toBe(qwen.decode(all.slice(0, 3)));
  });

  it('ignores stop strings and stop tokens before min_tokens', () => {
    const all = ids('a. b. c. d.');
    const early = run(all, { stop: '.' });
    expect(early.text).toBe('a');
    const late = run(all, { stop: '.', minTokens: 3 });
    expect(late.text).toBe('a. b');
    const dot = all[1] as number;
    const tokenLate = run(all, { stopTokenIds: [dot], minTokens: 2 });
    expect(tokenLate.stream.numTokens).toBe(4);
  });

  it('releases a held-back partial stop string when the sequence ends', () => {
    const { text, stream } = run(ids('the end is <'), { stop: '<stop>' });
    expect(text).toBe('the end is <');
    expect(stream.stopped).toBe(false);
  });

  it('stops on a stop string completed by the text a finished sequence releases', () => {
    // The character is split over tokens, so its text only appears at the flush.
    const all = ids('go 𝄞');
    expect(qwen.tokenText(all[all.length - 1] as number)).toBeUndefined();
    const { text, stream } = run(all.slice(0, -1), { stop: '\uFFFD' });
    expect(text).toBe('go ');
    expect(stream.stopped).toBe(true);
  });

  it('matches decode-then-cut for random token streams, stops and splits', () => {
    const rng = new Rng(4242);
    const vocabText = [
      'The',
      ' cat',
      ' sat',
      '.',
      ' on',
      ' the',
      ' mat',
      '!',
      ' 日本',
      '😀',
      ' é',
      '\n',
      ' a',
      'b',
    ];
    const pool = [...new Set(vocabText.flatMap(ids))];
    const stopPool = ['.', ' the', 'at', 'mat!', '\n ', 'b.', '日', 'zz'];
    for (let round = 0; round < 400; round++) {
      const seq: number[] = [];
      for (let i = rng.int(0, 40); i > 0; i--) seq.push(pool[rng.int(0, pool.length - 1)] as number);
      const stops = Array.from(
        { length: rng.int(0, 2) },
        () => stopPool[rng.int(0, stopPool.length - 1)] as string,
      );
      const include = rng.next() < 0.3;
      const { text, stream } = run(seq, { stop: stops, includeStopStrInOutput: include });

      // Reference: decode all tokens, cut at the first stop string to complete.
      const full = qwen.decode(seq);
      let at = -1;
      let end = -1;
      for (const s of stops) {
        const idx = full.indexOf(s);
        if (idx >= 0 && (at < 0 || idx + s.length < end || (idx + s.length === end && idx < at))) {
          at = idx;
          end = idx + s.length;
        }
      }
      expect(text).toBe(at < 0 ? full : full.slice(0, include ? end : at));
      expect(stream.stopped).toBe(at >= 0);
      if (at >= 0) {
        // The stopping token is the one whose text completed the stop string.
        expect(qwen.decode(seq.slice(0, stream.numTokens)).length).toBeGreaterThanOrEqual(end);
        expect(qwen.decode(seq.slice(0, stream.numTokens - 1)).length).toBeLessThan(end);
      }
    }
  });
});
