/**
 * Writes a server-sent-events response with one socket write per event.
 *
 * `ServerResponse.write` costs a cork, a `nextTick` and a three-buffer `writev` per call (chunk size,
 * data, CRLF); at hundreds of streams × one event per engine step that is most of a model server's
 * CPU. Once the headers are on the wire, each event goes straight to the socket already carrying its
 * chunked-encoding frame. The end of the response still goes through `res.end`, which writes the
 * terminating chunk and lets Node's keep-alive bookkeeping run as usual.
 *
 * `writeParts` is the per-token path: a pre-encoded prefix, a JSON string and a pre-encoded suffix are
 * framed in one shared scratch buffer, so an event allocates no concatenated or flattened strings —
 * at 25,000 events/s those strings were most of the young-generation garbage, and the scavenges they
 * caused were the tail of the per-token delay.
 */
import type { ServerResponse } from 'node:http';

/** Room before an event's bytes for its chunk-size line (`ffff\r\n` at most: events are smaller). */
const HEAD_ROOM = 6;
const SCRATCH_BYTES = 64 * 1024;
/** Largest event `writeParts` frames in the scratch buffer; a bigger one takes the string path. */
const MAX_SCRATCH_EVENT = SCRATCH_BYTES - HEAD_ROOM - 2;
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/**
 * Shared by every writer (the process is single-threaded and a write either completes inside the
 * call or keeps its bytes, in which case the writer moves on to a fresh buffer).
 */
let scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

export class SseWriter {
  private chunked = true;

  constructor(private readonly res: ServerResponse) {}

  /** Sends the status line and headers now, so the client sees the stream open before any token. */
  begin(headers: Readonly<Record<string, string>>): void {
    this.res.writeHead(200, headers);
    this.res.flushHeaders();
    // HTTP/1.0 clients get an unframed body ended by closing the connection.
    this.chunked = this.res.chunkedEncoding;
  }

  /** One event (or several concatenated), already framed as `data: …\n\n`. */
  write(frame: string): void {
    const res = this.res;
    const socket = res.socket;
    // Without a socket (a pipelined response waiting for its turn, or a closed connection) Node's own
    // buffering keeps the order right.
    if (socket === null || res.writableEnded) {
      if (!res.writableEnded) res.write(frame);
      return;
    }
    if (socket.destroyed) return;
    if (this.chunked) socket.write(Buffer.byteLength(frame).toString(16) + '\r\n' + frame + '\r\n');
    else socket.write(frame);
  }

  /**
   * One event made of `prefix`, the UTF-8 of `json`, and `suffix` (the caller's pre-encoded `data: …`
   * head and `…\n\n` tail around the one value that changes per event).
   */
  writeParts(prefix: Uint8Array, json: string, suffix: Uint8Array): void {
    const res = this.res;
    const socket = res.socket;
    const bound = prefix.length + json.length * 3 + suffix.length;
    if (socket === null || res.writableEnded || !this.chunked || bound > MAX_SCRATCH_EVENT) {
      this.write(Buffer.from(prefix).toString('utf8') + json + Buffer.from(suffix).toString('utf8'));
      return;
    }
    if (socket.destroyed) return;
    const buf = scratch;
    let p = HEAD_ROOM;
    buf.set(prefix, p);
    p += prefix.length;
    p += buf.write(json, p);
    buf.set(suffix, p);
    p += suffix.length;
    const size = p - HEAD_ROOM;
    buf[p++] = 13;
    buf[p++] = 10;
    let h = HEAD_ROOM - 2;
    buf[h] = 13;
    buf[h + 1] = 10;
    for (let s = size; ; s >>>= 4) {
      buf[--h] = HEX[s & 15]!;
      if (s < 16) break;
    }
    socket.write(buf.subarray(h, p));
    // A write the kernel did not take at once keeps referencing these bytes: leave them to it.
    if (socket.writableLength > 0) scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  }

  /** The last event(s) and the end of the response. */
  end(frame: string): void {
    if (!this.res.writableEnded) this.res.end(frame);
  }
}
