/**
 * A RESP3 decoder and a command encoder for a raw Redis connection that has sent `HELLO 3` and
 * `CLIENT TRACKING ON`: pipelined replies and `invalidate` pushes arrive interleaved on one socket,
 * so the decoder hands values back in stream order, pushes in line with replies.
 *
 * The decoder is resumable: it keeps its place (an explicit stack of open aggregates, a partial
 * line, a partial bulk payload) across chunks, so every byte is looked at once however the stream is
 * cut. Untrusted lengths are checked against the limits before anything is buffered for them, and a
 * bulk payload is held only as the bytes actually received, never preallocated from its header.
 */

/** A Redis error reply (`-ERR ...` simple error or `!` blob error). */
export class Resp3Error extends Error {
  /** The first word of the message, e.g. 'ERR', 'NOSCRIPT', 'WRONGTYPE'. */
  readonly code: string;

  constructor(message: string) {
    super(message);
    this.name = 'Resp3Error';
    const space = message.indexOf(' ');
    this.code = space < 0 ? message : message.slice(0, space);
  }
}

/** The stream is not valid RESP3, or breaks a limit: the connection must be closed. */
export class Resp3ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Resp3ProtocolError';
  }
}

/** An out-of-band push (`>`): e.g. ['invalidate', ['key1', 'key2']] or ['invalidate', null]. */
export class Resp3Push {
  constructor(readonly items: Resp3Value[]) {}
}

export type Resp3Value =
  | string
  | number
  | bigint
  | boolean
  | null
  | Resp3Error
  | Resp3Value[]
  | Map<Resp3Value, Resp3Value>
  | Resp3Push;

export interface Resp3Limits {
  /** Largest bulk/verbatim/blob error payload accepted. Default 64 MiB. */
  readonly maxBulkBytes?: number;
  /** Most elements in one aggregate (array/set/push; a map counts pairs). Default 16,777,216. */
  readonly maxElements?: number;
  /** Deepest nesting of aggregates. Default 32. */
  readonly maxDepth?: number;
  /** Longest line of a simple string / error / number type (without CRLF). Default 65,536 bytes. */
  readonly maxLineBytes?: number;
}

const CR = 13;
const LF = 10;
const MINUS = 45;
const ONE = 49;

// Type bytes.
const T_SIMPLE = 43; // +
const T_ERROR = 45; // -
const T_INT = 58; // :
const T_DOUBLE = 44; // ,
const T_BIGNUM = 40; // (
const T_BOOL = 35; // #
const T_NULL = 95; // _
const T_BULK = 36; // $
const T_VERBATIM = 61; // =
const T_BLOBERR = 33; // !
const T_ARRAY = 42; // *
const T_SET = 126; // ~
const T_PUSH = 62; // >
const T_MAP = 37; // %
const T_ATTR = 124; // |

/** Type bytes a line may start with; anything else fails on its first byte, before buffering. */
const VALID_TYPE = new Uint8Array(256);
for (const t of [
  T_SIMPLE,
  T_ERROR,
  T_INT,
  T_DOUBLE,
  T_BIGNUM,
  T_BOOL,
  T_NULL,
  T_BULK,
  T_VERBATIM,
  T_BLOBERR,
  T_ARRAY,
  T_SET,
  T_PUSH,
  T_MAP,
  T_ATTR,
])
  VALID_TYPE[t] = 1;

// 15 digits stay below 2^53, so they accumulate exactly in a double.
const SAFE_DIGITS = 15;
const DOUBLE_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const BIGNUM_RE = /^[+-]?\d+$/;
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Returned by a header line that opened an aggregate or a bulk payload instead of giving a value. */
const NONE: unique symbol = Symbol('none');

const enum Kind {
  Array,
  Set,
  Push,
  Map,
  Attr,
}

/** An aggregate still waiting for `left` more elements (a map counts keys and values). */
interface Frame {
  readonly kind: Kind;
  left: number;
  readonly items: Resp3Value[];
}

function protocol(message: string): never {
  throw new Resp3ProtocolError(message);
}

/** A bare Buffer view of the caller's bytes (no copy). */
function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * A length header's value: -1 only where `allowNull`, otherwise plain decimal digits. Values past
 * 15 digits come back as Infinity, which every limit rejects.
 */
function parseLength(src: Buffer, s: number, e: number, allowNull: boolean): number {
  if (e === s) protocol('empty length');
  if (src[s] === 63) protocol('streamed strings and aggregates are not supported');
  if (src[s] === MINUS) {
    if (allowNull && e - s === 2 && src[s + 1] === ONE) return -1;
    protocol('negative length');
  }
  let n = 0;
  for (let i = s; i < e; i++) {
    const d = (src[i] ?? 0) - 48;
    if (d < 0 || d > 9) protocol('length is not a decimal number');
    n = n * 10 + d;
  }
  return e - s > SAFE_DIGITS ? Infinity : n;
}

function parseInteger(src: Buffer, s: number, e: number): number | bigint {
  let i = s;
  const sign = src[i];
  if (sign === MINUS || sign === 43) i++;
  if (i === e) protocol('integer has no digits');
  let n = 0;
  for (let j = i; j < e; j++) {
    const d = (src[j] ?? 0) - 48;
    if (d < 0 || d > 9) protocol('integer is not a decimal number');
    n = n * 10 + d;
  }
  if (e - i <= SAFE_DIGITS) return sign === MINUS ? 0 - n : n;
  const big = BigInt(src.toString('latin1', s, e));
  return big >= MIN_SAFE && big <= MAX_SAFE ? Number(big) : big;
}

function parseDouble(text: string): number {
  switch (text) {
    case 'inf':
    case '+inf':
      return Infinity;
    case '-inf':
      return -Infinity;
    case 'nan':
      return NaN;
  }
  if (!DOUBLE_RE.test(text)) protocol('malformed double');
  return Number(text);
}

export class Resp3Decoder {
  private readonly maxBulk: number;
  private readonly maxElements: number;
  private readonly maxDepth: number;
  private readonly maxLine: number;

  private readonly stack: Frame[] = [];
  private failed = false;
  private pending = 0;

  // A line cut by a chunk boundary: its bytes so far, and whether the CR already arrived.
  private lineBuf = Buffer.alloc(0);
  private lineLen = 0;
  private lineCR = false;

  // A bulk payload in progress (`bulkType` 0 when none): its length, and copies of what arrived.
  private bulkType = 0;
  private bulkLen = 0;
  private bulkGot = 0;
  private pieces: Buffer[] = [];

  constructor(limits: Resp3Limits = {}) {
    this.maxBulk = limits.maxBulkBytes ?? 64 * 1024 * 1024;
    this.maxElements = limits.maxElements ?? 16_777_216;
    this.maxDepth = limits.maxDepth ?? 32;
    this.maxLine = limits.maxLineBytes ?? 65_536;
  }

  /**
   * Feeds bytes as they arrive (any chunking, down to one byte at a time); returns the complete
   * top-level values decoded so far, in stream order (a Resp3Push is returned in line with replies).
   * Throws Resp3ProtocolError on malformed input or a broken limit; after that every call throws.
   */
  feed(chunk: Uint8Array): Resp3Value[] {
    if (this.failed) protocol('decoder already failed on malformed input');
    const out: Resp3Value[] = [];
    const c = asBuffer(chunk);
    this.pending += c.length;
    try {
      this.run(c, out);
    } catch (e) {
      this.failed = true;
      throw e;
    }
    return out;
  }

  /** Bytes received but not yet part of a complete value. */
  get pendingBytes(): number {
    return this.pending;
  }

  private run(c: Buffer, out: Resp3Value[]): void {
    const end = c.length;
    let p = 0;
    while (p < end) {
      let v: Resp3Value | typeof NONE;
      if (this.bulkType !== 0) {
        const n = this.bulkLen;
        const need = n + 2 - this.bulkGot;
        if (this.bulkGot === 0 && end - p >= need) {
          // The common case: the whole payload is in this chunk, decode it in place.
          if (c[p + n] !== CR || c[p + n + 1] !== LF) protocol('bulk payload not followed by CRLF');
          v = this.bulkValue(c, p, p + n);
          p += need;
        } else {
          // Copies, since the caller may reuse its chunk buffer once feed returns.
          const take = Math.min(need, end - p);
          this.pieces.push(Buffer.from(c.subarray(p, p + take)));
          this.bulkGot += take;
          p += take;
          if (take < need) break;
          const whole = Buffer.concat(this.pieces, n + 2);
          this.pieces = [];
          if (whole[n] !== CR || whole[n + 1] !== LF) protocol('bulk payload not followed by CRLF');
          v = this.bulkValue(whole, 0, n);
        }
        this.bulkType = 0;
        this.bulkGot = 0;
      } else if (this.lineCR) {
        if (c[p] !== LF) protocol('CR not followed by LF');
        p++;
        this.lineCR = false;
        const len = this.lineLen;
        this.lineLen = 0;
        v = this.line(this.lineBuf, 0, len);
      } else {
        if (this.lineLen === 0 && VALID_TYPE[c[p] ?? 0] !== 1) {
          const t = c[p];
          protocol(t === 46 || t === 59 ? 'streamed aggregates are not supported' : `bad type byte ${t}`);
        }
        // Content bytes this line may still take, type byte included.
        const allowed = this.maxLine + 1 - this.lineLen;
        const stop = Math.min(end, p + allowed + 1);
        let i = p;
        for (; i < stop; i++) {
          const b = c[i];
          if (b === CR) break;
          if (b === LF) protocol('bare LF');
        }
        if (i - p > allowed) protocol('line longer than maxLineBytes');
        if (i === end) {
          this.appendLine(c, p, end);
          break;
        }
        if (i + 1 === end) {
          this.appendLine(c, p, i);
          this.lineCR = true;
          break;
        }
        if (c[i + 1] !== LF) protocol('CR not followed by LF');
        if (this.lineLen === 0) v = this.line(c, p, i);
        else {
          this.appendLine(c, p, i);
          const len = this.lineLen;
          this.lineLen = 0;
          v = this.line(this.lineBuf, 0, len);
        }
        p = i + 2;
      }
      if (v !== NONE && this.emit(v, out)) this.pending = end - p;
    }
  }

  private appendLine(src: Buffer, s: number, e: number): void {
    const len = this.lineLen + (e - s);
    if (len > this.lineBuf.length) {
      const next = Buffer.allocUnsafe(Math.max(256, this.lineBuf.length * 2, len));
      this.lineBuf.copy(next, 0, 0, this.lineLen);
      this.lineBuf = next;
    }
    src.copy(this.lineBuf, this.lineLen, s, e);
    this.lineLen = len;
  }

  /** One complete line, `src[s]` its type byte and `e` its CR. */
  private line(src: Buffer, s: number, e: number): Resp3Value | typeof NONE {
    const t = src[s];
    const b = s + 1;
    switch (t) {
      case T_SIMPLE:
        return src.toString('utf8', b, e);
      case T_ERROR:
        return new Resp3Error(src.toString('utf8', b, e));
      case T_INT:
        return parseInteger(src, b, e);
      case T_DOUBLE:
        return parseDouble(src.toString('latin1', b, e));
      case T_BIGNUM: {
        const text = src.toString('latin1', b, e);
        if (!BIGNUM_RE.test(text)) protocol('malformed big number');
        return BigInt(text);
      }
      case T_BOOL:
        if (e - b === 1 && src[b] === 116) return true;
        if (e - b === 1 && src[b] === 102) return false;
        return protocol('boolean is neither #t nor #f');
      case T_NULL:
        if (e !== b) protocol('null with content');
        return null;
      case T_BULK:
      case T_VERBATIM:
      case T_BLOBERR: {
        const n = parseLength(src, b, e, t === T_BULK);
        if (n === -1) return null;
        if (n > this.maxBulk) protocol('bulk length above maxBulkBytes');
        if (t === T_VERBATIM && n < 4) protocol('verbatim string without a format');
        this.bulkType = t;
        this.bulkLen = n;
        this.bulkGot = 0;
        return NONE;
      }
      case T_ARRAY:
      case T_SET:
      case T_PUSH:
      case T_MAP:
      case T_ATTR: {
        const n = parseLength(src, b, e, t === T_ARRAY);
        if (n === -1) return null;
        if (n > this.maxElements) protocol('aggregate larger than maxElements');
        if (this.stack.length >= this.maxDepth) protocol('aggregates nested deeper than maxDepth');
        const kind =
          t === T_ARRAY
            ? Kind.Array
            : t === T_SET
              ? Kind.Set
              : t === T_PUSH
                ? Kind.Push
                : t === T_MAP
                  ? Kind.Map
                  : Kind.Attr;
        const left = kind === Kind.Map || kind === Kind.Attr ? 2 * n : n;
        if (left === 0) return kind === Kind.Attr ? NONE : build(kind, []);
        this.stack.push({ kind, left, items: [] });
        return NONE;
      }
      default:
        return protocol(`bad type byte ${t}`);
    }
  }

  private bulkValue(src: Buffer, s: number, e: number): Resp3Value {
    switch (this.bulkType) {
      case T_VERBATIM:
        if (src[s + 3] !== 58) protocol('verbatim string without a format');
        return src.toString('utf8', s + 4, e);
      case T_BLOBERR:
        return new Resp3Error(src.toString('utf8', s, e));
      default:
        return src.toString('utf8', s, e);
    }
  }

  /** Hands a finished value to its open aggregate, closing those it completes; true at top level. */
  private emit(value: Resp3Value, out: Resp3Value[]): boolean {
    let v = value;
    for (;;) {
      const f = this.stack[this.stack.length - 1];
      if (f === undefined) {
        out.push(v);
        return true;
      }
      // An attribute is read and dropped: the value after it takes its place.
      if (f.kind !== Kind.Attr) f.items.push(v);
      if (--f.left > 0) return false;
      this.stack.pop();
      if (f.kind === Kind.Attr) return false;
      v = build(f.kind, f.items);
    }
  }
}

function build(kind: Kind, items: Resp3Value[]): Resp3Value {
  if (kind === Kind.Push) return new Resp3Push(items);
  if (kind !== Kind.Map) return items;
  const m = new Map<Resp3Value, Resp3Value>();
  for (let i = 0; i < items.length; i += 2) m.set(items[i] ?? null, items[i + 1] ?? null);
  return m;
}

/** Encodes one command as a RESP array of bulk strings (what Redis expects from clients). */
export function encodeCommand(args: readonly (string | Uint8Array)[]): Buffer {
  const lens: number[] = [];
  let size = 3 + String(args.length).length;
  for (const a of args) {
    const n = typeof a === 'string' ? Buffer.byteLength(a, 'utf8') : a.byteLength;
    lens.push(n);
    size += 5 + String(n).length + n;
  }
  const out = Buffer.allocUnsafe(size);
  let pos = out.write(`*${args.length}\r\n`, 0, 'latin1');
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const n = lens[i] ?? 0;
    pos += out.write(`$${n}\r\n`, pos, 'latin1');
    if (typeof a === 'string') out.write(a, pos, n, 'utf8');
    else out.set(a, pos);
    pos += n;
    out[pos++] = CR;
    out[pos++] = LF;
  }
  return out;
}
