/**
 * Incremental decoder of the chunked transfer coding (RFC 9112 §7.1): fed raw bytes as they arrive, it
 * hands out the data of each chunk as sub-arrays of the input (no copies) and says where the message
 * ends, so a relay can forward the raw bytes while still seeing the payload. Chunk extensions are
 * skipped; trailer fields are read and dropped.
 */
import { HeadError } from './head.js';

const enum State {
  Size,
  SizeExt,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  TrailerLf,
  Done,
}

const CR = 0x0d;
const LF = 0x0a;

export class ChunkedDecoder {
  private state = State.Size;
  private remaining = 0;
  private sizeDigits = 0;
  private trailerLineLength = 0;
  private trailerBytes = 0;

  constructor(
    /** Decoded data, as sub-arrays of the fed buffer. */
    private readonly onData: (data: Buffer) => void,
    private readonly maxTrailerBytes = 16 * 1024,
  ) {}

  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Consumes bytes of `buf` from `start`; returns the index just past the message's last byte when it
   * ended inside `buf`, else `buf.length`. Throws `HeadError` on malformed framing.
   */
  feed(buf: Buffer, start = 0): number {
    let i = start;
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case State.Size: {
          const c = buf[i]!;
          const d = hexValue(c);
          if (d >= 0) {
            if (++this.sizeDigits > 12) throw new HeadError('chunk size too large');
            this.remaining = this.remaining * 16 + d;
            i++;
          } else if (this.sizeDigits === 0) {
            throw new HeadError('malformed chunk size');
          } else if (c === CR) {
            this.state = State.SizeLf;
            i++;
          } else if (c === 0x3b || c === 0x20 || c === 0x09) {
            this.state = State.SizeExt;
            i++;
          } else {
            throw new HeadError('malformed chunk size');
          }
          break;
        }
        case State.SizeExt: {
          const cr = buf.indexOf(CR, i);
          if (cr < 0) {
            if (buf.indexOf(LF, i) >= 0) throw new HeadError('bare LF in chunk extension');
            i = n;
          } else {
            if (buf.indexOf(LF, i) >= 0 && buf.indexOf(LF, i) < cr)
              throw new HeadError('bare LF in chunk extension');
            i = cr + 1;
            this.state = State.SizeLf;
          }
          break;
        }
        case State.SizeLf:
          if (buf[i] !== LF) throw new HeadError('malformed chunk size line');
          i++;
          this.sizeDigits = 0;
          if (this.remaining === 0) {
            this.state = State.Trailer;
            this.trailerLineLength = 0;
          } else {
            this.state = State.Data;
          }
          break;
        case State.Data: {
          const take = Math.min(this.remaining, n - i);
          this.onData(buf.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = State.DataCr;
          break;
        }
        case State.DataCr:
          if (buf[i] !== CR) throw new HeadError('chunk data not followed by CRLF');
          i++;
          this.state = State.DataLf;
          break;
        case State.DataLf:
          if (buf[i] !== LF) throw new HeadError('chunk data not followed by CRLF');
          i++;
          this.state = State.Size;
          break;
        case State.Trailer: {
          const c = buf[i]!;
          i++;
          if (++this.trailerBytes > this.maxTrailerBytes) throw new HeadError('trailer section too large');
          if (c === CR) this.state = State.TrailerLf;
          else if (c === LF) throw new HeadError('bare LF in trailer');
          else this.trailerLineLength++;
          break;
        }
        case State.TrailerLf:
          if (buf[i] !== LF) throw new HeadError('bare CR in trailer');
          i++;
          if (this.trailerLineLength === 0) {
            this.state = State.Done;
            return i;
          }
          this.trailerLineLength = 0;
          this.state = State.Trailer;
          break;
        case State.Done:
          return i;
      }
    }
    return n;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
