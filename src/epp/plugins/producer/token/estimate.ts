/**
 * The `estimate` tokenizer backend (upstream `tokenizer/estimate.go`): no tokenizer, the user input's
 * bytes zero-padded to a multiple of 4 and read as little-endian uint32 pseudo-tokens (≈ 4 bytes a
 * token). What is serialized, per API: completions → the prompt text (several strings → one prompt
 * each; token ids pass through); chat → JSON of `tools` (when non-empty), then each message's `role`
 * and content text (a string, or the text of its `text` blocks); responses → JSON of
 * `[{instructions}, {tools}, {input}]` (the first two when present); conversations → JSON of `items`;
 * embeddings → JSON of `input` (token ids pass through).
 *
 * The ids only serve content-locality hashing. Malformed bodies never throw: whatever is readable is
 * used, the rest is skipped. A prompt is one allocation, written by Buffer (no per-character JS).
 */
import type { TokenizedRequest } from '../../../framework/data-keys.js';
import type { RequestBody } from '../../../framework/request.js';

export const BACKEND_ESTIMATE = 'estimate';

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const EMPTY: TokenizedRequest = Object.freeze({ tokenCount: 0, prompts: [], backend: BACKEND_ESTIMATE });

export function estimateTokens(body: RequestBody): TokenizedRequest {
  const json = body.json;
  switch (body.kind) {
    case 'completions':
    case 'completions-render':
      return fromPrompts(completionPrompts(body.prompt ?? json?.prompt));
    case 'chat-completions':
    case 'chat-completions-render':
      return fromPrompts(
        one(packStrings(chatParts(body.messages ?? json?.messages, body.tools ?? json?.tools))),
      );
    case 'responses': {
      const combined: Record<string, unknown>[] = [];
      const instructions = json?.instructions;
      const tools = body.tools ?? json?.tools;
      if (instructions != null) combined.push({ instructions });
      if (tools != null) combined.push({ tools });
      combined.push({ input: body.input ?? json?.input ?? null });
      return fromPrompts(one(packStrings([stringify(combined)])));
    }
    case 'conversations': {
      const items = body.input ?? json?.items;
      return items == null ? EMPTY : fromPrompts(one(packStrings([stringify(items)])));
    }
    case 'embeddings': {
      const input = body.input ?? json?.input;
      if (input == null) return EMPTY;
      const ids = tokenIdPrompts(input);
      return fromPrompts(ids ?? one(packStrings([stringify(input)])));
    }
    default:
      return EMPTY;
  }
}

/** `parts` concatenated as UTF-8, zero-padded to a multiple of 4, as little-endian uint32s. */
export function packStrings(parts: readonly string[]): Uint32Array {
  let units = 0;
  for (let i = 0; i < parts.length; i++) units += parts[i]!.length;
  if (units === 0) return new Uint32Array(0);
  // Guess that the text is ASCII (one byte a UTF-16 unit), with 4 bytes to spare: if at least 4 are
  // left after writing, nothing was cut. Only text that outgrows the guess pays for measuring its
  // UTF-8 length (Buffer.byteLength costs as much as the write) and writing again. Unzeroed memory:
  // zeroing 400 KB costs more than the write; the padding is zeroed below.
  let bytes = Buffer.allocUnsafeSlow(align4(units + 4));
  let written = writeAll(bytes, parts);
  if (written > bytes.length - 4) {
    let exact = 0;
    for (let i = 0; i < parts.length; i++) exact += Buffer.byteLength(parts[i]!, 'utf8');
    bytes = Buffer.allocUnsafeSlow(align4(exact));
    written = writeAll(bytes, parts);
  }
  bytes.fill(0, written);
  const out = new Uint32Array(bytes.buffer, bytes.byteOffset, align4(written) >>> 2);
  if (!LITTLE_ENDIAN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    for (let i = 0; i < out.length; i++) out[i] = view.getUint32(4 * i, true);
  }
  return out;
}

function writeAll(bytes: Buffer, parts: readonly string[]): number {
  let at = 0;
  for (let i = 0; i < parts.length && at < bytes.length; i++) at += bytes.write(parts[i]!, at, 'utf8');
  return at;
}

const align4 = (n: number): number => (n + 3) & ~3;

export function fromPrompts(prompts: Uint32Array[], backend = BACKEND_ESTIMATE): TokenizedRequest {
  const kept = prompts.filter((p) => p.length > 0);
  let count = 0;
  for (const p of kept) count += p.length;
  return { tokenCount: count, prompts: kept, backend };
}

/** Token ids given by the client (`[1, 2]` or `[[1, 2], [3]]`), or null when `v` is not that shape. */
export function tokenIdPrompts(v: unknown): Uint32Array[] | null {
  if (!Array.isArray(v) || v.length === 0) return null;
  if (isIdArray(v)) return [Uint32Array.from(v as number[])];
  if (v.every((p) => Array.isArray(p) && isIdArray(p)))
    return (v as number[][]).map((p) => Uint32Array.from(p));
  return null;
}

function completionPrompts(prompt: unknown): Uint32Array[] {
  if (prompt == null) return [];
  if (typeof prompt === 'string') return [packStrings([prompt])];
  const ids = tokenIdPrompts(prompt);
  if (ids !== null) return ids;
  if (Array.isArray(prompt) && prompt.every((p) => typeof p === 'string')) {
    return (prompt as string[]).map((p) => packStrings([p]));
  }
  // Not a shape the API allows: still route on what it says.
  return [packStrings([stringify(prompt)])];
}

function chatParts(messages: unknown, tools: unknown): string[] {
  const parts: string[] = [];
  if (Array.isArray(tools) && tools.length > 0) parts.push(stringify(tools));
  if (!Array.isArray(messages)) return parts;
  for (const m of messages as unknown[]) {
    if (typeof m !== 'object' || m === null) continue;
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role === 'string') parts.push(role);
    if (typeof content === 'string') parts.push(content);
    else if (Array.isArray(content)) {
      for (const block of content as unknown[]) {
        if (typeof block !== 'object' || block === null) continue;
        const { type, text } = block as { type?: unknown; text?: unknown };
        if (type === 'text' && typeof text === 'string') parts.push(text);
      }
    }
  }
  return parts;
}

function isIdArray(v: unknown[]): boolean {
  if (v.length === 0) return false;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 0xffffffff) return false;
  }
  return true;
}

function one(p: Uint32Array): Uint32Array[] {
  return [p];
}

function stringify(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return '';
  }
}
