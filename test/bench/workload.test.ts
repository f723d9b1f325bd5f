import { beforeAll, describe, expect, it } from 'vitest';
import { ChatWorkload, ChatSchema } from '../../src/bench/workload/chat.js';
import { createWorkload } from '../../src/bench/workload/index.js';
import { RandomSchema, RandomWorkload } from '../../src/bench/workload/random.js';
import { SharedPrefixSchema, SharedPrefixWorkload } from '../../src/bench/workload/shared-prefix.js';
import { promptText } from '../../src/bench/workload/workload.js';
import { WordPool } from '../../src/bench/workload/words.js';
import { Rng } from '../../src/core/rng.js';
import { loadTokenizer, type LlmdTokenizer } from '../../src/engine/tokenizer/tokenizer.js';

let tk: LlmdTokenizer;
const count = (text: string): number => tk.encode(text, { addSpecialTokens: false }).length;

beforeAll(async () => {
  tk = await loadTokenizer();
});

describe('word pool', () => {
  it('builds texts of exactly N tokens', () => {
    const pool = WordPool.of(tk);
    const rng = new Rng(1);
    for (const n of [1, 2, 17, 256, 1000]) expect(count(pool.text(rng, n))).toBe(n);
    expect(pool.ids.length).toBeGreaterThan(1000);
  });
});

const sp = (over: Record<string, unknown> = {}) =>
  SharedPrefixSchema.parse({
    type: 'shared-prefix',
    num_groups: 3,
    num_prompts_per_group: 2,
    system_prompt_len: 300,
    question_len: 40,
    output_len: 25,
    ...over,
  });

describe('shared-prefix workload', () => {
  it('prompts have exact lengths: system prompt + question', () => {
    const w = new SharedPrefixWorkload(sp(), tk, 7);
    for (let i = 0; i < 6; i++) {
      const r = w.next(i);
      expect(count(r.messages[0]!.content)).toBe(300);
      expect(count(r.messages[1]!.content)).toBe(40);
      expect(count(promptText(r))).toBe(340);
      expect(r.promptTokens).toBe(340);
      expect(r.maxTokens).toBe(25);
    }
  });

  it('groups share their system prompt; consecutive requests visit different groups', () => {
    const w = new SharedPrefixWorkload(sp(), tk, 7);
    const reqs = Array.from({ length: 6 }, (_, i) => w.next(i));
    expect(reqs.map((r) => r.group)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(reqs.map((r) => r.session)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(reqs[0]!.messages[0]!.content).toBe(reqs[3]!.messages[0]!.content);
    expect(reqs[0]!.messages[0]!.content).not.toBe(reqs[1]!.messages[0]!.content);
    // Different prompts of a group differ in their question only.
    expect(reqs[0]!.messages[1]!.content).not.toBe(reqs[3]!.messages[1]!.content);
    const questions = new Set(reqs.map((r) => r.messages[1]!.content));
    expect(questions.size).toBe(6);
    // After every prompt was sent once, the sequence repeats.
    expect(promptText(w.next(6))).toBe(promptText(reqs[0]!));
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = new SharedPrefixWorkload(sp(), tk, 7);
    const b = new SharedPrefixWorkload(sp(), tk, 7);
    const c = new SharedPrefixWorkload(sp(), tk, 8);
    for (let i = 0; i < 4; i++) expect(promptText(a.next(i))).toBe(promptText(b.next(i)));
    expect(promptText(c.next(0))).not.toBe(promptText(a.next(0)));
  });

  it('samples question and output lengths from distributions, clamped', () => {
    const cfg = sp({
      question_distribution: { mean: 40, std_dev: 10, min: 30, max: 50 },
      output_distribution: { mean: 25, std_dev: 5, min: 20, max: 30 },
    });
    const w = new SharedPrefixWorkload(cfg, tk, 1);
    const qs = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const r = w.next(i);
      const q = count(r.messages[1]!.content);
      expect(q).toBe(r.questionTokens);
      expect(q).toBeGreaterThanOrEqual(30);
      expect(q).toBeLessThanOrEqual(50);
      expect(r.maxTokens).toBeGreaterThanOrEqual(20);
      expect(r.maxTokens).toBeLessThanOrEqual(30);
      qs.add(q);
    }
    expect(qs.size).toBeGreaterThan(1);
    expect(w.describe().input_seq_len).toEqual({
      distribution: 'gaussian',
      value: 340,
      std_dev: 10,
      min: 330,
      max: 350,
    });
  });

  it('multi-turn: a session accumulates its turns and keeps its prefix', () => {
    const w = new SharedPrefixWorkload(sp({ enable_multi_turn_chat: true }), tk, 3);
    const first = w.next(0);
    expect(first.messages.map((m) => m.role)).toEqual(['system', 'user']);
    w.onResponse(first, ' the answer', 2);
    for (let i = 1; i < 6; i++) w.next(i);
    const second = w.next(6); // session 0, round 1
    expect(second.session).toBe(0);
    expect(second.turn).toBe(1);
    expect(second.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(second.messages[2]!.content).toBe(' the answer');
    expect(promptText(second).startsWith(promptText(first))).toBe(true);
    expect(second.messages[3]!.content).not.toBe(first.messages[1]!.content);
    expect(second.promptTokens).toBe(300 + 40 + 2 + 40);
    expect(w.describe().multi_turn.enabled).toBe(true);
  });
});

describe('random workload', () => {
  it('fixed ISL/OSL are exact', () => {
    const w = new RandomWorkload(
      RandomSchema.parse({ type: 'random', input_len: 123, output_len: 9 }),
      tk,
      0,
    );
    for (let i = 0; i < 3; i++) {
      const r = w.next(i);
      expect(count(promptText(r))).toBe(123);
      expect(r.maxTokens).toBe(9);
    }
    expect(promptText(w.next(0))).not.toBe(promptText(w.next(1)));
  });

  it('range_ratio draws uniformly from [L(1−r), L(1+r)], deterministically', () => {
    const cfg = RandomSchema.parse({ type: 'random', input_len: 100, output_len: 50, range_ratio: 0.5 });
    const a = new RandomWorkload(cfg, tk, 4);
    const b = new RandomWorkload(cfg, tk, 4);
    const lens = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const r = a.next(i);
      expect(count(promptText(r))).toBe(r.promptTokens);
      expect(r.promptTokens).toBeGreaterThanOrEqual(50);
      expect(r.promptTokens).toBeLessThanOrEqual(150);
      expect(r.maxTokens).toBeGreaterThanOrEqual(25);
      expect(r.maxTokens).toBeLessThanOrEqual(75);
      expect(promptText(b.next(i))).toBe(promptText(r));
      lens.add(r.promptTokens);
    }
    expect(lens.size).toBeGreaterThan(3);
    expect(a.describe().input_seq_len).toEqual({ distribution: 'uniform', value: 100, min: 50, max: 150 });
  });
});

describe('chat workload', () => {
  it('conversations resend their history and restart after the last turn', () => {
    const cfg = ChatSchema.parse({
      type: 'chat',
      num_conversations: 2,
      turns: 2,
      system_prompt_len: 50,
      user_len: 10,
      output_len: 5,
    });
    const w = new ChatWorkload(cfg, tk, 0);
    const r0 = w.next(0);
    const r1 = w.next(1);
    expect(count(r0.messages[0]!.content)).toBe(50);
    expect(count(r0.messages[1]!.content)).toBe(10);
    expect(r0.messages[0]!.content).not.toBe(r1.messages[0]!.content);
    w.onResponse(r0, ' ok', 1);
    const r2 = w.next(2); // conversation 0, turn 1
    expect(r2.turn).toBe(1);
    expect(r2.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(r2.promptTokens).toBe(50 + 10 + 1 + 10);
    w.next(3);
    const r4 = w.next(4); // slot 0 starts a new conversation
    expect(r4.turn).toBe(0);
    expect(r4.session).toBe(2);
    expect(r4.messages).toHaveLength(2);
    expect(r4.messages[0]!.content).not.toBe(r0.messages[0]!.content);
  });

  it('is built by the factory with defaults', () => {
    const w = createWorkload(ChatSchema.parse({ type: 'chat' }), tk, 0);
    expect(w.kind).toBe('chat');
    expect(w.needsText).toBe(true);
    expect(w.next(0).promptTokens).toBe(256 + 128);
  });
});
