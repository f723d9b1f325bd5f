/**
 * The request as plugins see it: identity, models, headers (which PreRequest plugins may add to, e.g.
 * `x-prefiller-host-port`), the body parsed once at the edge, and the per-request `CycleState`.
 */
import type { CycleState } from './cycle-state.js';

export type RequestKind =
  | 'completions'
  | 'chat-completions'
  | 'completions-render'
  | 'chat-completions-render'
  | 'responses'
  | 'conversations'
  | 'embeddings'
  | 'other';

/** A completions prompt in any of the shapes the API allows. */
export type PromptInput = string | readonly string[] | readonly number[] | readonly (readonly number[])[];

export interface ChatMessageLike {
  readonly role: string;
  readonly content?: unknown;
}

export interface RequestBody {
  readonly kind: RequestKind;
  /** The decoded JSON object; null when the body was not interpreted (passthrough). */
  readonly json: Readonly<Record<string, unknown>> | null;
  /** The bytes as received: forwarded unchanged unless the model was rewritten. */
  readonly raw: Buffer;
  readonly model: string;
  readonly stream: boolean;
  readonly prompt?: PromptInput;
  readonly messages?: readonly ChatMessageLike[];
  readonly tools?: unknown;
  /** `input` of the responses and embeddings APIs, `items` of conversations. */
  readonly input?: unknown;
  /** `max_tokens`, `max_completion_tokens` or `max_output_tokens`, when set. */
  readonly maxTokens?: number;
  readonly cacheSalt?: string;
}

export interface InferenceRequest {
  readonly requestId: string;
  /** The request path without its query, e.g. `/v1/chat/completions`. */
  readonly path: string;
  /** `model` as the client sent it. */
  readonly incomingModel: string;
  /** The model the request is routed for (after rewrites). */
  readonly targetModel: string;
  /** Lower-cased names. Plugins may set headers here for the upstream request. */
  readonly headers: Record<string, string>;
  readonly body: RequestBody;
  readonly fairnessId: string;
  readonly priority: number;
  readonly requestSizeBytes: number;
  readonly state: CycleState;
  /** Monotonic ms when the request arrived. */
  readonly receivedAt: number;
  /** When true the scheduler keeps a full decision record for this request. */
  readonly recordDecision: boolean;
}
