/**
 * Edits the top-level members of a JSON object without re-serialising it. One pass over the raw bytes
 * validates the whole text (RFC 8259, as strictly as `JSON.parse`) and records where each top-level
 * member starts and ends; a patch then rebuilds the object from those byte ranges, so every member it
 * does not touch — and every number in it, however large — reaches the next hop exactly as the client
 * wrote it. `JSON.parse` + `JSON.stringify` would round integers above 2^53 (a `seed`, a token id).
 *
 * The scanner is iterative (an explicit stack), so nesting depth cannot overflow the call stack, and
 * it is bounded by `maxDepth` and `maxBytes`; anything else it rejects with a `JsonPatchError` naming
 * the byte offset.
 */

export class JsonPatchError extends Error {
  constructor(
    message: string,
    /** Byte offset of the fault. */
    readonly offset: number,
  ) {
    super(`${message} at byte ${offset}`);
  }
}

export interface ScanLimits {
  /** Deepest nesting of objects and arrays accepted (the top-level object is depth 1). */
  readonly maxDepth: number;
  readonly maxBytes: number;
}

export const DEFAULT_SCAN_LIMITS: ScanLimits = { maxDepth: 512, maxBytes: 64 * 1024 * 1024 };

export type JsonKind = 'object' | 'array' | 'string' | 'number' | 'boolean' | 'null';

/** One top-level member; offsets index the scanned buffer. */
export interface JsonMember {
  readonly key: string;
  /** Just past the `{` or `,` before the member (its leading whitespace is part of it). */
  readonly start: number;
  readonly valueStart: number;
  readonly valueEnd: number;
  /** The `,` or `}` after the member (its trailing whitespace is part of it). */
  readonly end: number;
  readonly kind: JsonKind;
}

/** Raw JSON text of a value, or a removal. */
export type JsonEdit = string | Buffer | typeof REMOVE;

/** Marks a member for removal in `patch`. */
export const REMOVE: unique symbol = Symbol('remove');

export class JsonObject {
  private index: Map<string, number> | null = null;

  constructor(
    readonly buf: Buffer,
    /** Offset of the top-level `{`. */
    readonly open: number,
    /** Offset of the top-level `}`. */
    readonly close: number,
    readonly members: readonly JsonMember[],
  ) {}

  /** The member JSON.parse would keep for `key`: the last one. */
  member(key: string): JsonMember | undefined {
    if (this.index === null) {
      const m = new Map<string, number>();
      for (let i = 0; i < this.members.length; i++) m.set(this.members[i]!.key, i);
      this.index = m;
    }
    const i = this.index.get(key);
    return i === undefined ? undefined : this.members[i];
  }

  has(key: string): boolean {
    return this.member(key) !== undefined;
  }

  kind(key: string): JsonKind | undefined {
    return this.member(key)?.kind;
  }

  /** The value's raw bytes, as a view into the scanned buffer. */
  raw(key: string): Buffer | undefined {
    const m = this.member(key);
    return m === undefined ? undefined : this.buf.subarray(m.valueStart, m.valueEnd);
  }

  /** The value parsed; for reading small fields (a flag, a count), never for forwarding. */
  value(key: string): unknown {
    const r = this.raw(key);
    return r === undefined ? undefined : JSON.parse(r.toString('utf8'));
  }

  /** A nested object member, scanned (the bytes were validated already, so this cannot fail on them). */
  object(key: string, limits: ScanLimits = DEFAULT_SCAN_LIMITS): JsonObject | undefined {
    const m = this.member(key);
    if (m === undefined || m.kind !== 'object') return undefined;
    return scanObject(this.buf.subarray(m.valueStart, m.valueEnd), limits);
  }

  /**
   * A new object: members named in `edits` are replaced in place (keeping their position and the
   * whitespace around them) or removed; names not present are appended in the order given; every
   * other member is copied byte for byte. With duplicate keys, the last occurrence is the one
   * replaced and the earlier ones are dropped, so the result means what JSON.parse would have read.
   */
  patch(edits: Iterable<readonly [string, JsonEdit]>): Buffer {
    const want = new Map<string, JsonEdit>();
    for (const [k, v] of edits) want.set(k, v);
    if (want.size === 0) return this.buf;
    const buf = this.buf;
    const parts: Buffer[] = [buf.subarray(0, this.open + 1)];
    let emitted = 0;
    const done = new Set<string>();
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      const edit = want.get(m.key);
      if (edit === undefined) {
        if (emitted++ > 0) parts.push(COMMA);
        parts.push(buf.subarray(m.start, m.end));
        continue;
      }
      // Only the occurrence JSON.parse keeps is edited; the others go.
      if (this.member(m.key) !== m) continue;
      done.add(m.key);
      if (edit === REMOVE) continue;
      if (emitted++ > 0) parts.push(COMMA);
      parts.push(buf.subarray(m.start, m.valueStart), bytes(edit), buf.subarray(m.valueEnd, m.end));
    }
    for (const [k, v] of want) {
      if (done.has(k) || v === REMOVE) continue;
      if (emitted++ > 0) parts.push(COMMA);
      parts.push(Buffer.from(JSON.stringify(k) + ':'), bytes(v));
    }
    // An object emptied of its members still closes cleanly; its inner whitespace is not kept.
    parts.push(buf.subarray(this.close));
    return Buffer.concat(parts);
  }
}

const COMMA = Buffer.from(',');

function bytes(v: string | Buffer): Buffer {
  return typeof v === 'string' ? Buffer.from(v) : v;
}

const enum C {
  Tab = 0x09,
  Lf = 0x0a,
  Cr = 0x0d,
  Space = 0x20,
  Quote = 0x22,
  Plus = 0x2b,
  Comma = 0x2c,
  Minus = 0x2d,
  Dot = 0x2e,
  Slash = 0x2f,
  Zero = 0x30,
  Nine = 0x39,
  Colon = 0x3a,
  UpperE = 0x45,
  LBracket = 0x5b,
  Backslash = 0x5c,
  RBracket = 0x5d,
  LowerE = 0x65,
  LBrace = 0x7b,
  RBrace = 0x7d,
}

function isWs(c: number): boolean {
  return c === C.Space || c === C.Lf || c === C.Cr || c === C.Tab;
}

function isDigit(c: number): boolean {
  return c >= C.Zero && c <= C.Nine;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Escape letters allowed after a backslash: `"` `\` `/` b f n r t u. */
const ESCAPES = new Uint8Array(128);
for (const ch of '"\\/bfnrtu') ESCAPES[ch.charCodeAt(0)] = 1;

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

class Scanner {
  i = 0;

  constructor(
    readonly b: Buffer,
    readonly limits: ScanLimits,
  ) {}

  fail(msg: string, at = this.i): never {
    throw new JsonPatchError(msg, at);
  }

  ws(): void {
    const b = this.b;
    let i = this.i;
    while (i < b.length && isWs(b[i]!)) i++;
    this.i = i;
  }

  /** At a `"`: moves past the closing quote; returns whether an escape occurred. */
  string(): boolean {
    const b = this.b;
    let i = this.i + 1;
    let escaped = false;
    for (;;) {
      if (i >= b.length) this.fail('unterminated string', this.i);
      const c = b[i]!;
      if (c === C.Quote) break;
      if (c < 0x20) this.fail('control character in string', i);
      if (c === C.Backslash) {
        escaped = true;
        const e = b[i + 1];
        if (e === undefined || e >= 128 || ESCAPES[e] === 0) this.fail('invalid escape', i);
        if (e === 0x75) {
          for (let k = 2; k < 6; k++) {
            const h = b[i + k];
            if (h === undefined || !isHex(h)) this.fail('invalid \\u escape', i);
          }
          i += 6;
        } else i += 2;
        continue;
      }
      i++;
    }
    this.i = i + 1;
    return escaped;
  }

  number(): void {
    const b = this.b;
    let i = this.i;
    if (b[i] === C.Minus) i++;
    if (b[i] === C.Zero) i++;
    else if (b[i] !== undefined && isDigit(b[i]!)) while (i < b.length && isDigit(b[i]!)) i++;
    else this.fail('invalid number', i);
    if (b[i] === C.Dot) {
      i++;
      if (b[i] === undefined || !isDigit(b[i]!)) this.fail('invalid number', i);
      while (i < b.length && isDigit(b[i]!)) i++;
    }
    if (b[i] === C.LowerE || b[i] === C.UpperE) {
      i++;
      if (b[i] === C.Plus || b[i] === C.Minus) i++;
      if (b[i] === undefined || !isDigit(b[i]!)) this.fail('invalid number', i);
      while (i < b.length && isDigit(b[i]!)) i++;
    }
    this.i = i;
  }

  literal(word: Buffer): void {
    const b = this.b;
    if (
      this.i + word.length > b.length ||
      b.compare(word, 0, word.length, this.i, this.i + word.length) !== 0
    )
      this.fail('invalid literal');
    this.i += word.length;
  }

  /**
   * Scans one value at `i`; containers are walked with an explicit stack. Returns its kind.
   * `depth` is the nesting depth of the container holding this value.
   */
  value(depth: number): JsonKind {
    const b = this.b;
    const first = b[this.i];
    switch (first) {
      case C.Quote:
        this.string();
        return 'string';
      case 0x74:
        this.literal(TRUE);
        return 'boolean';
      case 0x66:
        this.literal(FALSE);
        return 'boolean';
      case 0x6e:
        this.literal(NULL);
        return 'null';
      case C.LBrace:
      case C.LBracket:
        this.container(depth);
        return first === C.LBrace ? 'object' : 'array';
      default:
        if (first === C.Minus || (first !== undefined && isDigit(first))) {
          this.number();
          return 'number';
        }
        return this.fail(first === undefined ? 'unexpected end of input' : 'unexpected character');
    }
  }

  /** At `{` or `[`: scans to just past the matching close. */
  private container(depth: number): void {
    const b = this.b;
    const max = this.limits.maxDepth;
    // 1 = object, 2 = array; index = nesting level below `depth`.
    const stack: number[] = [];
    const open = (c: number): void => {
      if (depth + stack.length + 1 > max) this.fail('nesting too deep');
      stack.push(c === C.LBrace ? 1 : 2);
      this.i++;
    };
    open(b[this.i]!);
    // Entering a container: it may be empty, else a member/element follows.
    let entering = true;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      this.ws();
      const c = b[this.i];
      if (entering) {
        entering = false;
        if ((top === 1 && c === C.RBrace) || (top === 2 && c === C.RBracket)) {
          this.i++;
          stack.pop();
          continue;
        }
      } else {
        // After a value: a separator or the close.
        if (c === C.Comma) {
          this.i++;
          this.ws();
        } else if ((top === 1 && c === C.RBrace) || (top === 2 && c === C.RBracket)) {
          this.i++;
          stack.pop();
          continue;
        } else
          this.fail(c === undefined ? 'unexpected end of input' : `expected , or ${top === 1 ? '}' : ']'}`);
      }
      if (top === 1) {
        if (b[this.i] !== C.Quote) this.fail('expected a member name');
        this.string();
        this.ws();
        if (b[this.i] !== C.Colon) this.fail('expected :');
        this.i++;
        this.ws();
      }
      const v = b[this.i];
      if (v === C.LBrace || v === C.LBracket) {
        open(v);
        entering = true;
      } else {
        this.value(depth + stack.length);
      }
    }
  }
}

/**
 * Scans `input`, which must be exactly one JSON object (whitespace around it allowed). Throws
 * `JsonPatchError` for anything else.
 */
export function scanObject(input: Buffer | string, limits: ScanLimits = DEFAULT_SCAN_LIMITS): JsonObject {
  const b = typeof input === 'string' ? Buffer.from(input) : input;
  if (b.length > limits.maxBytes) throw new JsonPatchError('document too large', limits.maxBytes);
  const s = new Scanner(b, limits);
  s.ws();
  if (b[s.i] !== C.LBrace) s.fail(s.i >= b.length ? 'empty document' : 'not a JSON object');
  if (limits.maxDepth < 1) s.fail('nesting too deep');
  const open = s.i;
  s.i++;
  const members: JsonMember[] = [];
  s.ws();
  if (b[s.i] === C.RBrace) {
    s.i++;
  } else {
    let start = open + 1;
    for (;;) {
      s.ws();
      if (b[s.i] !== C.Quote) s.fail('expected a member name');
      const keyStart = s.i;
      const escaped = s.string();
      const keyEnd = s.i;
      s.ws();
      if (b[s.i] !== C.Colon) s.fail('expected :');
      s.i++;
      s.ws();
      const valueStart = s.i;
      const kind = s.value(1);
      const valueEnd = s.i;
      s.ws();
      const c = b[s.i];
      if (c !== C.Comma && c !== C.RBrace)
        s.fail(c === undefined ? 'unexpected end of input' : 'expected , or }');
      const key = escaped
        ? (JSON.parse(b.toString('utf8', keyStart, keyEnd)) as string)
        : b.toString('utf8', keyStart + 1, keyEnd - 1);
      members.push({ key, start, valueStart, valueEnd, end: s.i, kind });
      s.i++;
      if (c === C.RBrace) break;
      start = s.i;
    }
  }
  const close = s.i - 1;
  s.ws();
  if (s.i !== b.length) s.fail('unexpected data after the object');
  return new JsonObject(b, open, close, members);
}

/** Whether `input` is one valid JSON value of any kind (for checking values before they are spliced in). */
export function isJsonValue(input: Buffer | string, limits: ScanLimits = DEFAULT_SCAN_LIMITS): boolean {
  const b = typeof input === 'string' ? Buffer.from(input) : input;
  if (b.length > limits.maxBytes) return false;
  const s = new Scanner(b, limits);
  try {
    s.ws();
    s.value(0);
    s.ws();
    return s.i === b.length;
  } catch (err) {
    if (err instanceof JsonPatchError) return false;
    throw err;
  }
}
