/**
 * The standalone gateway: the HTTP data plane Envoy is in a cluster. For each request it reads the
 * body once, lets the director schedule it, and relays it to the chosen model server over a keep-alive
 * pool — headers as the client sent them plus those the plugins set (`x-prefiller-host-port`), the body
 * bytes unchanged unless the model was rewritten — then streams the response back without buffering,
 * with backpressure both ways. A connection that fails before the server answered is retried on
 * another endpoint (scheduling again without the failed one). A client that goes away aborts the
 * upstream request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import {
  BadRequestError,
  LlmdError,
  NoEndpointsError,
  PayloadTooLargeError,
  UpstreamUnavailableError,
  asLlmdError,
  toErrorBody,
} from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Endpoint, EndpointSource } from '../framework/endpoint.js';
import type { ResponseInfo } from '../framework/requestcontrol.js';
import type { InferenceRequest } from '../framework/request.js';
import {
  DECISION_RESPONSE_HEADER,
  DROPPED_REASON_HEADER,
  type Director,
  type Scheduled,
} from '../handling/director.js';
import { SseUsageTracker, usageOfJson } from '../handling/usage.js';
import type { EppMetrics, RequestSeries } from '../metrics.js';
import { isConnectionError, type Upstreams } from './upstreams.js';
import { PoolModels } from './models.js';

/** RFC 9110 hop-by-hop headers, plus those the relay sets itself. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
]);

export interface GatewayOptions {
  readonly director: Director;
  readonly upstreams: Upstreams;
  readonly endpoints: EndpointSource;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly clock: () => number;
  readonly maxBodyBytes: number;
  /** Attempts per request across endpoints when connections fail. */
  readonly maxAttempts: number;
  /** Readiness: the gateway answers 503 on /health until the pool has been discovered. */
  readonly ready: () => boolean;
}

export class Gateway {
  private readonly o: GatewayOptions;
  private readonly models: PoolModels;

  constructor(opts: GatewayOptions) {
    this.o = opts;
    this.models = new PoolModels(opts.endpoints, opts.upstreams, opts.logger);
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    if (req.method === 'GET') {
      if (url === '/health' || url === '/healthz' || url === '/readyz') return this.health(res);
      if (url === '/v1/models') return void this.listModels(res);
      if (url.startsWith('/debug/decisions')) return this.decisions(url, res);
    }
    readBody(req, this.o.maxBodyBytes).then(
      (body) => this.onBody(req, res, url, body),
      (err: unknown) => sendError(res, asLlmdError(err), firstHeader(req, 'x-request-id')),
    );
  };

  private health(res: ServerResponse): void {
    const ok = this.o.ready() && this.o.endpoints.list().length > 0;
    sendJson(res, ok ? 200 : 503, {
      status: ok ? 'ok' : 'not ready',
      endpoints: this.o.endpoints.list().length,
    });
  }

  private async listModels(res: ServerResponse): Promise<void> {
    try {
      sendJson(res, 200, await this.models.list());
    } catch (err) {
      sendError(res, asLlmdError(err));
    }
  }

  private decisions(url: string, res: ServerResponse): void {
    const q = new URL(url, 'http://x').searchParams;
    const id = q.get('request_id');
    const limit = Math.min(Math.max(Number(q.get('limit') ?? 20) || 20, 1), 256);
    const all = this.o.director.recentDecisions(256);
    sendJson(res, 200, id !== null ? all.filter((d) => d.requestId === id) : all.slice(-limit));
  }

  private onBody(req: IncomingMessage, res: ServerResponse, url: string, body: Buffer): void {
    const director = this.o.director;
    const headers = flatHeaders(req);
    let ireq: InferenceRequest;
    try {
      ireq = director.buildRequest({ path: url, headers, body });
    } catch (err) {
      const e = asLlmdError(err);
      this.o.metrics.requestRejected(this.o.metrics.labels('', '', 'default-flow', 0), e.code);
      return sendError(res, e, headers['x-request-id']);
    }
    const call = new Call(this, req, res, ireq, url, director.labels(ireq));
    this.o.metrics.requestStarted(call.labels, body.length);
    call.attempt();
  }

  /** @internal used by Call */
  get options(): GatewayOptions {
    return this.o;
  }
}

/** One client request through the gateway, across its attempts. */
class Call {
  attempts = 0;
  readonly exclude = new Set<Endpoint>();
  clientGone = false;
  finished = false;
  /** The destination of the last attempt that could not connect. */
  lastFailed: string | null = null;
  private current: Attempt | null = null;

  constructor(
    readonly gw: Gateway,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly ireq: InferenceRequest,
    readonly url: string,
    readonly labels: RequestSeries,
  ) {
    res.once('close', () => {
      if (!res.writableFinished) {
        this.clientGone = true;
        this.current?.abort();
      }
    });
  }

  attempt(): void {
    const o = this.gw.options;
    this.attempts++;
    o.director.schedule(this.ireq, { exclude: this.exclude }).then(
      (s) => {
        if (this.clientGone) {
          o.director.responseComplete(this.ireq, aborted(s.targets[0] ?? null));
          this.done(0);
          return;
        }
        this.send(s);
      },
      (err: unknown) => {
        // Every endpoint left was tried and refused: say so, rather than that the pool is empty.
        if (err instanceof NoEndpointsError && this.lastFailed !== null) {
          this.fail(
            new UpstreamUnavailableError(`Could not reach a model server (last tried ${this.lastFailed}).`),
            err,
          );
          return;
        }
        this.fail(asLlmdError(err), err);
      },
    );
  }

  private send(s: Scheduled): void {
    const o = this.gw.options;
    const dest = s.destinations[0]!;
    const endpoint = s.targets[0]!;
    const a = new Attempt(this, s, endpoint, dest);
    this.current = a;
    o.upstreams.pool(dest).dispatch(
      {
        path: this.url,
        method: (this.req.method ?? 'POST') as Dispatcher.HttpMethod,
        headers: upstreamHeaders(this.ireq.headers),
        body: s.body.length > 0 || this.req.method === 'POST' ? s.body : null,
      },
      a,
    );
  }

  /** The attempt could not reach its endpoint: try another, or give up with 503. */
  retry(a: Attempt, err: Error): void {
    const o = this.gw.options;
    o.upstreams.markUnreachable(a.dest);
    this.lastFailed = a.dest;
    o.director.responseComplete(this.ireq, aborted(a.endpoint));
    this.exclude.add(a.endpoint);
    o.logger.warn(
      { request_id: this.ireq.requestId, endpoint: a.dest, err: err.message, attempt: this.attempts },
      'model server unreachable, rescheduling',
    );
    if (this.attempts < o.maxAttempts && !this.clientGone) {
      this.attempt();
      return;
    }
    this.fail(new UpstreamUnavailableError(`Could not reach a model server (last tried ${a.dest}).`), err);
  }

  fail(e: LlmdError, cause: unknown): void {
    const o = this.gw.options;
    if (!(cause instanceof LlmdError)) {
      o.logger.error({ err: cause, request_id: this.ireq.requestId }, 'request failed');
    }
    o.metrics.requestError(this.labels, e.code);
    sendError(this.res, e, this.ireq.requestId);
    this.done(0);
  }

  done(responseBytes: number): void {
    if (this.finished) return;
    this.finished = true;
    void responseBytes;
    this.gw.options.metrics.requestFinished(
      this.labels,
      (this.gw.options.clock() - this.ireq.receivedAt) / 1000,
    );
  }
}

function aborted(endpoint: Endpoint | null): ResponseInfo {
  return { status: 0, headers: {}, endpoint, streaming: false, usage: null, aborted: true };
}

/** One upstream request: undici's dispatch handler, relaying onto the client response. */
class Attempt implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private started = false;
  private info: ResponseInfo | null = null;
  private sse: SseUsageTracker | null = null;
  private json: Buffer[] | null = null;
  private bytes = 0;
  private firstByteAt = 0;
  private lastChunkAt = 0;
  private readonly itl: number[] = [];
  private onDrain: (() => void) | null = null;

  constructor(
    private readonly call: Call,
    private readonly s: Scheduled,
    readonly endpoint: Endpoint,
    readonly dest: string,
  ) {}

  abort(): void {
    this.controller?.abort(new Error('client disconnected'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.call.clientGone) controller.abort(new Error('client disconnected'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    status: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    this.started = true;
    const call = this.call;
    const o = call.gw.options;
    const out: Record<string, string | string[]> = {};
    for (const k in headers) {
      const v = headers[k];
      if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
    }
    const ct = headers['content-type'];
    const streaming = typeof ct === 'string' && ct.includes('text/event-stream');
    if (streaming) this.sse = new SseUsageTracker();
    else this.json = [];
    const info: ResponseInfo = {
      status,
      headers: out as Record<string, string>,
      endpoint: this.endpoint,
      streaming,
      usage: null,
      aborted: false,
    };
    this.info = info;
    o.director.responseReceived(call.ireq, info);
    out['x-request-id'] = call.ireq.requestId;
    if (this.s.record) out[DECISION_RESPONSE_HEADER] = decisionHeader(this.s);
    const cl = headers['content-length'];
    if (typeof cl === 'string') out['content-length'] = cl;
    if (call.res.headersSent) return;
    call.res.writeHead(status, out);
    if (streaming) call.res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const call = this.call;
    const now = call.gw.options.clock();
    if (this.bytes === 0) this.firstByteAt = now;
    else if (this.sse !== null) this.itl.push((now - this.lastChunkAt) / 1000);
    this.lastChunkAt = now;
    this.bytes += chunk.length;
    if (this.sse !== null) this.sse.push(chunk);
    else if (this.json !== null && this.bytes <= 4 * 1024 * 1024) this.json.push(chunk);
    call.gw.options.director.responseStreaming(call.ireq, this.info!, chunk);
    if (!call.res.write(chunk)) {
      controller.pause();
      this.onDrain ??= () => controller.resume();
      call.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    const call = this.call;
    call.res.end();
    this.complete(false);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const call = this.call;
    if (!this.started && !call.clientGone && isConnectionError(err)) {
      call.retry(this, err);
      return;
    }
    if (!this.started && !call.clientGone) {
      call.gw.options.director.responseComplete(call.ireq, aborted(this.endpoint));
      call.fail(new UpstreamUnavailableError(`The model server at ${this.dest} failed: ${err.message}`), err);
      return;
    }
    if (!call.clientGone) {
      call.gw.options.logger.warn(
        { request_id: call.ireq.requestId, endpoint: this.dest, err: err.message },
        'model server response failed mid-stream',
      );
      call.res.destroy();
    }
    this.complete(true);
  }

  private complete(failed: boolean): void {
    const call = this.call;
    const o = call.gw.options;
    const info = this.info ?? aborted(this.endpoint);
    info.aborted = failed || call.clientGone;
    const usage =
      this.sse !== null
        ? this.sse.usage()
        : this.json !== null
          ? usageOfJson(Buffer.concat(this.json))
          : null;
    info.usage = usage;
    o.director.responseComplete(call.ireq, info);
    const e2e = (o.clock() - call.ireq.receivedAt) / 1000;
    o.metrics.responseObserved(call.labels, {
      sizeBytes: this.bytes,
      streaming: this.sse !== null,
      ttftSeconds: this.bytes > 0 ? (this.firstByteAt - call.ireq.receivedAt) / 1000 : null,
      e2eSeconds: e2e,
      promptTokens: usage?.promptTokens ?? null,
      completionTokens: usage?.completionTokens ?? null,
      cachedTokens: usage?.cachedTokens ?? null,
      itlSeconds: this.itl,
    });
    if (failed || info.status >= 500)
      o.metrics.requestError(call.labels, failed ? 'ResponseFailed' : 'ModelServerError');
    call.done(this.bytes);
  }
}

function decisionHeader(s: Scheduled): string {
  const json = JSON.stringify(s.record).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  if (json.length <= 8192) return json;
  return JSON.stringify({
    requestId: s.req.requestId,
    truncated: true,
    see: `/debug/decisions?request_id=${encodeURIComponent(s.req.requestId)}`,
  });
}

function firstHeader(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : v?.[0];
}

/** Node lower-cases names; repeated headers arrive as arrays and are joined as HTTP allows. */
function flatHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  const h = req.headers;
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    out[k] = typeof v === 'string' ? v : v.join(', ');
  }
  return out;
}

/** undici's flat `[name, value, …]` form, without hop-by-hop headers. */
function upstreamHeaders(h: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k in h) if (!HOP_BY_HOP.has(k)) out.push(k, h[k]!);
  return out;
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      req.resume();
      reject(new PayloadTooLargeError(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new PayloadTooLargeError(limit));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    req.on('error', () => {
      if (failed) return;
      failed = true;
      reject(new BadRequestError('The request body could not be read.'));
    });
  });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: ServerResponse, e: LlmdError, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = toErrorBody(e);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  if (e.droppedReason !== null) headers[DROPPED_REASON_HEADER] = e.droppedReason;
  if (requestId !== undefined) headers['x-request-id'] = requestId;
  if (e.status === 413) headers.connection = 'close';
  res.writeHead(e.status, headers);
  res.end(body);
}
