/**
 * One Redis command encoded by hand into a RESP frame, for the score path's EVALSHA with 512 keys.
 * ioredis builds every command as a string, one concatenation per argument, and the socket then
 * encodes it as UTF-8: for 500+ arguments that costs more client CPU than Redis spends on the walk.
 * Here the request keys go straight from their [hi, lo] halves to decimal digits in a reused buffer
 * (no string per key), and `FrameCommand` hands that buffer to ioredis as the command's wire form;
 * ioredis still owns the connection, the reply matching, the timeout and the errors.
 */
import { Command } from 'ioredis';

const CRLF0 = 13;
const CRLF1 = 10;
const utf8 = new TextEncoder();

/** Decimal digits of a non-negative int32. */
function digits(n: number): number {
  return n < 10
    ? 1
    : n < 100
      ? 2
      : n < 1e3
        ? 3
        : n < 1e4
          ? 4
          : n < 1e5
            ? 5
            : n < 1e6
              ? 6
              : n < 1e7
                ? 7
                : n < 1e8
                  ? 8
                  : n < 1e9
                    ? 9
                    : 10;
}

/** A growable RESP encoder for one array of bulk strings, reused across calls. */
export class FrameWriter {
  private buf = Buffer.allocUnsafe(16384);
  private pos = 0;

  /** Starts a frame of `count` arguments. */
  begin(count: number): this {
    this.pos = 0;
    this.ensure(16);
    this.byte(42); // '*'
    this.int(count);
    this.crlf();
    return this;
  }

  /** One argument, any string. */
  arg(s: string): this {
    const b = utf8.encode(s);
    this.ensure(b.length + 16);
    this.byte(36); // '$'
    this.int(b.length);
    this.crlf();
    this.buf.set(b, this.pos);
    this.pos += b.length;
    this.crlf();
    return this;
  }

  /**
   * One argument, a 64-bit key's decimal form (as `decimalKey` spells it). hi·2^32 + lo =
   * t·10^6 + rest, with a = hi·967296 + lo < 2^53 (exact in doubles), and t < 1.9·10^13 =
   * top·10^8 + mid: three chunks that fit int32, whose digits V8 computes with integer ops.
   */
  key(hi: number, lo: number): this {
    this.ensure(40);
    let top: number;
    let mid: number;
    let rest: number;
    if (hi === 0) {
      top = 0;
      mid = Math.floor(lo / 1e6);
      rest = lo - mid * 1e6;
    } else {
      const a = hi * 967296 + lo;
      const r = a % 1e6;
      const t = hi * 4294 + (a - r) / 1e6;
      top = Math.floor(t / 1e8);
      mid = t - top * 1e8;
      rest = r;
    }
    top |= 0;
    mid |= 0;
    rest |= 0;
    const len = top !== 0 ? digits(top) + 14 : mid !== 0 ? digits(mid) + 6 : digits(rest);
    this.byte(36); // '$'
    this.int(len);
    this.crlf();
    if (top !== 0) {
      this.int(top);
      this.fixed(mid, 8);
      this.fixed(rest, 6);
    } else if (mid !== 0) {
      this.int(mid);
      this.fixed(rest, 6);
    } else this.int(rest);
    this.crlf();
    return this;
  }

  /** The encoded frame (a copy: the writer's buffer is reused by the next frame). */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  // byte, crlf, int and fixed write within room the public methods ensured.
  private byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  private crlf(): void {
    this.buf[this.pos++] = CRLF0;
    this.buf[this.pos++] = CRLF1;
  }

  private int(n: number): void {
    this.fixed(n, digits(n));
  }

  /** The last `width` decimal digits of a non-negative int32, leading zeros kept. */
  private fixed(n: number, width: number): void {
    const b = this.buf;
    let x = n | 0;
    for (let i = this.pos + width - 1; i >= this.pos; i--) {
      const q = (x / 10) | 0;
      b[i] = 48 + x - q * 10;
      x = q;
    }
    this.pos += width;
  }
}

/**
 * A command whose wire form is a prebuilt frame. `name` is what ioredis sees (flags, logs); the
 * frame must encode that same command. Replies come back as UTF-8 strings.
 */
export class FrameCommand extends Command {
  constructor(
    name: string,
    private readonly frame: Buffer,
  ) {
    super(name, [], { replyEncoding: 'utf8' });
  }

  override toWritable(_socket: object): Buffer {
    return this.frame;
  }
}
