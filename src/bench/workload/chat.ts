/**
 * Synthetic multi-turn conversations: `num_conversations` run side by side, each with its own system
 * prompt of `system_prompt_len` tokens and `turns` user turns of `user_len` tokens (optionally
 * distributed), asking `output_len` tokens per answer. Every turn resends the whole history (system,
 * earlier questions and the server's answers), so each turn's prompt starts with the previous one — the
 * shape that rewards prefix-cache-aware routing of a session.
 *
 * Request i is turn (i div N) mod turns of conversation slot i mod N; after its last turn a slot starts a
 * new conversation (new system prompt), seeded by the slot and the conversation's number.
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

export const ChatSchema = z
  .object({
    type: z.literal('chat'),
    num_conversations: z.number().int().positive().default(64),
    turns: z.number().int().positive().default(5),
    system_prompt_len: z.number().int().positive().default(256),
    user_len: z.number().int().positive().default(128),
    output_len: z.number().int().positive().default(128),
    user_distribution: DistributionSchema.optional(),
    output_distribution: DistributionSchema.optional(),
  })
  .strict();
export type ChatConfig = z.output<typeof ChatSchema>;

export class ChatWorkload implements Workload {
  readonly kind = 'chat';
  readonly needsText = true;
  private readonly pool: WordPool;
  private readonly users: Distribution;
  private readonly outputs: Distribution;
  private readonly prompts: PromptAssembler;

  constructor(
    private readonly cfg: ChatConfig,
    tokenizer: LlmdTokenizer,
    private readonly seed: number,
  ) {
    this.pool = WordPool.of(tokenizer);
    this.prompts = new PromptAssembler(this.pool, 'a chat prompt');
    this.users = cfg.user_distribution ?? fixed(cfg.user_len);
    this.outputs = cfg.output_distribution ?? fixed(cfg.output_len);
  }

  next(index: number): WorkloadRequest {
    const n = this.cfg.num_conversations;
    const slot = index % n;
    const round = Math.floor(index / n);
    const turn = round % this.cfg.turns;
    const conversation = Math.floor(round / this.cfg.turns);
    // Sessions are numbered across the run: slot, then the slot's later conversations.
    const session = conversation * n + slot;
    if (turn === 0 && conversation > 0) this.prompts.endSession(session - n);
    const rng = new Rng(seedFrom(`chat:${session}:${turn}`, this.seed));
    const question = this.prompts.question(rng, this.users);
    const maxTokens = sampleLength(this.outputs, rng);
    const system = (): PromptPart => ({
      text: this.pool.text(
        new Rng(seedFrom(`chat-system:${session}`, this.seed)),
        this.cfg.system_prompt_len,
      ),
      tokens: this.cfg.system_prompt_len,
    });
    const { messages, promptTokens } = this.prompts.assemble(system, question, session);
    return {
      index,
      messages,
      promptTokens,
      questionTokens: question.tokens,
      maxTokens,
      group: null,
      session,
      turn,
    };
  }

  onResponse(req: WorkloadRequest, text: string, outputTokens: number): void {
    this.prompts.answered(req, text, outputTokens);
  }

  describe(): WorkloadDescription {
    const c = this.cfg;
    const u = describeDistribution(this.users);
    return {
      source: 'chat',
      input_seq_len: plus(c.system_prompt_len, u),
      output_seq_len: describeDistribution(this.outputs),
      multi_turn: { enabled: true },
      parameters: { ...c },
    };
  }
}
