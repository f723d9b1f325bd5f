/**
 * What a workload is: a deterministic sequence of requests, built lazily in index order. A request is
 * a list of chat messages; the completions API sends their contents concatenated as the prompt.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface WorkloadRequest {
  /** Sequence number in the run. */
  index: number;
  messages: ChatMessage[];
  /** Tokens of the messages' contents (exact for generated text; answers counted as the server did). */
  promptTokens: number;
  /** Tokens of the last message (the new question), part of `promptTokens`. */
  questionTokens: number;
  maxTokens: number;
  /** The shared-prefix group, when the workload has groups. */
  group: number | null;
  /** The multi-turn session (conversation), when the workload has sessions. */
  session: number | null;
  /** The turn within the session (0-based). */
  turn: number;
}

/** How a workload describes itself in the report (llm-d report `scenario.load.standardized`). */
export interface WorkloadDescription {
  source: string;
  input_seq_len: { distribution: string; value: number; std_dev?: number; min?: number; max?: number };
  output_seq_len: { distribution: string; value: number; std_dev?: number; min?: number; max?: number };
  multi_turn: { enabled: boolean };
  /** The workload's own parameters, as given. */
  parameters: Record<string, unknown>;
}

export interface Workload {
  readonly kind: string;
  /** Whether the client must hand back each response's text (multi-turn history). */
  readonly needsText: boolean;
  /** The request with this index; called with indices in increasing order. */
  next(index: number): WorkloadRequest;
  /** A request finished successfully with this output (only when `needsText`). */
  onResponse(req: WorkloadRequest, text: string, outputTokens: number): void;
  describe(): WorkloadDescription;
}

/** The prompt the completions API sends. */
export function promptText(req: WorkloadRequest): string {
  const m = req.messages;
  if (m.length === 1) return m[0]!.content;
  let s = '';
  for (const x of m) s += x.content;
  return s;
}
