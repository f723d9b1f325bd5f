/**
 * The standalone gateway: the HTTP data plane Envoy is in a cluster. For each request it takes the
 * body (read once, by the HTTP/1.1 server), lets the director schedule it, and relays it to the chosen
 * model server over a keep-alive connection — the client's headers plus those the plugins set
 * (`x-prefiller-host-port`), the body bytes unchanged unless the model was rewritten — then relays the
 * response as it arrives: chunked streams byte for byte, with backpressure both ways. A request whose
 * endpoint cannot be reached before it answered is scheduled again without that endpoint. A client that
 * goes away aborts the upstream request.
 */
import type { UpstreamCall, UpstreamError, UpstreamResponseHandler } from '../../core/http1/client.js';
import { renderRequestHead } from '../../core/http1/client.js';
import type { Framing, ResponseHead } from '../../core/http1/head.js';
import { RELAY_DROPPED_HEADERS, headerSet } from '../../core/http1/hop-by-hop.js';
import type { Http1Request, Http1Response } from '../../core/http1/server.js';
import {
  LlmdError,
  NoEndpointsError,
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
import { PoolModels } from './models.js';
import type { Upstreams } from './upstreams.js';

/**
 * Not copied between the client and the model server, in either direction: what any relay drops, and
 * the headers the EPP sets for the proxy, which from a client or a model server could only be spoofs.
 * Unlike ext_proc, the gateway does pass the client's control headers (objective, model rewrite, …) on.
 */
export const GATEWAY_DROPPED_HEADERS: ReadonlySet<string> = headerSet(RELAY_DROPPED_HEADERS, [
  'x-gateway-destination-endpoint',
  'x-gateway-destination-endpoint-subset',
  'x-gateway-destination-endpoint-served',
  DROPPED_REASON_HEADER,
]);

/** The largest non-streaming body kept to read usage from. */
const MAX_USAGE_BODY = 4 * 1024 * 1024;

export interface GatewayOptions {
  readonly director: Director;
  readonly upstreams: Upstreams;
  readonly endpoints: EndpointSource;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Attempts per request across endpoints when connections fail. */
  readonly maxAttempts: number;
  /** Readiness: the gateway answers 503 on /health until the pool has been discovered. */
  readonly ready: () => boolean;
}

export class Gateway {
  readonly o: GatewayOptions;
  private readonly models: PoolModels;

  constructor(opts: GatewayOptions) {
    this.o = opts;
    this.models = new PoolModels(opts.endpoints, opts.logger);
  }

  /** For requests the HTTP server refused before they reached `handle` (413, 400, …). */
  static errorBody(status: number): { contentType: string; body: string } {
    const e =
      status === 413
        ? new LlmdError(
            'LLMD_ERR_PAYLOAD_TOO_LARGE',
            413,
            'PayloadTooLargeError',
            'Request body is too large.',
          )
        : new LlmdError('LLMD_ERR_BAD_REQUEST', status, 'BadRequestError', 'Malformed HTTP request.');
    return { contentType: 'application/json', body: toErrorBody(e) };
  }

  readonly handle = (req: Http1Request, res: Http1Response): void => {
    const url = req.target;
    if (req.method === 'GET') {
      if (url === '/health' || url === '/healthz' || url === '/readyz') return this.health(res);
      if (url === '/v1/models') return void this.listModels(res);
      if (url.startsWith('/debug/decisions')) return this.decisions(url, res);
    }
    const director = this.o.director;
    const headers = req.headers;
    let ireq: InferenceRequest;
    try {
      ireq = director.buildRequest({ path: url, headers, body: req.body });
    } catch (err) {
      const e = asLlmdError(err);
      this.o.metrics.requestRejected(this.o.metrics.labels('', '', 'default-flow', 0), e.code);
      return sendError(res, e, headers['x-request-id']);
    }
    const call = new Call(this, req, res, ireq, director.labels(ireq));
    this.o.metrics.requestStarted(call.labels, req.body.length);
    call.attempt();
  };

  private health(res: Http1Response): void {
    const n = this.o.endpoints.list().length;
    const ok = this.o.ready() && n > 0;
    sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'not ready', endpoints: n });
  }

  private async listModels(res: Http1Response): Promise<void> {
    try {
      sendJson(res, 200, await this.models.list());
    } catch (err) {
      sendError(res, asLlmdError(err));
    }
  }

  private decisions(url: string, res: Http1Response): void {
    const q = new URL(url, 'http://x').searchParams;
    const id = q.get('request_id');
    const limit = Math.min(Math.max(Number(q.get('limit') ?? 20) || 20, 1), 256);
    const all = this.o.director.recentDecisions(256);
    sendJson(res, 200, id !== null ? all.filter((d) => d.requestId === id) : all.slice(-limit));
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
    readonly req: Http1Request,
    readonly res: Http1Response,
    readonly ireq: InferenceRequest,
    readonly labels: RequestSeries,
  ) {
    res.onClose(() => {
      this.clientGone = true;
      this.current?.abort();
    });
  }

  attempt(): void {
    const o = this.gw.o;
    this.attempts++;
    o.director.schedule(this.ireq, { exclude: this.exclude }).then(
      (s) => {
        if (this.clientGone) {
          o.director.responseComplete(this.ireq, aborted(s.targets[0] ?? null));
          this.done();
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
    const dest = s.destinations[0]!;
    const a = new Attempt(this, s, s.targets[0]!, dest);
    this.current = a;
    const method = this.req.method;
    const head = renderRequestHead(
      method,
      this.req.target,
      dest,
      headerLines(this.ireq.headers),
      s.body.length,
    );
    a.upstream = this.gw.o.upstreams.pool(dest).request(method, head, s.body, a);
  }

  /** The attempt never reached a working server: try another, or give up with 503. */
  retry(a: Attempt, err: UpstreamError): void {
    const o = this.gw.o;
    if (err.connectFailed) o.upstreams.markUnreachable(a.dest);
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
    const o = this.gw.o;
    if (!(cause instanceof LlmdError) && !(cause instanceof Error && 'connectFailed' in cause)) {
      o.logger.error({ err: cause, request_id: this.ireq.requestId }, 'request failed');
    }
    o.metrics.requestError(this.labels, e.code);
    sendError(this.res, e, this.ireq.requestId);
    this.done();
  }

  done(): void {
    if (this.finished) return;
    this.finished = true;
    const o = this.gw.o;
    o.metrics.requestFinished(this.labels, (o.clock() - this.ireq.receivedAt) / 1000);
  }
}

function aborted(endpoint: Endpoint | null): ResponseInfo {
  return { status: 0, headers: {}, endpoint, streaming: false, usage: null, aborted: true };
}

/** One upstream request, relaying onto the client response. */
class Attempt implements UpstreamResponseHandler {
  upstream: UpstreamCall | null = null;
  private started = false;
  private raw = false;
  private info: ResponseInfo | null = null;
  private sse: SseUsageTracker | null = null;
  private json: Buffer[] | null = null;
  private jsonBytes = 0;
  private bytes = 0;
  private firstByteAt = 0;
  private lastChunkAt = 0;
  private readonly itl: number[] = [];
  private completed = false;
  private readonly resume = (): void => this.upstream?.resume();

  constructor(
    private readonly call: Call,
    private readonly s: Scheduled,
    readonly endpoint: Endpoint,
    readonly dest: string,
  ) {}

  abort(): void {
    this.upstream?.abort();
    if (this.started) this.complete(true);
    else this.call.gw.o.director.responseComplete(this.call.ireq, aborted(this.endpoint));
    this.call.done();
  }

  onHead(head: ResponseHead, framing: Framing): void {
    this.started = true;
    const call = this.call;
    const o = call.gw.o;
    const out: Record<string, string> = {};
    const h = head.headers;
    for (const k in h) if (!GATEWAY_DROPPED_HEADERS.has(k) && k !== 'set-cookie') out[k] = h[k]!;
    const ct = h['content-type'];
    const streaming = ct !== undefined && ct.includes('text/event-stream');
    if (streaming) this.sse = new SseUsageTracker();
    else this.json = [];
    const info: ResponseInfo = {
      status: head.status,
      headers: out,
      endpoint: this.endpoint,
      streaming,
      usage: null,
      aborted: false,
    };
    this.info = info;
    o.director.responseReceived(call.ireq, info);
    out['x-request-id'] = call.ireq.requestId;
    if (this.s.record) out[DECISION_RESPONSE_HEADER] = decisionHeader(this.s);
    let lines = '';
    for (const k in out) lines += k + ': ' + out[k] + '\r\n';
    if (head.setCookie) for (const c of head.setCookie) lines += 'set-cookie: ' + c + '\r\n';
    // Chunked bodies pass through byte for byte to an HTTP/1.1 client; others are framed afresh.
    this.raw = framing.kind === 'chunked' && call.req.version >= 11;
    call.res.writeHead(
      head.status,
      lines,
      framing.kind === 'length'
        ? { length: framing.length }
        : framing.kind === 'none'
          ? 'none'
          : this.raw
            ? 'raw-chunked'
            : 'chunked',
    );
    if (streaming) call.res.flushHead();
  }

  onRaw(raw: Buffer): void {
    if (this.raw) this.forward(raw);
  }

  onData(data: Buffer): void {
    const now = this.call.gw.o.clock();
    if (this.bytes === 0) this.firstByteAt = now;
    else if (this.sse !== null) this.itl.push((now - this.lastChunkAt) / 1000);
    this.lastChunkAt = now;
    this.bytes += data.length;
    if (this.sse !== null) this.sse.push(data);
    else if (this.json !== null && this.jsonBytes + data.length <= MAX_USAGE_BODY) {
      this.json.push(data);
      this.jsonBytes += data.length;
    }
    const call = this.call;
    if (this.info !== null) call.gw.o.director.responseStreaming(call.ireq, this.info, data);
    if (!this.raw) this.forward(data);
  }

  private forward(chunk: Buffer): void {
    const res = this.call.res;
    if (!res.write(chunk)) {
      this.upstream?.pause();
      res.onDrain(this.resume);
    }
  }

  onEnd(): void {
    this.call.res.end();
    this.complete(false);
    this.call.done();
  }

  onError(err: UpstreamError): void {
    const call = this.call;
    if (call.clientGone) return;
    if (!this.started && err.beforeResponse) {
      call.retry(this, err);
      return;
    }
    if (!this.started) {
      call.gw.o.director.responseComplete(call.ireq, aborted(this.endpoint));
      call.fail(new UpstreamUnavailableError(`The model server at ${this.dest} failed: ${err.message}`), err);
      return;
    }
    call.gw.o.logger.warn(
      { request_id: call.ireq.requestId, endpoint: this.dest, err: err.message },
      'model server response failed mid-stream',
    );
    call.res.destroy();
    this.complete(true);
    call.done();
  }

  private complete(failed: boolean): void {
    if (this.completed) return;
    this.completed = true;
    const call = this.call;
    const o = call.gw.o;
    const info = this.info ?? aborted(this.endpoint);
    info.aborted = failed || call.clientGone;
    const usage =
      this.sse !== null
        ? this.sse.usage()
        : this.json !== null && this.json.length > 0
          ? usageOfJson(this.json.length === 1 ? this.json[0]! : Buffer.concat(this.json))
          : null;
    info.usage = usage;
    o.director.responseComplete(call.ireq, info);
    o.metrics.responseObserved(call.labels, {
      sizeBytes: this.bytes,
      streaming: this.sse !== null,
      ttftSeconds: this.bytes > 0 ? (this.firstByteAt - call.ireq.receivedAt) / 1000 : null,
      e2eSeconds: (o.clock() - call.ireq.receivedAt) / 1000,
      promptTokens: usage?.promptTokens ?? null,
      completionTokens: usage?.completionTokens ?? null,
      cachedTokens: usage?.cachedTokens ?? null,
      itlSeconds: this.itl,
    });
    if (failed || info.status >= 500)
      o.metrics.requestError(call.labels, failed ? 'ResponseFailed' : 'ModelServerError');
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

/** The request's headers as `name: value` lines, without hop-by-hop ones. */
function headerLines(h: Record<string, string>): string {
  let out = '';
  for (const k in h) if (!GATEWAY_DROPPED_HEADERS.has(k)) out += k + ': ' + h[k] + '\r\n';
  return out;
}

function sendJson(res: Http1Response, status: number, value: unknown): void {
  res.send(status, 'content-type: application/json\r\n', JSON.stringify(value));
}

function sendError(res: Http1Response, e: LlmdError, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  let lines = 'content-type: application/json\r\n';
  if (e.droppedReason !== null) lines += `${DROPPED_REASON_HEADER}: ${e.droppedReason}\r\n`;
  if (requestId !== undefined) lines += `x-request-id: ${requestId}\r\n`;
  res.send(e.status, lines, toErrorBody(e));
}
