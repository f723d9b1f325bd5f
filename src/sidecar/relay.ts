/**
 * Relays a model server's answer onto the client's response as it arrives: status and headers (minus
 * hop-by-hop ones), then the body — chunked bodies byte for byte, SSE flushed event by event, with
 * backpressure both ways. With a cached-tokens rewrite, a 2xx SSE stream is rewritten line by line
 * and a 2xx JSON body once complete; Content-Length is then recomputed rather than forwarded.
 */
import type { UpstreamCall, UpstreamError, UpstreamResponseHandler } from '../core/http1/client.js';
import { RELAY_DROPPED_HEADERS } from '../core/http1/hop-by-hop.js';
import type { Framing, ResponseHead } from '../core/http1/head.js';
import type { Http1Response } from '../core/http1/server.js';
import { SseCachedTokensRewriter, rewriteCachedTokens } from './cached-tokens.js';

/** Response headers as `name: value` lines, without hop-by-hop and framing ones. */
export function responseHeaderLines(head: ResponseHead): string {
  let lines = '';
  const h = head.headers;
  for (const k in h)
    if (!RELAY_DROPPED_HEADERS.has(k) && k !== 'set-cookie') lines += k + ': ' + h[k] + '\r\n';
  if (head.setCookie) for (const c of head.setCookie) lines += 'set-cookie: ' + c + '\r\n';
  return lines;
}

export interface CachedTokensRewrite {
  readonly detailsField: string;
  readonly cached: number;
}

/** A JSON body larger than this is relayed as it comes, unrewritten. */
const MAX_REWRITE_BODY = 32 * 1024 * 1024;

const enum Mode {
  /** No head yet. */
  Waiting,
  /** Body bytes as received (chunk framing included when `raw`). */
  Pass,
  Sse,
  /** Held until complete, then rewritten and sent in one write. */
  Json,
}

export class Relay implements UpstreamResponseHandler {
  upstream: UpstreamCall | null = null;
  private mode = Mode.Waiting;
  private raw = false;
  private sse: SseCachedTokensRewriter | null = null;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private heldStatus = 0;
  private heldLines = '';
  private readonly resume = (): void => this.upstream?.resume();

  constructor(
    private readonly res: Http1Response,
    private readonly rewrite: CachedTokensRewrite | null,
    /**
     * The upstream failed before the client got a response head (it may have sent part of one to us).
     * The caller answers with an error; after the head, a failure cuts the client's connection.
     */
    private readonly onFailBeforeHead: (err: UpstreamError) => void,
    private readonly onFinish: () => void = () => undefined,
  ) {}

  /** Whether the upstream had started answering. */
  get answered(): boolean {
    return this.mode !== Mode.Waiting;
  }

  onHead(head: ResponseHead, framing: Framing): void {
    const res = this.res;
    const lines = responseHeaderLines(head);
    const ct = head.headers['content-type'] ?? '';
    const sse = ct.includes('text/event-stream');
    const rw = this.rewrite;
    const encoded = (head.headers['content-encoding'] ?? 'identity').toLowerCase() !== 'identity';
    if (rw !== null && head.status >= 200 && head.status < 300 && !encoded && framing.kind !== 'none') {
      if (sse) {
        this.mode = Mode.Sse;
        this.sse = new SseCachedTokensRewriter(rw.detailsField, rw.cached);
        res.writeHead(head.status, lines, 'chunked');
        res.flushHead();
        return;
      }
      if (ct.includes('json')) {
        this.mode = Mode.Json;
        this.heldStatus = head.status;
        this.heldLines = lines;
        return;
      }
    }
    this.mode = Mode.Pass;
    // Chunked bodies pass through byte for byte to an HTTP/1.1 client; others are framed afresh.
    this.raw = framing.kind === 'chunked' && res.request.version >= 11;
    res.writeHead(
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
    if (sse) res.flushHead();
  }

  onRaw(raw: Buffer): void {
    if (this.raw) this.forward(raw);
  }

  onData(data: Buffer): void {
    switch (this.mode) {
      case Mode.Pass:
        if (!this.raw) this.forward(data);
        return;
      case Mode.Sse: {
        const out = this.sse!.push(data);
        if (out.length > 0) this.forward(out);
        return;
      }
      case Mode.Json:
        if (this.heldBytes + data.length > MAX_REWRITE_BODY) {
          // Too big to hold: send what is held and relay the rest as it comes.
          this.mode = Mode.Pass;
          this.res.writeHead(this.heldStatus, this.heldLines, 'chunked');
          for (const h of this.held) this.forward(h);
          this.held = [];
          this.forward(data);
          return;
        }
        this.held.push(data);
        this.heldBytes += data.length;
        return;
      case Mode.Waiting:
        return;
    }
  }

  private forward(chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      this.upstream?.pause();
      this.res.onDrain(this.resume);
    }
  }

  onEnd(): void {
    const res = this.res;
    if (this.mode === Mode.Json) {
      const body = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
      this.held = [];
      const out = rewriteCachedTokens(body, this.rewrite!.detailsField, this.rewrite!.cached) ?? body;
      res.send(this.heldStatus, this.heldLines, out);
    } else {
      if (this.mode === Mode.Sse) {
        const rest = this.sse!.end();
        if (rest.length > 0) res.write(rest);
      }
      res.end();
    }
    this.onFinish();
  }

  onError(err: UpstreamError): void {
    if (!this.res.headersSent) {
      this.onFailBeforeHead(err);
      return;
    }
    // Mid-stream: the client must not take a truncated body for a whole one.
    this.res.destroy();
    this.onFinish();
  }

  abort(): void {
    this.upstream?.abort();
  }
}
