/**
 * The benchmark's HTTP client: streaming completions or chat completions (`stream: true`,
 * `stream_options.include_usage`) over an undici keep-alive pool, timing every output chunk.
 *
 * The SSE stream is scanned as bytes: a data line that carries the output field in its compact form
 * (`"text":"` or `"content":"`, as vLLM and llmd write it) is a token event without being parsed, and
 * only the rare others (the usage chunk, an error, a server that writes JSON differently) go through
 * JSON.parse. Per chunk the client costs one clock read and, for a non-empty token, one store into the
 * request's inter-token-gap array; response text is decoded only when a multi-turn workload needs it.
 */
import { STATUS_CODES } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Pool, type Dispatcher } from 'undici';
import { statusLabel, type RequestRecord } from './metrics.js';
import { promptText, type WorkloadRequest } from './workload/workload.js';

export type ApiKind = 'completions' | 'chat';

export interface ClientOptions {
  /** Base URL of the server or gateway (`http://host:port`, optionally ending in `/v1`). */
  url: string;
  model: string;
  api: ApiKind;
  /** Largest number of connections kept open (the in-flight cap). */
  connections: number;
  requestTimeoutMs: number;
  ignoreEos: boolean;
  /** Extra request headers (e.g. `authorization`). */
  headers?: Record<string, string>;
  /** Extra body fields merged into every request (e.g. `temperature`). */
  extraBody?: Record<string, unknown>;
}

/** A finished request: its measurements, and its output text when it was asked for. */
export type OnDone = (record: RequestRecord, text: string | null) => void;

const DATA = 0x64; // 'd'
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LF = 0x0a;
const CR = 0x0d;
const TEXT_FIELD = Buffer.from('"text":"');
const CONTENT_FIELD = Buffer.from('"content":"');
const DONE = Buffer.from('[DONE]');
const MAX_ERROR_BODY = 64 * 1024;

export class BenchClient {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly field: Buffer;
  private inFlight = 0;

  constructor(private readonly opts: ClientOptions) {
    const u = new URL(opts.url);
    let base = u.pathname.replace(/\/+$/, '');
    if (base.endsWith('/v1')) base = base.slice(0, -3);
    this.path = base + (opts.api === 'chat' ? '/v1/chat/completions' : '/v1/completions');
    this.pool = new Pool(u.origin, {
      connections: opts.connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 600_000,
      headersTimeout: opts.requestTimeoutMs,
      bodyTimeout: opts.requestTimeoutMs,
    });
    this.headers = { 'content-type': 'application/json', ...(opts.headers ?? {}) };
    this.field = opts.api === 'chat' ? CONTENT_FIELD : TEXT_FIELD;
  }

  get active(): number {
    return this.inFlight;
  }

  /** The JSON body of a request. */
  body(req: WorkloadRequest): string {
    const o = this.opts;
    const body: Record<string, unknown> = { model: o.model };
    if (o.api === 'chat') body.messages = req.messages;
    else body.prompt = promptText(req);
    body.max_tokens = req.maxTokens;
    body.stream = true;
    body.stream_options = { include_usage: true };
    if (o.ignoreEos) body.ignore_eos = true;
    if (o.extraBody !== undefined) Object.assign(body, o.extraBody);
    return JSON.stringify(body);
  }

  /**
   * Send one request now; `record` (prefilled with index, stage and schedule) is completed and handed to
   * `done` when the response ends or fails.
   */
  send(req: WorkloadRequest, record: RequestRecord, wantText: boolean, done: OnDone): void {
    this.inFlight++;
    const handler = new StreamHandler(record, this.field, wantText, (r, t) => {
      this.inFlight--;
      done(r, t);
    });
    const body = this.body(req);
    record.sentMs = performance.now();
    const timer = setTimeout(() => handler.timeout(), this.opts.requestTimeoutMs);
    handler.timer = timer;
    this.pool.dispatch(
      { method: 'POST', path: this.path, headers: this.headers, body, blocking: false },
      handler,
    );
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Closes every connection at once, in-flight requests failing. */
  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}

/** Per-request state: SSE line scanning, chunk timing, usage. */
class StreamHandler implements Dispatcher.DispatchHandler {
  timer: NodeJS.Timeout | null = null;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private statusText = '';
  private carry: Buffer | null = null;
  private lastTokenMs = NaN;
  private chunks = 0;
  private usagePrompt = -1;
  private usageCompletion = -1;
  private streamError: string | null = null;
  private errorBody = '';
  private readonly parts: string[] | null;
  private finished = false;
  private timedOut = false;

  constructor(
    private readonly rec: RequestRecord,
    private readonly field: Buffer,
    wantText: boolean,
    private readonly done: OnDone,
  ) {
    this.parts = wantText ? [] : null;
  }

  timeout(): void {
    this.timedOut = true;
    this.controller?.abort(new Error('request timeout'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.timedOut) controller.abort(new Error('request timeout'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    _headers: unknown,
    statusMessage?: string,
  ): void {
    this.status = statusCode;
    this.statusText = statusMessage ?? '';
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.status !== 200) {
      if (this.errorBody.length < MAX_ERROR_BODY) this.errorBody += chunk.toString('utf8');
      return;
    }
    const now = performance.now();
    let buf = chunk;
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let pos = 0;
    const len = buf.length;
    while (pos < len) {
      const nl = buf.indexOf(LF, pos);
      if (nl < 0) {
        this.carry = Buffer.from(buf.subarray(pos));
        break;
      }
      let end = nl;
      if (end > pos && buf[end - 1] === CR) end--;
      // "data:" (5 bytes), then an optional space.
      if (end - pos > 5 && buf[pos] === DATA && buf[pos + 4] === 0x3a) {
        let s = pos + 5;
        if (buf[s] === 0x20) s++;
        this.event(buf, s, end, now);
      }
      pos = nl + 1;
    }
  }

  private event(buf: Buffer, s: number, e: number, now: number): void {
    if (e - s === 6 && buf.compare(DONE, 0, 6, s, e) === 0) return;
    const f = buf.indexOf(this.field, s);
    if (f >= 0 && f < e) {
      const q = f + this.field.length;
      if (buf[q] === QUOTE) return; // empty text: not a token
      this.token(now);
      if (this.parts !== null) this.parts.push(readString(buf, q - 1, e));
      return;
    }
    this.slowEvent(buf.toString('utf8', s, e), now);
  }

  private slowEvent(text: string, now: number): void {
    let ev: unknown;
    try {
      ev = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof ev !== 'object' || ev === null) return;
    const o = ev as {
      choices?: { text?: unknown; delta?: { content?: unknown } }[];
      usage?: {
        prompt_tokens?: unknown;
        completion_tokens?: unknown;
        prompt_tokens_details?: { cached_tokens?: unknown } | null;
      } | null;
      error?: { message?: unknown } | string;
    };
    if (o.error !== undefined) {
      const msg = typeof o.error === 'string' ? o.error : String(o.error?.message ?? 'error');
      this.streamError = `stream error: ${msg.slice(0, 200)}`;
    }
    const c = Array.isArray(o.choices) ? o.choices[0] : undefined;
    if (c !== undefined) {
      const t = typeof c.text === 'string' ? c.text : c.delta?.content;
      if (typeof t === 'string' && t.length > 0) {
        this.token(now);
        this.parts?.push(t);
      }
    }
    const u = o.usage;
    if (u !== null && u !== undefined && typeof u === 'object') {
      if (typeof u.prompt_tokens === 'number') this.usagePrompt = u.prompt_tokens;
      if (typeof u.completion_tokens === 'number') this.usageCompletion = u.completion_tokens;
      const cached = u.prompt_tokens_details?.cached_tokens;
      if (typeof cached === 'number') {
        this.rec.cachedTokens = cached;
        this.rec.cachedReported = true;
      }
    }
  }

  private token(now: number): void {
    const r = this.rec;
    this.chunks++;
    if (Number.isNaN(r.firstTokenMs)) {
      r.firstTokenMs = now;
    } else {
      if (r.itlCount === r.itl.length) {
        const grown = new Float32Array(r.itl.length * 2);
        grown.set(r.itl);
        r.itl = grown;
      }
      r.itl[r.itlCount++] = now - this.lastTokenMs;
    }
    this.lastTokenMs = now;
  }

  onResponseEnd(): void {
    const r = this.rec;
    if (this.status === 200 && this.streamError === null) {
      this.finish(true, null);
      return;
    }
    if (this.status === 200) {
      this.finish(false, this.streamError);
      return;
    }
    r.status = this.status;
    this.finish(false, statusLabel(this.status, this.statusText || STATUS_CODES[this.status]));
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const code = (err as { code?: string }).code;
    const label = this.timedOut
      ? 'timeout'
      : code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT'
        ? 'timeout'
        : `connection error${code !== undefined ? ` (${code})` : ''}`;
    this.finish(false, label);
  }

  private finish(ok: boolean, error: string | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const r = this.rec;
    r.endMs = performance.now();
    r.status = this.status;
    r.ok = ok;
    r.error = error;
    if (this.usagePrompt >= 0) r.promptTokens = this.usagePrompt;
    r.outputTokens = this.usageCompletion >= 0 ? this.usageCompletion : this.chunks;
    this.done(r, this.parts === null ? null : this.parts.join(''));
  }
}

/** The JSON string literal starting at the quote `q` (bounded by `e`), decoded. */
function readString(buf: Buffer, q: number, e: number): string {
  let i = q + 1;
  while (i < e) {
    const b = buf[i]!;
    if (b === BACKSLASH) i += 2;
    else if (b === QUOTE) break;
    else i++;
  }
  try {
    return JSON.parse(buf.toString('utf8', q, i + 1)) as string;
  } catch {
    return '';
  }
}

/** A record for a request about to be sent. */
export function newRecord(
  index: number,
  stage: number,
  warmup: boolean,
  scheduledMs: number,
  req: WorkloadRequest,
): RequestRecord {
  return {
    index,
    stage,
    warmup,
    scheduledMs,
    sentMs: NaN,
    firstTokenMs: NaN,
    endMs: NaN,
    status: 0,
    ok: false,
    error: null,
    promptTokens: req.promptTokens,
    outputTokens: 0,
    cachedTokens: 0,
    cachedReported: false,
    itl: new Float32Array(Math.min(Math.max(req.maxTokens, 16), 4096)),
    itlCount: 0,
    group: req.group,
    session: req.session,
  };
}
