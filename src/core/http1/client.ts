/**
 * Keep-alive HTTP/1.1 connections to one upstream (a model server), for relaying: the caller writes a
 * request head it has already rendered, and gets the response head, then the body bytes exactly as
 * they arrived (chunk framing included, so a relay can pass them through untouched) plus the decoded
 * payload for inspection. One request per connection at a time; idle connections are reused newest
 * first.
 *
 * A reused connection the server had already closed fails before any response byte: that request is
 * sent once more on a fresh connection, transparently. A failure to connect at all is reported as such
 * (`connectFailed`), so a router can take the endpoint out of rotation and try another.
 */
import { connect, type Socket } from 'node:net';
import { ChunkedDecoder } from './chunked.js';
import {
  CRLFCRLF,
  HeadError,
  keepAlive,
  parseResponseHead,
  responseFraming,
  type Framing,
  type ResponseHead,
} from './head.js';

export interface UpstreamResponseHandler {
  onHead(head: ResponseHead, framing: Framing): void;
  /** Body bytes as received; chunk framing included when the framing is `chunked`. */
  onRaw(raw: Buffer): void;
  /** The payload of the body (chunked framing removed); for a non-chunked body the same bytes as `onRaw`. */
  onData(data: Buffer): void;
  onEnd(): void;
  onError(err: UpstreamError): void;
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly code: string,
    /** No byte of the response had arrived. */
    readonly beforeResponse: boolean,
    /** The connection could not be made at all (refused, unreachable, timed out). */
    readonly connectFailed: boolean,
  ) {
    super(message);
  }
}

export interface UpstreamCall {
  abort(): void;
  pause(): void;
  resume(): void;
}

export interface PoolOptions {
  readonly connectTimeoutMs: number;
  /**
   * Opens a connection (default: plain TCP with Nagle off). A TLS upstream passes `tls.connect`: the
   * pool only needs a duplex socket that emits `connect`.
   */
  readonly connect?: (host: string, port: number) => Socket;
  /** Idle connections kept (beyond that they are closed when a request ends). */
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
  readonly maxHeadBytes: number;
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = {
  connectTimeoutMs: 2_000,
  maxIdle: 256,
  idleTimeoutMs: 30_000,
  maxHeadBytes: 128 * 1024,
};

const NO_BODY = Buffer.alloc(0);

/** One TCP connection and the call it is serving. */
class PooledSocket {
  call: Call | null = null;
  connected = false;
  used = false;

  constructor(
    readonly pool: Http1Pool,
    readonly socket: Socket,
  ) {
    socket.on('data', (d: Buffer) => {
      if (this.call !== null) this.call.onBytes(d);
      // Bytes on an idle connection are a protocol error: it cannot be reused.
      else socket.destroy();
    });
    socket.on('end', () => this.call?.onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => this.call?.onSocketError(err));
    socket.on('close', () => {
      this.pool.forget(this);
      this.call?.onSocketClose();
    });
    socket.on('timeout', () => {
      if (this.call === null) socket.destroy();
    });
  }
}

class Call implements UpstreamCall {
  private ps: PooledSocket | null = null;
  private gotBytes = false;
  private headBuf: Buffer | null = null;
  private head: ResponseHead | null = null;
  private framing: Framing | null = null;
  private remaining = 0;
  private decoder: ChunkedDecoder | null = null;
  private done = false;
  private retried = false;
  private connectTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: Http1Pool,
    readonly method: string,
    private readonly reqHead: string,
    private readonly body: Buffer,
    private readonly h: UpstreamResponseHandler,
    private readonly closeAfter: boolean,
  ) {}

  /** @internal set by the pool when the call starts on an idle connection. */
  reused = false;

  /** @internal */
  startOn(ps: PooledSocket): void {
    this.send(ps);
  }

  private send(ps: PooledSocket): void {
    this.ps = ps;
    ps.call = this;
    ps.used = true;
    const s = ps.socket;
    if (!ps.connected) {
      this.connectTimer = setTimeout(() => {
        this.connectTimer = null;
        this.fail(new UpstreamError('connect timed out', 'ETIMEDOUT', true, true));
      }, this.pool.options.connectTimeoutMs);
      s.once('connect', () => {
        ps.connected = true;
        if (this.connectTimer !== null) clearTimeout(this.connectTimer);
        this.connectTimer = null;
      });
    }
    if (this.body.length === 0) s.write(this.reqHead);
    else {
      s.cork();
      s.write(this.reqHead);
      s.write(this.body);
      s.uncork();
    }
  }

  onBytes(d: Buffer): void {
    if (this.done) return;
    this.gotBytes = true;
    try {
      if (this.head === null) {
        const buf = this.headBuf === null ? d : Buffer.concat([this.headBuf, d]);
        let start = 0;
        // 1xx interim responses (100 Continue) come first and are skipped.
        for (;;) {
          const end = buf.indexOf(CRLFCRLF, start);
          if (end < 0) {
            if (buf.length - start > this.pool.options.maxHeadBytes)
              throw new HeadError('response head too large', 502);
            this.headBuf = start === 0 ? buf : buf.subarray(start);
            return;
          }
          const head = parseResponseHead(buf.toString('latin1', start, end));
          start = end + 4;
          if (head.status >= 100 && head.status < 200) {
            if (head.status === 101) throw new HeadError('unexpected protocol switch', 502);
            continue;
          }
          this.headBuf = null;
          this.head = head;
          const framing = responseFraming(this.method, head.status, head.headers);
          this.framing = framing;
          if (framing.kind === 'length') this.remaining = framing.length;
          else if (framing.kind === 'chunked') this.decoder = new ChunkedDecoder((p) => this.h.onData(p));
          this.h.onHead(head, framing);
          if (this.done) return;
          if (framing.kind === 'none') {
            this.finish(start === buf.length);
            return;
          }
          if (start < buf.length) this.body_(buf.subarray(start));
          return;
        }
      }
      this.body_(d);
    } catch (err) {
      this.fail(
        new UpstreamError(
          err instanceof HeadError ? err.message : 'malformed response',
          'UPSTREAM_PROTOCOL',
          this.head === null,
          false,
        ),
      );
    }
  }

  private body_(d: Buffer): void {
    const f = this.framing!;
    if (f.kind === 'length') {
      if (d.length <= this.remaining) {
        this.remaining -= d.length;
        this.h.onRaw(d);
        this.h.onData(d);
        if (this.remaining === 0) this.finish(true);
      } else {
        // More than the body: the server broke framing; deliver the body, drop the connection.
        const part = d.subarray(0, this.remaining);
        this.remaining = 0;
        this.h.onRaw(part);
        this.h.onData(part);
        this.finish(false);
      }
    } else if (f.kind === 'chunked') {
      const end = this.decoder!.feed(d);
      this.h.onRaw(end === d.length ? d : d.subarray(0, end));
      if (this.decoder!.done) this.finish(end === d.length);
    } else {
      this.h.onRaw(d);
      this.h.onData(d);
    }
  }

  /** The server half-closed: the end of a close-delimited body, else an error. */
  onEnd(): void {
    if (this.done) return;
    if (this.framing?.kind === 'close') {
      this.done = true;
      this.release(false);
      this.h.onEnd();
      return;
    }
    this.onSocketClose();
  }

  onSocketError(err: NodeJS.ErrnoException): void {
    if (this.done) return;
    const code = err.code ?? 'ECONNRESET';
    const connectFailed = !this.ps!.connected;
    if (this.retryable()) return this.retry();
    this.fail(new UpstreamError(err.message, code, !this.gotBytes, connectFailed));
  }

  onSocketClose(): void {
    if (this.done) return;
    if (this.framing?.kind === 'close' && this.head !== null) {
      this.done = true;
      this.release(false);
      this.h.onEnd();
      return;
    }
    if (this.retryable()) return this.retry();
    this.fail(
      new UpstreamError(
        'the model server closed the connection',
        'UPSTREAM_CLOSED',
        !this.gotBytes,
        !this.ps!.connected,
      ),
    );
  }

  /** A reused connection the server closed while it sat idle: nothing of ours was processed. */
  private retryable(): boolean {
    return !this.gotBytes && !this.retried && this.ps !== null && this.ps.connected && this.reused;
  }

  private retry(): void {
    this.retried = true;
    const old = this.ps!;
    old.call = null;
    old.socket.destroy();
    this.reused = false;
    this.send(this.pool.open());
  }

  private finish(reusable: boolean): void {
    this.done = true;
    this.release(reusable);
    this.h.onEnd();
  }

  private fail(err: UpstreamError): void {
    if (this.done) return;
    this.done = true;
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.release(false);
    this.h.onError(err);
  }

  private release(reusable: boolean): void {
    const ps = this.ps;
    if (ps === null) return;
    this.ps = null;
    ps.call = null;
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    const h = this.head;
    if (reusable && !this.closeAfter && h !== null && keepAlive(h.version, h.headers)) this.pool.putIdle(ps);
    else ps.socket.destroy();
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    const ps = this.ps;
    this.ps = null;
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    if (ps !== null) {
      ps.call = null;
      ps.socket.destroy();
    }
  }

  pause(): void {
    this.ps?.socket.pause();
  }

  resume(): void {
    this.ps?.socket.resume();
  }
}

export class Http1Pool {
  readonly options: PoolOptions;
  private readonly idle: PooledSocket[] = [];
  private readonly all = new Set<PooledSocket>();
  private closed = false;

  constructor(
    readonly host: string,
    readonly port: number,
    options: Partial<PoolOptions> = {},
  ) {
    this.options = { ...DEFAULT_POOL_OPTIONS, ...options };
  }

  /**
   * Sends a request. `head` is the complete request head, blank line included (`renderRequestHead`);
   * `body` its body (the head must carry its Content-Length).
   */
  request(
    method: string,
    head: string,
    body: Buffer | null,
    handler: UpstreamResponseHandler,
    closeAfter = false,
  ): UpstreamCall {
    const call = new Call(this, method, head, body ?? NO_BODY, handler, closeAfter);
    if (this.closed) {
      queueMicrotask(() => handler.onError(new UpstreamError('pool closed', 'UPSTREAM_CLOSED', true, true)));
      return call;
    }
    const idle = this.takeIdle();
    if (idle !== null) {
      call.reused = true;
      call.startOn(idle);
    } else {
      call.startOn(this.open());
    }
    return call;
  }

  /** @internal */
  takeIdle(): PooledSocket | null {
    while (this.idle.length > 0) {
      const ps = this.idle.pop()!;
      if (!ps.socket.destroyed) return ps;
    }
    return null;
  }

  /** @internal */
  putIdle(ps: PooledSocket): void {
    if (this.closed || this.idle.length >= this.options.maxIdle || ps.socket.destroyed) {
      ps.socket.destroy();
      return;
    }
    ps.socket.setTimeout(this.options.idleTimeoutMs);
    this.idle.push(ps);
  }

  /** @internal */
  open(): PooledSocket {
    const socket =
      this.options.connect === undefined
        ? connect({ host: this.host, port: this.port, noDelay: true })
        : this.options.connect(this.host, this.port);
    const ps = new PooledSocket(this, socket);
    this.all.add(ps);
    return ps;
  }

  /** @internal */
  forget(ps: PooledSocket): void {
    this.all.delete(ps);
    const i = this.idle.indexOf(ps);
    if (i >= 0) this.idle.splice(i, 1);
  }

  get size(): { idle: number; total: number } {
    return { idle: this.idle.length, total: this.all.size };
  }

  /** Closes idle connections now; calls in flight end with their connections. */
  close(): void {
    this.closed = true;
    for (const ps of this.idle) ps.socket.destroy();
    this.idle.length = 0;
  }

  destroy(): void {
    this.closed = true;
    for (const ps of this.all) ps.socket.destroy();
    this.all.clear();
    this.idle.length = 0;
  }
}

/** `METHOD path HTTP/1.1`, host, the given header lines, and Content-Length when there is a body. */
export function renderRequestHead(
  method: string,
  path: string,
  host: string,
  headerLines: string,
  bodyLength: number,
): string {
  return (
    method +
    ' ' +
    path +
    ' HTTP/1.1\r\nhost: ' +
    host +
    '\r\n' +
    headerLines +
    (bodyLength > 0 || method === 'POST' || method === 'PUT' || method === 'PATCH'
      ? 'content-length: ' + bodyLength + '\r\n'
      : '') +
    '\r\n'
  );
}
