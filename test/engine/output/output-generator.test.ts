import { beforeAll, describe, expect, it } from 'vitest';

import { CORPUS_SENTENCES } from '../../../src/engine/output/corpus.js';
import { IncrementalDetokenizer } from '../../../src/engine/output/incremental-detokenizer.js';
import {
  createOutputGenerator,
  sequenceSeed,
  type OutputGenerator,
} from '../../../src/engine/output/output-generator.js';
import { loadTokenizer, type LlmdTokenizer } from '../../../src/engine/tokenizer/tokenizer.js';

let qwen: LlmdTokenizer;
let random: OutputGenerator;
let echo: OutputGenerator;

beforeAll(async () => {
  qwen = await loadTokenizer();
  random = createOutputGenerator({ tokenizer: qwen, mode: 'random', seed: 0, maxModelLen: 4096 });
  echo = createOutputGenerator({ tokenizer: qwen, mode: 'echo', seed: 0, maxModelLen: 4096 });
});

function prompt(text: string): number[] {
  return qwen.encode(text, { addSpecialTokens: true });
}

describe('the corpus', () => {
  it('is plain ASCII, so every token streams without decoding', () => {
    for (const s of CORPUS_SENTENCES) {
      expect(/^[\x20-\x7e]+$/.test(s)).toBe(true);
      for (const id of qwen.encode(' ' + s, { addSpecialTokens: false }))
        expect(qwen.tokenText(id)).toBeDefined();
    }
  });
});

describe('random mode', () => {
  it('gives the same tokens for the same prompt and seed', () => {
    const req = { promptTokenIds: prompt('Tell me a story.'), maxTokens: 200, seed: 42 };
    expect(random.plan(req)).toEqual(random.plan(req));
  });

  it('gives different tokens for a different seed, prompt or sequence index', () => {
    const base = { promptTokenIds: prompt('Tell me a story.'), maxTokens: 100, ignoreEos: true };
    const a = random.plan({ ...base, seed: 1 });
    expect(random.plan({ ...base, seed: 2 })).not.toEqual(a);
    expect(random.plan({ ...base, seed: 1, promptTokenIds: prompt('Tell me a joke.') })).not.toEqual(a);
    expect(random.plan({ ...base, seed: 1, sequenceIndex: 1 })).not.toEqual(a);
  });

  it('uses the generator seed when the request has none', () => {
    const req = { promptTokenIds: prompt('Hi'), maxTokens: 50, ignoreEos: true };
    const other = createOutputGenerator({ tokenizer: qwen, mode: 'random', seed: 7, maxModelLen: 4096 });
    expect(random.plan(req)).toEqual(random.plan({ ...req, seed: 0 }));
    expect(other.plan(req)).not.toEqual(random.plan(req));
  });

  it('produces readable English that starts at a sentence', () => {
    const out = random.plan({ promptTokenIds: prompt('Hello'), maxTokens: 60, ignoreEos: true, seed: 3 });
    const text = qwen.decode(out);
    expect(/^[A-Z]/.test(text)).toBe(true);
    expect(CORPUS_SENTENCES.some((s) => text.startsWith(s.slice(0, Math.min(s.length, text.length))))).toBe(
      true,
    );
    expect(/^[\x20-\x7e]+$/.test(text)).toBe(true);
  });

  it('wraps around the corpus for long outputs and counts tokens exactly', () => {
    const out = random.plan({ promptTokenIds: prompt('x'), maxTokens: 3000, ignoreEos: true, seed: 5 });
    expect(out).toHaveLength(3000);
    const text = qwen.decode(out);
    expect(text).not.toContain('..');
    // Streaming the planned ids gives the decoded text, on the fast path.
    const d = new IncrementalDetokenizer(qwen);
    let streamed = '';
    for (const id of out) streamed += d.push(id);
    expect(streamed + d.flush()).toBe(text);
  });

  it('respects max_tokens, min_tokens and ignore_eos', () => {
    for (let seed = 0; seed < 300; seed++) {
      const p = prompt(`prompt ${seed}`);
      const n = random.plan({ promptTokenIds: p, maxTokens: 150, seed }).length;
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(150);
      const m = random.plan({ promptTokenIds: p, maxTokens: 150, minTokens: 100, seed }).length;
      expect(m).toBeGreaterThanOrEqual(100);
      expect(random.plan({ promptTokenIds: p, maxTokens: 150, ignoreEos: true, seed })).toHaveLength(150);
    }
  });

  it('ends at max_tokens for about 15% of requests', () => {
    let atMax = 0;
    for (let seed = 0; seed < 2000; seed++) {
      if (random.plan({ promptTokenIds: prompt('q'), maxTokens: 300, seed }).length === 300) atMax++;
    }
    expect(atMax / 2000).toBeGreaterThan(0.12);
    expect(atMax / 2000).toBeLessThan(0.18);
  });

  it('stays within the context window when max_tokens is not given', () => {
    const small = createOutputGenerator({ tokenizer: qwen, mode: 'random', seed: 0, maxModelLen: 40 });
    const p = prompt('one two three four five six seven eight nine ten');
    for (let seed = 0; seed < 200; seed++) {
      const n = small.plan({ promptTokenIds: p, seed }).length;
      expect(n).toBeGreaterThanOrEqual(1);
      expect(p.length + n).toBeLessThanOrEqual(40);
    }
    expect(small.plan({ promptTokenIds: new Array(40).fill(1), seed: 1 })).toEqual([]);
  });

  it('treats a max_tokens that is only the context limit like no max_tokens', () => {
    let atMax = 0;
    for (let seed = 0; seed < 500; seed++) {
      const n = random.plan({
        promptTokenIds: prompt('q'),
        maxTokens: 60,
        explicitMaxTokens: false,
        seed,
      }).length;
      expect(n).toBeLessThanOrEqual(60);
      if (n === 60) atMax++;
    }
    // Gaussian around 40 rejected above 60: max is almost never hit, unlike the histogram's 15%.
    expect(atMax).toBeLessThan(15);
  });

  it('ends the plan at the token that completes a stop string', () => {
    const base = { promptTokenIds: prompt('Go'), maxTokens: 400, ignoreEos: true, seed: 11 };
    const full = random.plan(base);
    const cut = random.plan({ ...base, stop: '.' });
    expect(cut.length).toBeLessThan(full.length);
    expect(cut).toEqual(full.slice(0, cut.length));
    expect(qwen.decode(cut).endsWith('.')).toBe(true);
    expect(qwen.decode(cut.slice(0, -1))).not.toContain('.');
  });

  it('ends the plan at a stop token id once min_tokens is reached', () => {
    const base = { promptTokenIds: prompt('Go'), maxTokens: 400, ignoreEos: true, seed: 11 };
    const full = random.plan(base);
    const target = full[10] as number;
    const first = full.indexOf(target);
    expect(random.plan({ ...base, stopTokenIds: [target] })).toHaveLength(first + 1);
    const later = random.plan({ ...base, stopTokenIds: [target], minTokens: first + 1 });
    expect(later.length).toBeGreaterThan(first + 1);
  });
});

describe('echo mode', () => {
  it('repeats the echo text, defaulting to the prompt', () => {
    const p = prompt('Say this back to me.');
    expect(echo.plan({ promptTokenIds: p })).toEqual(p);
    const last = qwen.encode('only the last message', { addSpecialTokens: false });
    expect(echo.plan({ promptTokenIds: p, echoTokenIds: last })).toEqual(last);
  });

  it('cuts the echo at max_tokens and at the context window', () => {
    const p = prompt('one two three four five six seven eight');
    expect(echo.plan({ promptTokenIds: p, maxTokens: 3 })).toEqual(p.slice(0, 3));
    const tight = createOutputGenerator({
      tokenizer: qwen,
      mode: 'echo',
      seed: 0,
      maxModelLen: p.length + 2,
    });
    expect(tight.plan({ promptTokenIds: p })).toEqual(p.slice(0, 2));
  });

  it('echoes non-ASCII text that streams without replacement characters', () => {
    const text = 'Grüße aus 東京 🗼!';
    const ids = qwen.encode(text, { addSpecialTokens: false });
    const out = echo.plan({ promptTokenIds: ids });
    const d = new IncrementalDetokenizer(qwen);
    const deltas = out.map((id) => d.push(id));
    deltas.push(d.flush());
    expect(deltas.join('')).toBe(text);
    for (const delta of deltas) expect(delta).not.toContain('\uFFFD');
  });
});

describe('sequenceSeed', () => {
  it('depends on every input', () => {
    const s = sequenceSeed([1, 2, 3], 0, 0);
    expect(sequenceSeed([1, 2, 3], 0, 0)).toBe(s);
    expect(sequenceSeed([1, 2, 4], 0, 0)).not.toBe(s);
    expect(sequenceSeed([1, 2, 3], 1, 0)).not.toBe(s);
    expect(sequenceSeed([1, 2, 3], 0, 1)).not.toBe(s);
    expect(sequenceSeed([1, 2, 3], 2 ** 40, 0)).not.toBe(sequenceSeed([1, 2, 3], 0, 0));
  });
});
