/**
 * The Envoy ext_proc data plane (upstream `pkg/epp/handlers/server.go`): one `Process` stream per HTTP
 * request, in FULL_DUPLEX_STREAMED mode. Request headers are kept; body chunks are buffered until the
 * end of stream, parsed once and scheduled by the director (the same core as the standalone gateway);
 * then the request-headers response names the destination (`x-gateway-destination-endpoint`, plus the
 * same value in the `envoy.lb` dynamic metadata) and the body follows in chunks of at most 62000 bytes.
 * The response phases feed the response hooks and usage metrics and rewrite the model name back.
 * A request that cannot go gets an ImmediateResponse with its status and dropped reason. Messages of one
 * stream are handled strictly in order; a stream that ends or is cancelled releases what it holds.
 */
import * as grpc from '@grpc/grpc-js';
import { LlmdError, PayloadTooLargeError, asLlmdError } from '../../core/errors.js';
import { headerSet } from '../../core/http1/hop-by-hop.js';
import type { Logger } from '../../core/log.js';
import { loadServingCertificate, type KeyPair } from '../../core/tls/self-signed.js';
import type { Endpoint, EndpointSource } from '../framework/endpoint.js';
import type { ResponseInfo } from '../framework/requestcontrol.js';
import type { InferenceRequest } from '../framework/request.js';
import {
  DROPPED_REASON_HEADER,
  SYSTEM_OWNED_HEADERS,
  type Director,
  type Scheduled,
} from '../handling/director.js';
import { SseUsageTracker, usageOfJson } from '../handling/usage.js';
import type { EppMetrics, RequestSeries } from '../metrics.js';
import {
  EXT_PROC_SERVICE,
  ProcessingRequestSchema,
  protos,
  bodyChunks,
  fromStruct,
  headersOf,
  setHeader,
  toStruct,
  type HeaderValueOption,
  type HttpBody,
  type HttpHeaders,
  type Metadata,
  type ProcessingRequest,
  type ProcessingResponse,
} from './protocol.js';

export const DESTINATION_HEADER = 'x-gateway-destination-endpoint';
export const SUBSET_NAMESPACE = 'envoy.lb.subset_hint';
export const SUBSET_KEY = 'x-gateway-destination-endpoint-subset';
export const LB_NAMESPACE = 'envoy.lb';
/** Set on every response-headers reply (upstream's debug marker; conformance tests look for it). */
export const RESPONSE_MARKER_HEADER = 'x-went-into-resp-headers';

/**
 * Request headers not echoed back as mutations: the EPP's own (control, injected, content-length; as
 * upstream's IsSystemOwnedHeader) and `host`, which Envoy's default mutation rules do not let
 * ext_proc change. Unlike the relays' set, no hop-by-hop names: Envoy has already removed those
 * before ext_proc sees the request, and upstream passes everything else through. Pseudo-headers
 * (`:path`, …) are skipped by prefix.
 */
export const EXT_PROC_NOT_ECHOED: ReadonlySet<string> = headerSet(SYSTEM_OWNED_HEADERS, ['host']);

/** The largest non-streaming response body kept to read usage from and rewrite. */
const MAX_BUFFERED_RESPONSE = 64 * 1024 * 1024;

export interface ExtProcOptions {
  readonly director: Director;
  readonly endpoints: EndpointSource;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Uniform in [0, 1): the endpoint for a request without a body. */
  readonly random: () => number;
  readonly maxRequestBodyBytes: number;
  /** Ignore the proxy's subset hint. */
  readonly disableSubsetFilter?: boolean;
}

type Call = grpc.ServerDuplexStream<unknown, ProcessingResponse>;

export class ExtProcHandler {
  readonly active = new Set<ProcessStream>();

  constructor(readonly o: ExtProcOptions) {}

  readonly process = (call: Call): void => {
    const s = new ProcessStream(this, call);
    this.active.add(s);
  };
}

type Phase = 'request' | 'routed' | 'response' | 'done';

class ProcessStream {
  private phase: Phase = 'request';
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private headers: Record<string, string> = {};
  private readonly body: Buffer[] = [];
  private bodyBytes = 0;
  private bodyEnded = false;
  private metadata: Metadata | null = null;
  private ireq: InferenceRequest | null = null;
  private labels: RequestSeries | null = null;
  private target: Endpoint | null = null;
  private info: ResponseInfo | null = null;
  private sse: SseUsageTracker | null = null;
  private json: Buffer[] | null = null;
  private jsonBytes = 0;
  private respBytes = 0;
  private firstByteAt = 0;
  private lastChunkAt = 0;
  private readonly itl: number[] = [];
  private completed = false;

  constructor(
    private readonly h: ExtProcHandler,
    private readonly call: Call,
  ) {
    call.on('data', (m: unknown) => {
      this.chain = this.chain.then(() => this.onMessage(m)).catch((err: unknown) => this.internal(err));
    });
    call.on('end', () => {
      void this.chain.then(() => {
        this.release(false);
        if (!this.closed) {
          this.closed = true;
          call.end();
        }
      });
    });
    call.on('cancelled', () => {
      this.closed = true;
      this.release(true);
    });
    call.on('error', () => {
      this.closed = true;
      this.release(true);
    });
  }

  private get o(): ExtProcOptions {
    return this.h.o;
  }

  private async onMessage(raw: unknown): Promise<void> {
    if (this.closed || this.phase === 'done') return;
    const parsed = ProcessingRequestSchema.safeParse(raw);
    if (!parsed.success) {
      this.abort(grpc.status.INVALID_ARGUMENT, `bad ProcessingRequest: ${parsed.error.issues[0]!.message}`);
      return;
    }
    const m: ProcessingRequest = parsed.data;
    if (m.metadata_context) this.metadata = m.metadata_context;
    switch (m.request) {
      case 'request_headers':
        return this.requestHeaders(m.request_headers ?? {});
      case 'request_body':
        return this.requestBody(m.request_body ?? {});
      case 'request_trailers':
        if (!this.bodyEnded) await this.requestBody({ end_of_stream: true });
        this.write({ request_trailers: {} });
        return;
      case 'response_headers':
        return this.responseHeaders(m.response_headers ?? {});
      case 'response_body':
        return this.responseBody(m.response_body ?? {});
      case 'response_trailers':
        // A buffered body ends with the trailers: send it first (Header → Body → Trailer).
        if (this.phase === 'response' && this.sse === null && this.json !== null && this.jsonBytes > 0) {
          this.sendResponseBody(this.rewriteModel(Buffer.concat(this.json, this.jsonBytes)), false);
        }
        this.complete();
        this.write({ response_trailers: {} });
        return;
      default:
        this.abort(grpc.status.INVALID_ARGUMENT, 'ProcessingRequest without a request');
    }
  }

  private requestHeaders(m: HttpHeaders): void {
    if (this.phase !== 'request') return this.abort(grpc.status.FAILED_PRECONDITION, 'request headers twice');
    this.headers = headersOf(m);
    if (m.end_of_stream !== true) return;
    // No body (e.g. GET): any endpoint will do, without scheduling.
    this.bodyEnded = true;
    const eps = this.o.endpoints.list();
    if (eps.length === 0) {
      const e = new LlmdError(
        'LLMD_ERR_NO_ENDPOINTS',
        500,
        'InternalServerError',
        'no pods available in datastore',
      );
      return this.immediate(e);
    }
    const ep = eps[Math.min(Math.floor(this.o.random() * eps.length), eps.length - 1)]!;
    this.target = ep;
    this.routed([ep.meta.hostPort], Buffer.alloc(0), this.headers, false);
  }

  private async requestBody(m: HttpBody): Promise<void> {
    if (this.phase !== 'request' || this.bodyEnded) return;
    const chunk = m.body;
    if (chunk !== undefined && chunk.length > 0) {
      this.bodyBytes += chunk.length;
      if (this.bodyBytes > this.o.maxRequestBodyBytes) {
        this.body.length = 0;
        return this.immediate(new PayloadTooLargeError(this.o.maxRequestBodyBytes));
      }
      this.body.push(chunk);
    }
    if (m.end_of_stream !== true) return;
    this.bodyEnded = true;
    const o = this.o;
    const body = this.body.length === 1 ? this.body[0]! : Buffer.concat(this.body, this.bodyBytes);
    this.body.length = 0;
    const h = this.headers;
    const path = h[':path'] ?? h['x-original-path'] ?? h['x-forwarded-path'] ?? '/v1/completions';
    let ireq: InferenceRequest;
    try {
      ireq = o.director.buildRequest({ path, headers: h, body });
    } catch (err) {
      const e = asLlmdError(err);
      o.metrics.requestRejected(o.metrics.labels('', '', 'default-flow', 0), e.code);
      return this.immediate(e);
    }
    this.ireq = ireq;
    const labels = o.director.labels(ireq);
    this.labels = labels;
    o.metrics.requestStarted(labels, body.length);
    let s: Scheduled;
    try {
      s = await o.director.schedule(ireq, { subset: o.disableSubsetFilter ? null : subsetOf(this.metadata) });
    } catch (err) {
      const e = asLlmdError(err);
      if (!(err instanceof LlmdError))
        o.logger.error({ err, request_id: ireq.requestId }, 'scheduling failed');
      o.metrics.requestError(labels, e.code);
      this.finishMetrics();
      this.ireq = null;
      return this.immediate(e);
    }
    this.target = s.targets[0] ?? null;
    if (this.closed) {
      this.release(true);
      return;
    }
    this.routed(s.destinations, s.body, ireq.headers, true);
  }

  /** The routing reply: request-headers response with the destination, then the body chunks. */
  private routed(
    destinations: readonly string[],
    body: Buffer,
    headers: Record<string, string>,
    withBody: boolean,
  ): void {
    const dest = destinations.join(',');
    const set: HeaderValueOption[] = [setHeader(DESTINATION_HEADER, dest)];
    if (body.length > 0) set.push(setHeader('content-length', String(body.length)));
    for (const k in headers) {
      if (EXT_PROC_NOT_ECHOED.has(k) || k.startsWith(':')) continue;
      set.push(setHeader(k, headers[k]!));
    }
    this.write({
      request_headers: { response: { clear_route_cache: true, header_mutation: { set_headers: set } } },
      dynamic_metadata: toStruct({ [LB_NAMESPACE]: { [DESTINATION_HEADER]: dest } }),
    });
    if (withBody) {
      for (const c of bodyChunks(body, true)) {
        this.write({ request_body: { response: { body_mutation: { streamed_response: c } } } });
      }
    }
    this.phase = 'routed';
  }

  private responseHeaders(m: HttpHeaders): void {
    if (this.phase !== 'routed')
      return this.abort(grpc.status.FAILED_PRECONDITION, 'response before routing');
    this.phase = 'response';
    const h = headersOf(m);
    const status = Number(h[':status'] ?? '200');
    const ct = h['content-type'];
    const ireq = this.ireq;
    const streaming =
      (ct !== undefined && ct.includes('text/event-stream')) ||
      (ireq !== null && (ireq.body.json as { stream?: unknown } | null)?.stream === true);
    const out: Record<string, string> = {};
    for (const k in h) if (!k.startsWith(':') && !SYSTEM_OWNED_HEADERS.has(k)) out[k] = h[k]!;
    const info: ResponseInfo = {
      status,
      headers: out,
      endpoint: this.target,
      streaming,
      usage: null,
      aborted: false,
    };
    this.info = info;
    if (streaming) this.sse = new SseUsageTracker();
    else this.json = [];
    if (ireq !== null) {
      this.o.director.responseReceived(ireq, info);
      if (status !== 200 && this.labels !== null)
        this.o.metrics.requestError(this.labels, 'ModelServerError');
    }
    const set: HeaderValueOption[] = [setHeader(RESPONSE_MARKER_HEADER, 'true')];
    for (const k in out) if (k !== 'content-length') set.push(setHeader(k, out[k]!));
    this.write({ response_headers: { response: { header_mutation: { set_headers: set } } } });
    if (m.end_of_stream === true) this.complete();
  }

  private responseBody(m: HttpBody): void {
    if (this.phase !== 'response')
      return this.abort(grpc.status.FAILED_PRECONDITION, 'response body before headers');
    const chunk = m.body ?? Buffer.alloc(0);
    const eos = m.end_of_stream === true;
    const now = this.o.clock();
    if (chunk.length > 0) {
      if (this.respBytes === 0) this.firstByteAt = now;
      else if (this.sse !== null) this.itl.push((now - this.lastChunkAt) / 1000);
      this.lastChunkAt = now;
      this.respBytes += chunk.length;
    }
    const ireq = this.ireq;
    if (this.sse !== null) {
      this.sse.push(chunk);
      if (ireq !== null && this.info !== null && chunk.length > 0)
        this.o.director.responseStreaming(ireq, this.info, chunk);
      this.sendResponseBody(this.rewriteModel(chunk), eos);
    } else {
      if (chunk.length > 0) {
        if (this.jsonBytes + chunk.length > MAX_BUFFERED_RESPONSE) {
          // Too large to hold: pass what is held and the rest through as it comes.
          this.sendResponseBody(Buffer.concat([...(this.json ?? []), chunk]), eos);
          this.json = null;
          this.sse = new SseUsageTracker();
          if (eos) this.complete();
          return;
        }
        this.json?.push(chunk);
        this.jsonBytes += chunk.length;
      }
      if (!eos) return;
      const whole = this.json === null ? Buffer.alloc(0) : Buffer.concat(this.json, this.jsonBytes);
      this.sendResponseBody(this.rewriteModel(whole), true);
    }
    if (eos) this.complete();
  }

  private sendResponseBody(body: Buffer, eos: boolean): void {
    for (const c of bodyChunks(body, eos)) {
      this.write({ response_body: { response: { body_mutation: { streamed_response: c } } } });
    }
  }

  /** `"model":"<target>"` back to `"model":"<incoming>"` when the request was rewritten. */
  private rewriteModel(b: Buffer): Buffer {
    const r = this.ireq;
    if (r === null || r.targetModel === r.incomingModel || b.length === 0) return b;
    const from = JSON.stringify(r.targetModel);
    const to = JSON.stringify(r.incomingModel);
    const s = b.toString('utf8');
    if (!s.includes(from)) return b;
    return Buffer.from(
      s.split(`"model":${from}`).join(`"model":${to}`).split(`"model": ${from}`).join(`"model": ${to}`),
    );
  }

  /** The response finished: usage, hooks, metrics. */
  private complete(): void {
    this.phase = 'done';
    this.finishResponse(false);
  }

  private finishResponse(aborted: boolean): void {
    if (this.completed) return;
    this.completed = true;
    const ireq = this.ireq;
    const labels = this.labels;
    if (ireq === null || labels === null) return;
    const o = this.o;
    const info = this.info ?? {
      status: 0,
      headers: {},
      endpoint: this.target,
      streaming: false,
      usage: null,
      aborted: true,
    };
    info.aborted = aborted || this.info === null;
    const usage =
      this.sse !== null
        ? this.sse.usage()
        : this.json !== null && this.json.length > 0
          ? usageOfJson(Buffer.concat(this.json, this.jsonBytes))
          : null;
    info.usage = usage;
    this.json = null;
    o.director.responseComplete(ireq, info);
    if (this.info !== null) {
      o.metrics.responseObserved(labels, {
        sizeBytes: this.respBytes,
        streaming: info.streaming,
        ttftSeconds: this.respBytes > 0 ? (this.firstByteAt - ireq.receivedAt) / 1000 : null,
        e2eSeconds: (o.clock() - ireq.receivedAt) / 1000,
        promptTokens: usage?.promptTokens ?? null,
        completionTokens: usage?.completionTokens ?? null,
        cachedTokens: usage?.cachedTokens ?? null,
        itlSeconds: this.itl,
      });
    }
    if (aborted) o.metrics.requestError(labels, 'ResponseFailed');
    this.finishMetrics();
  }

  private finishMetrics(): void {
    const ireq = this.ireq;
    if (ireq === null || this.labels === null) return;
    this.o.metrics.requestFinished(this.labels, (this.o.clock() - ireq.receivedAt) / 1000);
  }

  /** Stream teardown: a scheduled request that did not finish is completed as aborted. */
  private release(aborted: boolean): void {
    this.h.active.delete(this);
    this.body.length = 0;
    if (this.phase !== 'done') this.finishResponse(aborted || this.phase !== 'routed');
    this.phase = 'done';
  }

  private immediate(e: LlmdError): void {
    const set: HeaderValueOption[] = [];
    if (e.droppedReason !== null) set.push(setHeader(DROPPED_REASON_HEADER, e.droppedReason));
    this.write({
      immediate_response: {
        status: { code: e.status },
        headers: set.length > 0 ? { set_headers: set } : {},
        body: `inference error: ${codeName(e.status)} - ${e.message}`,
      },
    });
    this.phase = 'done';
    this.endStream();
  }

  private write(r: ProcessingResponse): void {
    if (this.closed) return;
    this.call.write(r);
  }

  private endStream(): void {
    if (this.closed) return;
    this.closed = true;
    this.release(false);
    this.call.end();
  }

  /** Ends the stream with a gRPC error status. */
  private abort(code: grpc.status, details: string): void {
    this.o.logger.warn({ code, details, request_id: this.ireq?.requestId }, 'ext_proc stream aborted');
    if (this.closed) return;
    this.closed = true;
    this.release(true);
    this.call.emit('error', { code, details, name: 'ExtProcError', message: details });
  }

  private internal(err: unknown): void {
    this.o.logger.error({ err, request_id: this.ireq?.requestId }, 'ext_proc stream failed');
    this.abort(grpc.status.INTERNAL, 'internal error');
  }
}

/** The proxy's subset hint: the IPs of the listed `ip:port`s; null when absent. */
export function subsetOf(md: Metadata | null): Set<string> | null {
  const ns = md?.filter_metadata?.[SUBSET_NAMESPACE];
  if (ns === undefined) return null;
  const v = fromStruct(ns)[SUBSET_KEY];
  if (v === undefined) return null;
  const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : [];
  const out = new Set<string>();
  for (const item of list) if (typeof item === 'string' && item.trim() !== '') out.add(ipOf(item.trim()));
  return out;
}

function ipOf(hostPort: string): string {
  if (hostPort.startsWith('[')) {
    const end = hostPort.indexOf(']');
    return end > 0 ? hostPort.slice(1, end) : hostPort;
  }
  const i = hostPort.lastIndexOf(':');
  // More than one colon without brackets: a bare IPv6 address.
  return i > 0 && hostPort.indexOf(':') === i ? hostPort.slice(0, i) : hostPort;
}

function codeName(status: number): string {
  switch (status) {
    case 400:
      return 'BadRequest';
    case 401:
      return 'Unauthorized';
    case 403:
      return 'Forbidden';
    case 404:
      return 'NotFound';
    case 412:
      return 'PreconditionFailed';
    case 413:
      return 'PayloadTooLarge';
    case 429:
      return 'ResourceExhausted';
    case 503:
      return 'ServiceUnavailable';
    default:
      return 'Internal';
  }
}

/**
 * The ext_proc serving certificate (`--secure-serving`): `tls.crt` and `tls.key` from `certPath`, else
 * self-signed with upstream's subject; Envoy's ext_proc cluster does not verify it.
 */
export function loadExtProcCertificate(certPath: string | undefined): Promise<KeyPair> {
  return loadServingCertificate(certPath, { organization: 'Inference Ext', flag: '--secure-serving' });
}

export const HEALTH_SERVICES = ['liveness', 'readiness', '', EXT_PROC_SERVICE] as const;

const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

export interface GrpcServeOptions extends ExtProcOptions {
  readonly host: string;
  readonly port: number;
  /** null: no health server. */
  readonly healthPort: number | null;
  /** Pool discovered and plugins ready: the ext_proc service reports SERVING. */
  readonly ready: () => boolean;
  /** PEM certificate and key: ext_proc over TLS (ALPN h2); null: plaintext. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer } | null;
  readonly maxRecvMessageBytes?: number;
  readonly maxSendMessageBytes?: number;
}

export interface RunningExtProc {
  readonly port: number;
  readonly healthPort: number | null;
  readonly handler: ExtProcHandler;
  /** The PEM certificate ext_proc serves, when over TLS (a client may pin a self-signed one). */
  readonly certificate: Buffer | null;
  /** From now on the ext_proc service reports NOT_SERVING (streams keep being served). */
  drain(): void;
  /**
   * Stops. With `graceMs` > 0 (a SIGTERM in a rolling update) it drains first: health reports
   * NOT_SERVING, new streams are refused, and the streams in flight may finish for up to `graceMs`
   * before they are cut; health answers until then, so probes see the drain.
   */
  close(graceMs?: number): Promise<void>;
}

/** The ext_proc gRPC server and, on its own port, the gRPC health service. */
export async function startExtProc(opts: GrpcServeOptions): Promise<RunningExtProc> {
  const p = protos();
  const handler = new ExtProcHandler(opts);
  const serverOptions: grpc.ServerOptions = {
    'grpc.max_receive_message_length': opts.maxRecvMessageBytes ?? 10 * 1024 * 1024,
    'grpc.max_send_message_length': opts.maxSendMessageBytes ?? 10 * 1024 * 1024,
  };
  const server = new grpc.Server(serverOptions);
  server.addService(p.extProc, { Process: handler.process });
  const creds = opts.tls
    ? grpc.ServerCredentials.createSsl(
        null,
        [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }],
        false,
      )
    : grpc.ServerCredentials.createInsecure();
  const port = await bind(server, opts.host, opts.port, creds);

  let draining = false;
  const status = (service: string): number => {
    if (service === 'liveness') return SERVING;
    if (!(HEALTH_SERVICES as readonly string[]).includes(service)) return SERVICE_UNKNOWN;
    return opts.ready() && !draining ? SERVING : NOT_SERVING;
  };
  const watchers = new Set<grpc.ServerWritableStream<{ service?: string }, { status: number }>>();
  let health: grpc.Server | null = null;
  let healthPort: number | null = null;
  if (opts.healthPort !== null) {
    health = new grpc.Server();
    health.addService(p.health, {
      Check: (
        call: grpc.ServerUnaryCall<{ service?: string }, { status: number }>,
        cb: grpc.sendUnaryData<{ status: number }>,
      ) => cb(null, { status: status(call.request.service ?? '') }),
      Watch: (call: grpc.ServerWritableStream<{ service?: string }, { status: number }>) => {
        watchers.add(call);
        call.write({ status: status(call.request.service ?? '') });
        const drop = (): void => void watchers.delete(call);
        call.on('cancelled', drop);
        call.on('error', drop);
      },
    });
    try {
      healthPort = await bind(health, opts.host, opts.healthPort, grpc.ServerCredentials.createInsecure());
    } catch (err) {
      server.forceShutdown();
      throw err;
    }
  }
  const drain = (): void => {
    if (draining) return;
    draining = true;
    for (const w of watchers) w.write({ status: status(w.request.service ?? '') });
  };
  let closing: Promise<void> | null = null;
  return {
    port,
    healthPort,
    handler,
    certificate: opts.tls?.cert ?? null,
    drain,
    close(graceMs = 0) {
      closing ??= (async () => {
        drain();
        await shutdown(server, graceMs);
        for (const w of watchers) w.end();
        watchers.clear();
        if (health !== null) await shutdown(health, 0);
      })();
      return closing;
    },
  };
}

function bind(
  server: grpc.Server,
  host: string,
  port: number,
  creds: grpc.ServerCredentials,
): Promise<number> {
  const h = host.includes(':') ? `[${host}]` : host;
  return new Promise((resolve, reject) => {
    server.bindAsync(`${h}:${port}`, creds, (err, bound) => {
      if (err) reject(err);
      else resolve(bound);
    });
  });
}

/** Open streams are cancelled: the proxy sees the stream end and falls back by its failure mode. */
/** Refuses new calls, lets those in flight end for up to `graceMs`, then cuts what is left. */
function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  if (graceMs <= 0) {
    server.forceShutdown();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const cut = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(cut);
      resolve();
    });
  });
}
