/** The prompt assembly the shared-prefix and chat workloads share. */
import { beforeAll, describe, expect, it } from 'vitest';
import { fixed } from '../../src/bench/workload/distribution.js';
import { PromptAssembler } from '../../src/bench/workload/prompt.js';
import { WordPool } from '../../src/bench/workload/words.js';
import { BenchConfigError } from '../../src/bench/errors.js';
import { Rng } from '../../src/core/rng.js';
import { loadTokenizer, type LlmdTokenizer } from '../../src/engine/tokenizer/tokenizer.js';
import type { WorkloadRequest } from '../../src/bench/workload/workload.js';

let tk: LlmdTokenizer;
beforeAll(async () => {
  tk = await loadTokenizer();
});

const request = (session: number | null, m: { messages: WorkloadRequest['messages'] }): WorkloadRequest => ({
  index: 0,
  messages: m.messages,
  promptTokens: 0,
  questionTokens: 5,
  maxTokens: 1,
  group: null,
  session,
  turn: 0,
});

describe('prompt assembly', () => {
  it('draws questions of exact length, deterministically for a seed', () => {
    const p = new PromptAssembler(WordPool.of(tk), 'a prompt');
    const a = p.question(new Rng(3), fixed(12));
    expect(a.tokens).toBe(12);
    expect(tk.encode(a.text, { addSpecialTokens: false })).toHaveLength(12);
    expect(p.question(new Rng(3), fixed(12))).toEqual(a);
  });

  it('sends a system prompt and a question alone, or after the session’s history', () => {
    const pool = WordPool.of(tk);
    const p = new PromptAssembler(pool, 'a prompt');
    const system = () => ({ text: pool.text(new Rng(1), 20), tokens: 20 });
    const q1 = p.question(new Rng(2), fixed(5));
    const single = p.assemble(system, q1, null);
    expect(single.messages.map((m) => m.role)).toEqual(['system', 'user']);
    expect(single.promptTokens).toBe(25);
    const first = p.assemble(system, q1, 4);
    expect(first.messages).toEqual(single.messages);
    p.answered(request(4, first), ' yes', 1);
    const q2 = p.question(new Rng(5), fixed(5));
    const second = p.assemble(system, q2, 4);
    expect(second.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(second.promptTokens).toBe(20 + 5 + 1 + 5);
    p.endSession(4);
    expect(p.assemble(system, q2, 4).promptTokens).toBe(25);
  });

  it('checks the first prompt against the tokenizer, once', () => {
    const pool = WordPool.of(tk);
    const p = new PromptAssembler(pool, 'a test prompt');
    const q = p.question(new Rng(2), fixed(5));
    const wrong = () => ({ text: 'x', tokens: 7 });
    expect(() => p.assemble(wrong, q, null)).toThrow(BenchConfigError);
    expect(() => p.assemble(wrong, q, null)).not.toThrow();
    expect(() => new PromptAssembler(pool, 'a test prompt').assemble(wrong, q, 1)).toThrow(
      /a test prompt of 12 tokens encodes to 6/,
    );
  });
});
