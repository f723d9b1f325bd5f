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

/** Usage of a complete JSON body; null when it is not JSON or carries none. */
export function usageOfJson(body: Buffer): Usage | null {
  if (body.indexOf(USAGE) < 0) return null;
  try {
    return usageOf(JSON.parse(body.toString('utf8')));
  } catch {
    return null;
  }
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
