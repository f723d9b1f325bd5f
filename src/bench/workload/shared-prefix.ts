/**
 * inference-perf's `shared_prefix` workload: `num_groups` system prompts of exactly `system_prompt_len`
 * tokens, each shared by `num_prompts_per_group` prompts that add a question of `question_len` tokens;
 * `output_len` tokens are asked for (`max_tokens`, with `ignore_eos` they are all generated).
 *
 * Request i goes to prompt (session) s = i mod (groups × prompts per group), whose group is s mod groups
 * and which is the (s div groups)-th prompt of its group; so consecutive requests visit different groups,
 * and after every prompt was sent once the sequence repeats. With `enable_multi_turn_chat` each prompt is
 * a user session: round r = i div sessions asks a new question after the history of the earlier rounds.
 */
import { z } from 'zod';
import { Rng, seedFrom } from '../../core/rng.js';
import type { LlmdTokenizer } from '../../engine/tokenizer/tokenizer.js';
import {
  describeDistribution,
  plus,
  DistributionSchema,
  fixed,
  sampleLength,
  type Distribution,
} from './distribution.js';
import { PromptAssembler, type PromptPart } from './prompt.js';
import type { Workload, WorkloadDescription, WorkloadRequest } from './workload.js';
import { WordPool } from './words.js';

export const SharedPrefixSchema = z
  .object({
    type: z.enum(['shared-prefix', 'shared_prefix']),
    num_groups: z.number().int().positive(),
    num_prompts_per_group: z.number().int().positive(),
    system_prompt_len: z.number().int().positive(),
    question_len: z.number().int().positive(),
    output_len: z.number().int().positive(),
    question_distribution: DistributionSchema.optional(),
    output_distribution: DistributionSchema.optional(),
    enable_multi_turn_chat: z.boolean().default(false),
  })
  .strict();
export type SharedPrefixConfig = z.output<typeof SharedPrefixSchema>;

export class SharedPrefixWorkload implements Workload {
  readonly kind = 'shared_prefix';
  readonly needsText: boolean;
  private readonly pool: WordPool;
  private readonly prefixes = new Map<number, string>();
  private readonly questions: Distribution;
  private readonly outputs: Distribution;
  private readonly prompts: PromptAssembler;
  private readonly sessions: number;

  constructor(
    private readonly cfg: SharedPrefixConfig,
    tokenizer: LlmdTokenizer,
    private readonly seed: number,
  ) {
    this.pool = WordPool.of(tokenizer);
    this.prompts = new PromptAssembler(this.pool, 'a shared-prefix prompt');
    this.questions = cfg.question_distribution ?? fixed(cfg.question_len);
    this.outputs = cfg.output_distribution ?? fixed(cfg.output_len);
    this.needsText = cfg.enable_multi_turn_chat;
    this.sessions = cfg.num_groups * cfg.num_prompts_per_group;
  }

  /** The group's system prompt (exactly `system_prompt_len` tokens). */
  prefix(group: number): string {
    let p = this.prefixes.get(group);
    if (p === undefined) {
      p = this.pool.text(new Rng(seedFrom(`prefix:${group}`, this.seed)), this.cfg.system_prompt_len);
      this.prefixes.set(group, p);
    }
    return p;
  }

  next(index: number): WorkloadRequest {
    const session = index % this.sessions;
    const round = Math.floor(index / this.sessions);
    const group = session % this.cfg.num_groups;
    // Single-turn rounds resend the same prompt; multi-turn rounds ask a new question each.
    const qRound = this.cfg.enable_multi_turn_chat ? round : 0;
    const question = this.prompts.question(
      new Rng(seedFrom(`question:${session}:${qRound}`, this.seed)),
      this.questions,
    );
    const maxTokens = sampleLength(this.outputs, new Rng(seedFrom(`output:${session}:${round}`, this.seed)));
    const system = (): PromptPart => ({ text: this.prefix(group), tokens: this.cfg.system_prompt_len });
    const multiTurn = this.cfg.enable_multi_turn_chat;
    const { messages, promptTokens } = this.prompts.assemble(system, question, multiTurn ? session : null);
    return {
      index,
      messages,
      promptTokens,
      questionTokens: question.tokens,
      maxTokens,
      group,
      session,
      turn: multiTurn ? round : 0,
    };
  }

  onResponse(req: WorkloadRequest, text: string, outputTokens: number): void {
    if (this.needsText) this.prompts.answered(req, text, outputTokens);
  }

  describe(): WorkloadDescription {
    const c = this.cfg;
    const q = describeDistribution(this.questions);
    return {
      source: 'shared_prefix',
      input_seq_len: plus(c.system_prompt_len, q),
      output_seq_len: describeDistribution(this.outputs),
      multi_turn: { enabled: c.enable_multi_turn_chat },
      parameters: { ...c, type: 'shared_prefix' },
    };
  }
}
