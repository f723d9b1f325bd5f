/**
 * Parses a request body once, at the edge, into what the plugins read (upstream `openai-parser` and
 * `passthrough-parser`). The API kind comes from the longest matching path suffix; OpenAI bodies must
 * be JSON objects with a `model` string. Field types beyond that are not judged here — the model server
 * validates its own API — so a wrongly typed optional field is simply not used for routing.
 */
import { BadRequestError } from '../../core/errors.js';
import type { ChatMessageLike, PromptInput, RequestBody, RequestKind } from '../framework/request.js';

/** Longest suffix first, so `chat/completions/render` wins over `completions/render`. */
const SUFFIXES: readonly [string, RequestKind][] = [
  ['/chat/completions/render', 'chat-completions-render'],
  ['/completions/render', 'completions-render'],
  ['/chat/completions', 'chat-completions'],
  ['/completions', 'completions'],
  ['/embeddings', 'embeddings'],
  ['/responses', 'responses'],
  ['/conversations', 'conversations'],
];

export function kindOfPath(path: string): RequestKind {
  let p = path;
  const q = p.indexOf('?');
  if (q >= 0) p = p.slice(0, q);
  if (p.endsWith('/')) p = p.slice(0, -1);
  for (const [suffix, kind] of SUFFIXES) if (p.endsWith(suffix)) return kind;
  return 'other';
}

export function parseRequestBody(path: string, raw: Buffer): RequestBody {
  const kind = kindOfPath(path);
  let json: unknown;
  try {
    json = raw.length === 0 ? undefined : JSON.parse(raw.toString('utf8'));
  } catch {
    if (kind === 'other') return passthrough(raw);
    throw new BadRequestError('Request body is not valid JSON.');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    if (kind === 'other') return passthrough(raw);
    throw new BadRequestError('Request body must be a JSON object.');
  }
  const o = json as Record<string, unknown>;
  const model = o.model;
  if (typeof model !== 'string' || model === '') {
    if (kind === 'other') return { ...passthrough(raw), json: o };
    throw new BadRequestError('model not found in request body', 'model');
  }
  const body: {
    -readonly [K in keyof RequestBody]: RequestBody[K];
  } = { kind, json: o, raw, model, stream: o.stream === true };
  const maxTokens = firstInt(o.max_completion_tokens, o.max_tokens, o.max_output_tokens);
  if (maxTokens !== undefined) body.maxTokens = maxTokens;
  if (typeof o.cache_salt === 'string') body.cacheSalt = o.cache_salt;
  switch (kind) {
    case 'completions':
    case 'completions-render':
      if (isPrompt(o.prompt)) body.prompt = o.prompt;
      break;
    case 'chat-completions':
    case 'chat-completions-render':
      if (Array.isArray(o.messages)) body.messages = o.messages.filter(isMessage);
      if (o.tools !== undefined && o.tools !== null) body.tools = o.tools;
      break;
    case 'responses':
      body.input = { instructions: o.instructions, tools: o.tools, input: o.input };
      break;
    case 'conversations':
      body.input = o.items;
      break;
    case 'embeddings':
      body.input = o.input;
      break;
    default:
      break;
  }
  return body;
}

function passthrough(raw: Buffer): RequestBody {
  return { kind: 'other', json: null, raw, model: '', stream: false };
}

function firstInt(...vs: unknown[]): number | undefined {
  for (const v of vs) if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  return undefined;
}

function isMessage(m: unknown): m is ChatMessageLike {
  return m !== null && typeof m === 'object' && typeof (m as { role?: unknown }).role === 'string';
}

function isPrompt(p: unknown): p is PromptInput {
  if (typeof p === 'string') return true;
  if (!Array.isArray(p) || p.length === 0) return false;
  const first: unknown = p[0];
  if (typeof first === 'string') return p.every((x) => typeof x === 'string');
  if (typeof first === 'number') return p.every((x) => Number.isInteger(x) && x >= 0);
  if (Array.isArray(first))
    return p.every((x) => Array.isArray(x) && x.every((y) => Number.isInteger(y) && y >= 0));
  return false;
}

/** The body with `model` replaced, for a rewritten target model; other bytes are not touched. */
export function withModel(body: RequestBody, model: string): Buffer {
  return Buffer.from(JSON.stringify({ ...body.json, model }));
}
