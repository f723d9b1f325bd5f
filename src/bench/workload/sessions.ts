/**
 * Multi-turn sessions: each session's context starts as its system prompt and accumulates the turns
 * that have completed (question, then the server's answer). A turn sent before its predecessor finished
 * carries the history completed so far, as a user typing ahead would.
 */
import type { ChatMessage } from './workload.js';

interface Session {
  messages: ChatMessage[];
  tokens: number;
}

export class SessionHistory {
  private readonly sessions = new Map<number, Session>();

  /** The session's messages so far (system prompt first), and their token count. */
  get(session: number, system: () => { text: string; tokens: number }): Session {
    let s = this.sessions.get(session);
    if (s === undefined) {
      const { text, tokens } = system();
      s = { messages: [{ role: 'system', content: text }], tokens };
      this.sessions.set(session, s);
    }
    return s;
  }

  /** A finished turn joins the session's history. */
  append(
    session: number,
    question: string,
    questionTokens: number,
    answer: string,
    answerTokens: number,
  ): void {
    const s = this.sessions.get(session);
    if (s === undefined) return;
    s.messages.push({ role: 'user', content: question }, { role: 'assistant', content: answer });
    s.tokens += questionTokens + answerTokens;
  }

  /** Forget a session (a conversation that ended), so the next one with its number starts afresh. */
  reset(session: number): void {
    this.sessions.delete(session);
  }
}
