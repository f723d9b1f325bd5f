/**
 * A small canonical CBOR encoder (RFC 8949 §4.2.1 deterministic encoding), byte-for-byte what Python's
 * `cbor2.dumps(x, canonical=True)` produces for the types prefix-cache hashing needs: integers in their
 * shortest form, byte strings, text strings, definite-length arrays and null.
 *
 * The writer encodes into one growable buffer that callers reset and reuse, because block hashing calls it
 * once per KV block on the engine's hot path.
 */

/** Values `encodeCanonical` accepts. Numbers must be safe integers. */
export type CborValue = number | bigint | string | Uint8Array | null | readonly CborValue[];

const MAJOR_UINT = 0;
const MAJOR_NEGINT = 1;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const SIMPLE_NULL = 0xf6;
const TWO_POW_32 = 4294967296;

export class CborWriter {
  private buf: Uint8Array;
  private pos = 0;

  constructor(initialCapacity = 256) {
    this.buf = new Uint8Array(Math.max(16, initialCapacity));
  }

  /** Starts a new encoding; the buffer is kept. */
  reset(): this {
    this.pos = 0;
    return this;
  }

  get length(): number {
    return this.pos;
  }

  /** A view of the bytes written since the last reset; valid until the next write or reset. */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** A copy of the bytes written since the last reset. */
  toBytes(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  /** Any safe integer, positive or negative. */
  int(n: number): this {
    if (n >= 0) return this.uint(n);
    if (!Number.isSafeInteger(n)) throw new RangeError(`CBOR: ${n} is not a safe integer`);
    this.head(MAJOR_NEGINT, -1 - n);
    return this;
  }

  /** A non-negative safe integer. */
  uint(n: number): this {
    if (!(n >= 0 && Number.isSafeInteger(n)))
      throw new RangeError(`CBOR: ${n} is not a non-negative safe integer`);
    this.head(MAJOR_UINT, n);
    return this;
  }

  /** An integer in [-2^64, 2^64) given as a bigint. */
  bigint(n: bigint): this {
    if (n >= 0n) {
      if (n >= 1n << 64n) throw new RangeError('CBOR: integer does not fit in 64 bits');
      this.bigHead(MAJOR_UINT, n);
    } else {
      const m = -1n - n;
      if (m >= 1n << 64n) throw new RangeError('CBOR: integer does not fit in 64 bits');
      this.bigHead(MAJOR_NEGINT, m);
    }
    return this;
  }

  byteString(bytes: Uint8Array): this {
    this.head(MAJOR_BYTES, bytes.length);
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  textString(text: string): this {
    const len = Buffer.byteLength(text, 'utf8');
    this.head(MAJOR_TEXT, len);
    this.ensure(len);
    if (len === text.length && len < 64) {
      // ASCII fast path: short keys such as LoRA names and salts.
      const buf = this.buf;
      let p = this.pos;
      for (let i = 0; i < len; i++) buf[p++] = text.charCodeAt(i);
    } else {
      encoder.encodeInto(text, this.buf.subarray(this.pos, this.pos + len));
    }
    this.pos += len;
    return this;
  }

  /** The head of a definite-length array; the caller then writes `length` items. */
  arrayHeader(length: number): this {
    this.head(MAJOR_ARRAY, length);
    return this;
  }

  null(): this {
    this.ensure(1);
    this.buf[this.pos++] = SIMPLE_NULL;
    return this;
  }

  /** Any supported value, recursively. */
  value(v: CborValue): this {
    if (v === null) return this.null();
    if (typeof v === 'number') {
      if (!Number.isInteger(v)) throw new RangeError(`CBOR: only integers are supported, got ${v}`);
      return this.int(v);
    }
    if (typeof v === 'bigint') return this.bigint(v);
    if (typeof v === 'string') return this.textString(v);
    if (v instanceof Uint8Array) return this.byteString(v);
    this.arrayHeader(v.length);
    for (const item of v) this.value(item);
    return this;
  }

  private head(major: number, arg: number): void {
    this.ensure(9);
    const buf = this.buf;
    const mt = major << 5;
    let p = this.pos;
    if (arg < 24) {
      buf[p++] = mt | arg;
    } else if (arg < 0x100) {
      buf[p++] = mt | 24;
      buf[p++] = arg;
    } else if (arg < 0x10000) {
      buf[p++] = mt | 25;
      buf[p++] = arg >>> 8;
      buf[p++] = arg & 0xff;
    } else if (arg < TWO_POW_32) {
      buf[p++] = mt | 26;
      buf[p++] = arg >>> 24;
      buf[p++] = (arg >>> 16) & 0xff;
      buf[p++] = (arg >>> 8) & 0xff;
      buf[p++] = arg & 0xff;
    } else {
      const hi = Math.floor(arg / TWO_POW_32);
      const lo = arg - hi * TWO_POW_32;
      buf[p++] = mt | 27;
      buf[p++] = hi >>> 24;
      buf[p++] = (hi >>> 16) & 0xff;
      buf[p++] = (hi >>> 8) & 0xff;
      buf[p++] = hi & 0xff;
      buf[p++] = lo >>> 24;
      buf[p++] = (lo >>> 16) & 0xff;
      buf[p++] = (lo >>> 8) & 0xff;
      buf[p++] = lo & 0xff;
    }
    this.pos = p;
  }

  private bigHead(major: number, arg: bigint): void {
    if (arg < BigInt(Number.MAX_SAFE_INTEGER)) {
      this.head(major, Number(arg));
      return;
    }
    this.ensure(9);
    this.buf[this.pos++] = (major << 5) | 27;
    for (let shift = 56n; shift >= 0n; shift -= 8n) this.buf[this.pos++] = Number((arg >> shift) & 0xffn);
  }

  private ensure(extra: number): void {
    const need = this.pos + extra;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }
}

const encoder = new TextEncoder();

/** Canonical CBOR of one value, in a fresh array. Convenience for tests and cold paths. */
export function encodeCanonical(value: CborValue): Uint8Array {
  return new CborWriter().value(value).toBytes();
}
