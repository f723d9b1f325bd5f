/**
 * A lean HTTP/1.1 server for the data plane (the gateway and the sidecar): one `net` socket per client,
 * requests parsed from the bytes as they arrive (pipelined ones queued), the whole body read before the
 * handler runs (a router needs it anyway), and responses written with as few socket writes as possible —
 * a small response is one write, a streamed one is one write per chunk. `node:http` spends several times
 * more CPU per request on objects, streams and events a proxy does not need; this is the part of the
 * request path where that shows.
 *
 * Malformed or oversized requests get their status (400, 413, 431, 501, 505) and the connection is
 * closed; nothing a client sends can throw out of here.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { ChunkedDecoder } from './chunked.js';
import {
  CRLFCRLF,
  HeadError,
  keepAlive,
  parseRequestHead,
  requestFraming,
  type Framing,
  type Headers,
} from './head.js';

export interface Http1ServerOptions {
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  readonly maxBodyBytes: number;
  /** An idle keep-alive connection (or one stuck sending a head) is closed after this long. */
  readonly idleTimeoutMs: number;
  /** The body of the answer to a request refused before the handler ran (bad framing, too large). */
  readonly errorBody: (status: number) => { contentType: string; body: string };
}

export const DEFAULT_SERVER_OPTIONS: Http1ServerOptions = {
  maxHeadBytes: 64 * 1024,
  maxHeaders: 100,
  maxBodyBytes: 64 * 1024 * 1024,
  idleTimeoutMs: 65_000,
  errorBody: (status) => ({ contentType: 'text/plain', body: `${reasonPhrase(status) || 'Bad Request'}\n` }),
};

export interface Http1Request {
  readonly method: string;
  /** The request target as sent, e.g. `/v1/completions?x=1`. */
  readonly target: string;
  readonly version: number;
  readonly headers: Headers;
  readonly body: Buffer;
  readonly keepAlive: boolean;
  readonly remoteAddress: string;
}

export type Http1Handler = (req: Http1Request, res: Http1Response) => void;

/** A body that is too large for this server; raised before the handler runs. */
class BodyTooLarge extends HeadError {
  constructor() {
    super('request body too large', 413);
  }
}

const REASONS: Readonly<Record<number, string>> = {
  100: 'Continue',
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? '';
}

const enum BodyMode {
  /** Not decided yet (no head written). */
  Unset,
  Length,
  Chunked,
  /** The caller writes already chunk-framed bytes. */
  RawChunked,
  /** Delimited by closing the connection (HTTP/1.0 clients). */
  Close,
  None,
}

export class Http1Response {
  headersSent = false;
  finished = false;
  private head: string | null = null;
  private mode = BodyMode.Unset;
  private closeAfter: boolean;
  private closeListeners: (() => void)[] | null = null;
  private drainListener: (() => void) | null = null;

  constructor(
    private readonly conn: Connection,
    readonly request: Http1Request,
  ) {
    this.closeAfter = !request.keepAlive;
  }

  get socket(): Socket {
    return this.conn.socket;
  }

  /** The client went away before the response ended. */
  get clientGone(): boolean {
    return this.conn.closed && !this.finished;
  }

  /**
   * `headerLines` are `name: value\r\n` lines (or a map), without framing headers: the body framing is
   * chosen here — `length` for a known size, `chunked` for a stream (HTTP/1.1), `raw-chunked` when the
   * caller relays bytes that are already chunk-framed, `none` for a bodiless status.
   */
  writeHead(
    status: number,
    headerLines: string | Readonly<Record<string, string | readonly string[]>>,
    framing: { length: number } | 'chunked' | 'raw-chunked' | 'none',
  ): void {
    if (this.headersSent || this.finished) return;
    let h = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
    h += typeof headerLines === 'string' ? headerLines : renderHeaders(headerLines);
    const v = this.request.version;
    if (framing === 'none' || this.request.method === 'HEAD') {
      this.mode = BodyMode.None;
      if (typeof framing === 'object') h += `content-length: ${framing.length}\r\n`;
    } else if (typeof framing === 'object') {
      this.mode = BodyMode.Length;
      h += `content-length: ${framing.length}\r\n`;
    } else if (v >= 11) {
      this.mode = framing === 'raw-chunked' ? BodyMode.RawChunked : BodyMode.Chunked;
      h += 'transfer-encoding: chunked\r\n';
    } else {
      // An HTTP/1.0 client knows no chunks: the end of the body is the end of the connection.
      this.mode = BodyMode.Close;
      this.closeAfter = true;
    }
    if (this.closeAfter || this.conn.server.closing) {
      this.closeAfter = true;
      h += 'connection: close\r\n';
    } else if (v < 11) {
      h += 'connection: keep-alive\r\n';
    }
    this.head = h + '\r\n';
    this.headersSent = true;
  }

  /** Puts the head on the wire now (a stream's first bytes may be a while). */
  flushHead(): void {
    if (this.head === null || this.conn.closed) return;
    this.conn.socket.write(this.head);
    this.head = null;
  }

  /** One piece of the body. Returns false when the client is not keeping up (wait for `onDrain`). */
  write(data: Buffer | string): boolean {
    if (this.finished || this.conn.closed) return true;
    const s = this.conn.socket;
    const head = this.head;
    this.head = null;
    switch (this.mode) {
      case BodyMode.Chunked: {
        const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
        if (len === 0) {
          if (head !== null) return s.write(head);
          return true;
        }
        const frame = len.toString(16) + '\r\n';
        if (typeof data === 'string') return s.write((head ?? '') + frame + data + '\r\n');
        s.cork();
        s.write(head === null ? frame : head + frame);
        s.write(data);
        const ok = s.write('\r\n');
        s.uncork();
        return ok;
      }
      case BodyMode.None:
        return head !== null ? s.write(head) : true;
      default: {
        if (head === null) return s.write(data);
        if (typeof data === 'string') return s.write(head + data);
        s.cork();
        s.write(head);
        const ok = s.write(data);
        s.uncork();
        return ok;
      }
    }
  }

  end(data?: Buffer | string): void {
    if (this.finished) return;
    if (this.conn.closed) {
      this.finished = true;
      return;
    }
    if (!this.headersSent) this.writeHead(200, '', { length: data === undefined ? 0 : byteLength(data) });
    const s = this.conn.socket;
    if (this.mode === BodyMode.Chunked) {
      const len = data === undefined ? 0 : byteLength(data);
      const head = this.head ?? '';
      this.head = null;
      if (len === 0) s.write(head + '0\r\n\r\n');
      else if (typeof data === 'string') s.write(head + len.toString(16) + '\r\n' + data + '\r\n0\r\n\r\n');
      else {
        s.cork();
        s.write(head + len.toString(16) + '\r\n');
        s.write(data!);
        s.write('\r\n0\r\n\r\n');
        s.uncork();
      }
    } else if (data !== undefined && byteLength(data) > 0) {
      this.write(data);
    } else if (this.head !== null) {
      s.write(this.head);
      this.head = null;
    }
    this.finished = true;
    this.conn.responseDone(this.closeAfter || this.mode === BodyMode.Close);
  }

  /** A complete response in one write: the common case of a small JSON body. */
  send(status: number, headerLines: string, body: Buffer | string): void {
    this.writeHead(status, headerLines, { length: byteLength(body) });
    this.end(body);
  }

  /** Abandon the response and the connection (e.g. the upstream failed mid-stream). */
  destroy(): void {
    this.finished = true;
    this.conn.socket.destroy();
  }

  /** Called once if the client goes away before the response ends. */
  onClose(listener: () => void): void {
    (this.closeListeners ??= []).push(listener);
  }

  /** Called once, the next time the socket's write buffer drains. */
  onDrain(listener: () => void): void {
    if (this.drainListener === null) {
      this.drainListener = listener;
      this.conn.socket.once('drain', () => {
        const l = this.drainListener;
        this.drainListener = null;
        l?.();
      });
    } else {
      this.drainListener = listener;
    }
  }

  /** @internal */
  clientClosed(): void {
    if (this.finished) return;
    const ls = this.closeListeners;
    this.closeListeners = null;
    if (ls) for (const l of ls) l();
  }
}

const EMPTY = Buffer.alloc(0);

function byteLength(d: Buffer | string): number {
  return typeof d === 'string' ? Buffer.byteLength(d) : d.length;
}

export function renderHeaders(h: Readonly<Record<string, string | readonly string[]>>): string {
  let out = '';
  for (const k in h) {
    const v = h[k]!;
    if (typeof v === 'string') out += k + ': ' + v + '\r\n';
    else for (const x of v) out += k + ': ' + x + '\r\n';
  }
  return out;
}

/** One client connection: its parse state and the response in progress. */
class Connection {
  closed = false;
  private buf: Buffer | null = null;
  /** Where to resume searching for the end of the head (bytes already searched). */
  private searched = 0;
  private head: {
    method: string;
    target: string;
    version: number;
    headers: Headers;
    keepAlive: boolean;
  } | null = null;
  private framing: Framing | null = null;
  private decoder: ChunkedDecoder | null = null;
  private bodyParts: Buffer[] = [];
  private bodyBytes = 0;
  private active: Http1Response | null = null;

  constructor(
    readonly server: Http1Server,
    readonly socket: Socket,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(server.options.idleTimeoutMs);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('timeout', () => {
      // A request in progress may legitimately take long (a generation); idle ones may not.
      if (this.active === null) socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
  }

  private onData(d: Buffer): void {
    this.buf = this.buf === null || this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    if (this.active !== null) {
      // A pipelined request behind one in progress: hold it, but not without bound.
      if (this.buf.length > this.server.options.maxHeadBytes + this.server.options.maxBodyBytes)
        this.socket.pause();
      return;
    }
    this.parse();
  }

  private parse(): void {
    const opts = this.server.options;
    try {
      while (this.active === null && !this.closed) {
        const buf = this.buf ?? EMPTY;
        if (this.head === null) {
          if (buf.length === 0) return;
          const from = Math.max(0, this.searched - 3);
          const end = buf.indexOf(CRLFCRLF, from);
          if (end < 0) {
            if (buf.length > opts.maxHeadBytes) throw new HeadError('request head too large', 431);
            this.searched = buf.length;
            return;
          }
          if (end > opts.maxHeadBytes) throw new HeadError('request head too large', 431);
          this.searched = 0;
          const h = parseRequestHead(buf.toString('latin1', 0, end), opts.maxHeaders);
          const framing = requestFraming(h.headers);
          if (framing.kind === 'length' && framing.length > opts.maxBodyBytes) throw new BodyTooLarge();
          this.head = { ...h, keepAlive: keepAlive(h.version, h.headers) };
          this.framing = framing;
          this.buf = buf.subarray(end + 4);
          if (framing.kind === 'chunked') this.decoder = new ChunkedDecoder((part) => this.addBody(part));
          const expect = h.headers['expect'];
          if (expect !== undefined && framing.kind !== 'none') {
            if (expect.toLowerCase() !== '100-continue') throw new HeadError('unsupported expectation', 417);
            this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
          }
          continue;
        }
        const framing = this.framing!;
        // The buffer moves past this request before the handler runs: a handler that answers at once
        // lets the next pipelined request be parsed.
        if (framing.kind === 'none') {
          this.dispatch(EMPTY);
        } else if (framing.kind === 'length') {
          if (buf.length < framing.length) return;
          this.buf = buf.subarray(framing.length);
          this.dispatch(buf.subarray(0, framing.length));
        } else {
          const end = this.decoder!.feed(buf);
          this.buf = buf.subarray(end);
          if (!this.decoder!.done) return;
          const parts = this.bodyParts;
          this.dispatch(parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.bodyBytes));
        }
      }
    } catch (err) {
      this.reject(err instanceof HeadError ? err.status : 400);
    }
  }

  private addBody(part: Buffer): void {
    this.bodyBytes += part.length;
    if (this.bodyBytes > this.server.options.maxBodyBytes) throw new BodyTooLarge();
    this.bodyParts.push(part);
  }

  private dispatch(body: Buffer): void {
    const h = this.head!;
    this.head = null;
    this.framing = null;
    this.decoder = null;
    this.bodyParts = [];
    this.bodyBytes = 0;
    const req: Http1Request = {
      method: h.method,
      target: h.target,
      version: h.version,
      headers: h.headers,
      body,
      keepAlive: h.keepAlive,
      remoteAddress: this.socket.remoteAddress ?? '',
    };
    const res = new Http1Response(this, req);
    this.active = res;
    try {
      this.server.handler(req, res);
    } catch {
      if (!res.headersSent) res.send(500, 'content-type: text/plain\r\n', 'internal error\n');
      else res.destroy();
    }
  }

  /** @internal */
  responseDone(close: boolean): void {
    this.active = null;
    if (close) {
      this.socket.end();
      return;
    }
    if (this.socket.isPaused()) this.socket.resume();
    // The next pipelined request, if its bytes are already here; not from inside this response's stack.
    if (this.buf !== null && this.buf.length > 0) process.nextTick(() => this.parse());
  }

  private reject(status: number): void {
    if (this.closed) return;
    const { contentType, body } = this.server.options.errorBody(status);
    this.socket.end(
      `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: ${contentType}\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    this.closed = true;
  }

  private onClose(): void {
    this.closed = true;
    this.server.connections.delete(this);
    this.active?.clientClosed();
  }
}

export class Http1Server {
  readonly net: Server;
  readonly options: Http1ServerOptions;
  /** @internal */
  readonly connections = new Set<Connection>();
  closing = false;

  constructor(
    readonly handler: Http1Handler,
    options: Partial<Http1ServerOptions> = {},
  ) {
    this.options = { ...DEFAULT_SERVER_OPTIONS, ...options };
    this.net = createServer({ noDelay: true }, (socket) => {
      this.connections.add(new Connection(this, socket));
    });
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(port, host, () => {
        this.net.off('error', reject);
        resolve((this.net.address() as { port: number }).port);
      });
    });
  }

  /** Stops accepting and closes every connection. */
  close(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => {
      this.net.close(() => resolve());
      for (const c of this.connections) c.socket.destroy();
    });
  }
}
