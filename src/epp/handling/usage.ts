/**
 * Token usage from a model server's response, for metrics and the response hooks (upstream
 * `parsers/openai`): `usage.{prompt_tokens,completion_tokens}` (or `input_tokens`/`output_tokens` of the
 * responses API) and `prompt_tokens_details.cached_tokens`. For SSE only the tail of the stream is
 * kept: vLLM sends usage in the last data event (`stream_options.include_usage`), and with continuous
 * usage stats the last event holds the final counts.
 */
import type { Usage } from '../framework/requestcontrol.js';

const USAGE = Buffer.from('"usage"');
/** Enough for the final usage event of any OpenAI-style stream. */
const TAIL_BYTES = 16 * 1024;

export function usageOf(value: unknown): Usage | null {
  if (value === null || typeof value !== 'object') return null;
  const u =
    (value as { usage?: unknown; response?: { usage?: unknown } }).usage ??
    (value as { response?: { usage?: unknown } }).response?.usage;
  if (u === null || typeof u !== 'object') return null;
  const o = u as Record<string, unknown>;
  const prompt = num(o.prompt_tokens) ?? num(o.input_tokens);
  const completion = num(o.completion_tokens) ?? num(o.output_tokens);
  if (prompt === undefined && completion === undefined) return null;
  const details = (o.prompt_tokens_details ?? o.prompt_token_details ?? o.input_tokens_details) as
    Record<string, unknown> | null | undefined;
  const cached = details && typeof details === 'object' ? num(details.cached_tokens) : undefined;
  return { promptTokens: prompt ?? 0, completionTokens: completion ?? 0, cachedTokens: cached ?? 0 };
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Usage of a complete JSON body; null when it carries none. Only the `usage` object is parsed: it sits
 * at the end of an OpenAI response, and parsing the whole body for it would cost more than the rest of
 * the relay.
 */
export function usageOfJson(body: Buffer): Usage | null {
  const at = body.lastIndexOf(USAGE);
  if (at < 0) return null;
  let i = at + USAGE.length;
  while (i < body.length && isSpace(body[i]!)) i++;
  if (body[i] !== COLON) return null;
  i++;
  while (i < body.length && isSpace(body[i]!)) i++;
  const end = objectEnd(body, i);
  if (end < 0) return null;
  try {
    return usageOf({ usage: JSON.parse(body.toString('utf8', i, end)) });
  } catch {
    return null;
  }
}

const COLON = 0x3a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Index just past the JSON object that starts at `start`, or -1. */
function objectEnd(b: Buffer, start: number): number {
  if (b[start] !== OPEN) return -1;
  let depth = 0;
  let inString = false;
  for (let i = start; i < b.length; i++) {
    const c = b[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN) depth++;
    else if (c === CLOSE && --depth === 0) return i + 1;
  }
  return -1;
}

/**
 * Follows an SSE stream chunk by chunk, keeping only its tail, and finds the last event that carries
 * usage when the stream ends.
 */
export class SseUsageTracker {
  private tail: Buffer = Buffer.alloc(0);
  private sawUsage = false;

  push(chunk: Buffer): void {
    if (!this.sawUsage && chunk.indexOf(USAGE) >= 0) this.sawUsage = true;
    if (!this.sawUsage) return;
    const total = this.tail.length + chunk.length;
    if (total <= TAIL_BYTES)
      this.tail = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk], total);
    else if (chunk.length >= TAIL_BYTES) this.tail = chunk.subarray(chunk.length - TAIL_BYTES);
    else this.tail = Buffer.concat([this.tail.subarray(total - TAIL_BYTES), chunk], TAIL_BYTES);
  }

  usage(): Usage | null {
    if (!this.sawUsage) return null;
    const lines = this.tail.toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i]!;
      if (!line.startsWith('data:') || !line.includes('"usage"')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') continue;
      try {
        const u = usageOf(JSON.parse(data));
        if (u !== null) return u;
      } catch {
        // A line cut by the tail window, or not JSON: look further back.
      }
    }
    return null;
  }
}
