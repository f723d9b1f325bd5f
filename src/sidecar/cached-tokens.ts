/**
 * The decode answer's `usage.<details>.cached_tokens` set to the prefiller's count (llm-d PR #916): a
 * decoder that pulled the prompt's KV reports nearly all of it as cached, which is not what the client's
 * cache did. Applied to a whole JSON body or to each complete SSE `data:` line as it passes; everything
 * else, `data: [DONE]` included, goes through untouched, and nothing waits for more than its own line.
 */
import { JsonPatchError, scanObject, type JsonObject } from './json-patch.js';

const USAGE = Buffer.from('"usage"');
const LF = 0x0a;
const CR = 0x0d;

/**
 * `body` with the count rewritten, or null when it has no `usage` object (or is not a JSON object).
 * `detailsField` is `prompt_tokens_details`, or `input_tokens_details` for the Responses API.
 */
export function rewriteCachedTokens(body: Buffer, detailsField: string, cached: number): Buffer | null {
  if (body.indexOf(USAGE) < 0) return null;
  let obj: JsonObject;
  try {
    obj = scanObject(body);
  } catch (err) {
    if (err instanceof JsonPatchError) return null;
    throw err;
  }
  const usage = obj.object('usage');
  if (usage === undefined) return null;
  const details = usage.object(detailsField);
  const count = String(cached);
  const newDetails =
    details === undefined ? `{"cached_tokens":${count}}` : details.patch([['cached_tokens', count]]);
  return obj.patch([['usage', usage.patch([[detailsField, newDetails]])]]);
}

/** One SSE line (without its line ending) rewritten, or null when it is not a data line with usage. */
function rewriteLine(line: Buffer, detailsField: string, cached: number): Buffer | null {
  // `data:` then an optional space (WHATWG SSE); the JSON follows.
  if (line.length < 6 || line.toString('latin1', 0, 5) !== 'data:') return null;
  const start = line[5] === 0x20 ? 6 : 5;
  const out = rewriteCachedTokens(line.subarray(start), detailsField, cached);
  return out === null ? null : Buffer.concat([line.subarray(0, start), out]);
}

/** A line longer than this is passed on as it comes instead of being held for a rewrite. */
const MAX_LINE = 1024 * 1024;

/**
 * Rewrites a stream of SSE bytes. `push` returns what can be sent now — every complete line, rewritten
 * where needed — and holds back only an incomplete last line; `end` returns what is left.
 */
export class SseCachedTokensRewriter {
  private pending: Buffer | null = null;

  constructor(
    private readonly detailsField: string,
    private readonly cached: number,
  ) {}

  push(chunk: Buffer): Buffer {
    const pending = this.pending;
    // The usual chunk: whole events, no usage in them.
    if (pending === null && chunk.length > 0 && chunk[chunk.length - 1] === LF && chunk.indexOf(USAGE) < 0)
      return chunk;
    const buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    const lastLf = buf.lastIndexOf(LF);
    if (lastLf < 0) {
      if (buf.length > MAX_LINE) {
        this.pending = null;
        return buf;
      }
      this.pending = buf;
      return EMPTY;
    }
    this.pending = lastLf + 1 < buf.length ? buf.subarray(lastLf + 1) : null;
    const complete = buf.subarray(0, lastLf + 1);
    if (complete.indexOf(USAGE) < 0) return complete;
    const parts: Buffer[] = [];
    let from = 0;
    let copied = 0;
    while (from < complete.length) {
      const lf = complete.indexOf(LF, from);
      const end = lf > 0 && complete[lf - 1] === CR ? lf - 1 : lf;
      const line = complete.subarray(from, end);
      const rewritten = line.indexOf(USAGE) < 0 ? null : rewriteLine(line, this.detailsField, this.cached);
      if (rewritten !== null) {
        parts.push(complete.subarray(copied, from), rewritten);
        copied = end;
      }
      from = lf + 1;
    }
    if (parts.length === 0) return complete;
    parts.push(complete.subarray(copied));
    return Buffer.concat(parts);
  }

  end(): Buffer {
    const p = this.pending;
    this.pending = null;
    if (p === null) return EMPTY;
    // A last line without its newline: rewritten too, if it is a data line.
    return rewriteLine(p, this.detailsField, this.cached) ?? p;
  }
}

const EMPTY = Buffer.alloc(0);
