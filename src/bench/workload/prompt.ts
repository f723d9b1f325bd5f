/**
 * Turning a system prompt and a question into a request's messages, shared by the workloads that
 * have both (shared-prefix, chat): the question drawn at an exact token length, the system prompt
 * alone or, in a multi-turn session, the session's history (which starts with it), the first prompt
 * checked against the tokenizer once, and finished turns appended to their session.
 */
import type { Rng } from '../../core/rng.js';
import { sampleLength, type Distribution } from './distribution.js';
import { SessionHistory } from './sessions.js';
import type { ChatMessage, WorkloadRequest } from './workload.js';
import type { WordPool } from './words.js';

/** Text and its exact token count. */
export interface PromptPart {
  readonly text: string;
  readonly tokens: number;
}

export interface AssembledPrompt {
  readonly messages: ChatMessage[];
  readonly promptTokens: number;
}

export class PromptAssembler {
  private readonly history = new SessionHistory();
  private verified = false;

  /** `what` names the prompt in the error of a tokenizer that does not keep word prompts exact. */
  constructor(
    private readonly pool: WordPool,
    private readonly what: string,
  ) {}

  /** A question: its length drawn from `lengths`, then its words, both from `rng` (in that order). */
  question(rng: Rng, lengths: Distribution): PromptPart {
    const tokens = sampleLength(lengths, rng);
    return { text: this.pool.text(rng, tokens), tokens };
  }

  /**
   * The messages of one request: the system prompt and the question or, with a `session`, the
   * session's history so far (started from `system` on its first turn) and the question. `system`
   * must give the same prompt on every call (the workloads seed it by group or session).
   */
  assemble(system: () => PromptPart, question: PromptPart, session: number | null): AssembledPrompt {
    if (session === null) {
      const s = system();
      if (!this.verified) this.verify(s, question);
      return {
        messages: [
          { role: 'system', content: s.text },
          { role: 'user', content: question.text },
        ],
        promptTokens: s.tokens + question.tokens,
      };
    }
    // Built once more for the check, on the first request only.
    if (!this.verified) this.verify(system(), question);
    const h = this.history.get(session, system);
    return {
      messages: [...h.messages, { role: 'user', content: question.text }],
      promptTokens: h.tokens + question.tokens,
    };
  }

  /** A finished turn joins its session's history: its question, then the server's answer. */
  answered(req: WorkloadRequest, text: string, outputTokens: number): void {
    if (req.session === null) return;
    const q = req.messages[req.messages.length - 1]!;
    this.history.append(req.session, q.content, req.questionTokens, text, outputTokens);
  }

  /** The session's conversation ended: the next one under its number starts afresh. */
  endSession(session: number): void {
    this.history.reset(session);
  }

  /** The first prompt is encoded once, to catch a tokenizer that breaks the word pool's rule. */
  private verify(system: PromptPart, question: PromptPart): void {
    this.verified = true;
    this.pool.verify(system.text + question.text, system.tokens + question.tokens, this.what);
  }
}
