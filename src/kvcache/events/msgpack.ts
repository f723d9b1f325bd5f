/**
 * A bounded msgpack reader for KV-event payloads, which come from the network: every length is checked
 * against the bytes left before anything is allocated, containers nest at most `maxDepth` deep, and no
 * container holds more than `maxItems` entries, so hostile input costs at most a pass over its bytes.
 * Integers beyond ±2^53 come back as bigint, never rounded; `bin` comes back as a view, not a copy.
 */

/** A decoded msgpack value. Maps keep their entries in wire order (keys need not be strings). */
export type MsgValue = null | boolean | number | bigint | string | Uint8Array | MsgValue[] | MsgMap | MsgExt;

export class MsgMap {
  constructor(readonly entries: [MsgValue, MsgValue][]) {}

  /** The value under a string key, or undefined; later duplicates win, as in Go's and Python's decoders. */
  get(key: string): MsgValue | undefined {
    let found: MsgValue | undefined;
    for (const [k, v] of this.entries) if (k === key) found = v;
    return found;
  }
}

export class MsgExt {
  constructor(
    readonly type: number,
    readonly data: Uint8Array,
  ) {}
}

export class MsgpackError extends Error {
  constructor(
    message: string,
    /** A configured limit was hit (the bytes may be well-formed). */
    readonly overLimit = false,
  ) {
    super(message);
    this.name = 'MsgpackError';
  }
}

export interface ReaderLimits {
  readonly maxDepth: number;
  readonly maxItems: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

export class MsgpackReader {
  pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly limits: ReaderLimits,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  /** One complete value. */
  read(depth = 0): MsgValue {
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b <= 0xbf) return this.str(b & 0x1f);
    if (b >= 0x90 && b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b >= 0x80 && b <= 0x8f) return this.map(b & 0x0f, depth);
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xc7:
        return this.ext(this.u8());
      case 0xc8:
        return this.ext(this.u16());
      case 0xc9:
        return this.ext(this.u32());
      case 0xca:
        return this.f32();
      case 0xcb:
        return this.f64();
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf: {
        this.need(8);
        const v = this.view.getBigUint64(this.pos);
        this.pos += 8;
        return v <= MAX_SAFE ? Number(v) : v;
      }
      case 0xd0: {
        this.need(1);
        return this.view.getInt8(this.pos++);
      }
      case 0xd1: {
        this.need(2);
        const v = this.view.getInt16(this.pos);
        this.pos += 2;
        return v;
      }
      case 0xd2: {
        this.need(4);
        const v = this.view.getInt32(this.pos);
        this.pos += 4;
        return v;
      }
      case 0xd3: {
        this.need(8);
        const v = this.view.getBigInt64(this.pos);
        this.pos += 8;
        return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
      }
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default:
        // 0xc1 is the one byte msgpack never uses.
        throw new MsgpackError(`invalid msgpack byte 0x${b.toString(16)} at ${this.pos - 1}`);
    }
  }

  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw new MsgpackError('truncated msgpack');
  }

  private u8(): number {
    this.need(1);
    return this.bytes[this.pos++] as number;
  }

  private u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  private u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  private f32(): number {
    this.need(4);
    const v = this.view.getFloat32(this.pos);
    this.pos += 4;
    return v;
  }

  private f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos);
    this.pos += 8;
    return v;
  }

  private str(n: number): string {
    this.need(n);
    const start = this.pos;
    this.pos += n;
    // Tags, keys and media are short ASCII: building them by hand beats a TextDecoder call.
    if (n <= 24) {
      let ascii = '';
      let i = start;
      for (; i < start + n; i++) {
        const c = this.bytes[i] as number;
        if (c >= 0x80) break;
        ascii += String.fromCharCode(c);
      }
      if (i === start + n) return ascii;
    }
    const s = this.bytes.subarray(start, start + n);
    try {
      return utf8.decode(s);
    } catch {
      throw new MsgpackError('invalid UTF-8 in a msgpack string');
    }
  }

  private bin(n: number): Uint8Array {
    this.need(n);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  private ext(n: number): MsgExt {
    this.need(1 + n);
    const type = this.view.getInt8(this.pos++);
    return new MsgExt(type, this.bin(n));
  }

  private container(n: number, minBytesEach: number, depth: number): void {
    checkContainer(n, minBytesEach, this.remaining, depth, this.limits);
  }

  private array(n: number, depth: number): MsgValue[] {
    this.container(n, 1, depth);
    const out: MsgValue[] = new Array<MsgValue>(n);
    for (let i = 0; i < n; i++) out[i] = this.read(depth + 1);
    return out;
  }

  private map(n: number, depth: number): MsgMap {
    this.container(n, 2, depth);
    const entries: [MsgValue, MsgValue][] = new Array<[MsgValue, MsgValue]>(n);
    for (let i = 0; i < n; i++) {
      const k = this.read(depth + 1);
      entries[i] = [k, this.read(depth + 1)];
    }
    return new MsgMap(entries);
  }
}

/** Decodes exactly one value; trailing bytes are an error (a frame holds one batch). */
export function readMsgpack(bytes: Uint8Array, limits: ReaderLimits): MsgValue {
  const r = new MsgpackReader(bytes, limits);
  const v = r.read();
  if (r.remaining !== 0) throw new MsgpackError(`${r.remaining} bytes after the msgpack value`);
  return v;
}

/** Bytes after the head byte for fixed-size types; -1 for variable ones, -2 for the invalid 0xc1. */
export const FIXED_TAIL = new Int8Array(256).fill(-1);
for (let b = 0; b < 256; b++) {
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) FIXED_TAIL[b] = 0;
}
FIXED_TAIL[0xc1] = -2;
for (const [b, n] of [
  [0xcc, 1],
  [0xd0, 1],
  [0xcd, 2],
  [0xd1, 2],
  [0xca, 4],
  [0xce, 4],
  [0xd2, 4],
  [0xcb, 8],
  [0xcf, 8],
  [0xd3, 8],
  [0xd4, 2],
  [0xd5, 3],
  [0xd6, 5],
  [0xd7, 9],
  [0xd8, 17],
] as const)
  FIXED_TAIL[b] = n;

function bigEndian(bytes: Uint8Array, pos: number, n: number): number {
  if (pos + n > bytes.length) throw new MsgpackError('truncated msgpack');
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + (bytes[pos + i] as number);
  return v;
}

/**
 * Skips one value starting at `pos` and returns where it ends, checking the same limits as the reader
 * but building nothing (strings are not decoded, so their UTF-8 is not checked): how a decoder steps
 * over fields it does not use and finds the end of an event it could not use. `depth` is the depth of
 * the value itself.
 */
export function skipMsgpack(bytes: Uint8Array, pos: number, depth: number, limits: ReaderLimits): number {
  if (pos >= bytes.length) throw new MsgpackError('truncated msgpack');
  const b = bytes[pos++] as number;
  const fixed = FIXED_TAIL[b] as number;
  if (fixed >= 0) {
    if (pos + fixed > bytes.length) throw new MsgpackError('truncated msgpack');
    return pos + fixed;
  }
  if (fixed === -2) throw new MsgpackError(`invalid msgpack byte 0xc1 at ${pos - 1}`);
  let items = 0;
  let perItem = 1;
  let body = -1;
  if (b >= 0xa0 && b <= 0xbf) body = b & 0x1f;
  else if (b >= 0x90 && b <= 0x9f) items = b & 0x0f;
  else if (b >= 0x80 && b <= 0x8f) {
    items = b & 0x0f;
    perItem = 2;
  }
  switch (b) {
    case 0xc4:
    case 0xd9:
      body = bigEndian(bytes, pos, 1);
      pos += 1;
      break;
    case 0xc5:
    case 0xda:
      body = bigEndian(bytes, pos, 2);
      pos += 2;
      break;
    case 0xc6:
    case 0xdb:
      body = bigEndian(bytes, pos, 4);
      pos += 4;
      break;
    case 0xc7:
      body = 1 + bigEndian(bytes, pos, 1);
      pos += 1;
      break;
    case 0xc8:
      body = 1 + bigEndian(bytes, pos, 2);
      pos += 2;
      break;
    case 0xc9:
      body = 1 + bigEndian(bytes, pos, 4);
      pos += 4;
      break;
    case 0xdc:
      items = bigEndian(bytes, pos, 2);
      pos += 2;
      break;
    case 0xdd:
      items = bigEndian(bytes, pos, 4);
      pos += 4;
      break;
    case 0xde:
      items = bigEndian(bytes, pos, 2);
      perItem = 2;
      pos += 2;
      break;
    case 0xdf:
      items = bigEndian(bytes, pos, 4);
      perItem = 2;
      pos += 4;
      break;
  }
  if (body >= 0) {
    if (pos + body > bytes.length) throw new MsgpackError('truncated msgpack');
    return pos + body;
  }
  checkContainer(items, perItem, bytes.length - pos, depth, limits);
  for (let i = items * perItem; i > 0; i--) {
    // Scalars inline (a prompt's token ids are thousands of them); containers and strings recurse.
    const f = FIXED_TAIL[bytes[pos] as number] as number;
    if (f >= 0 && pos + 1 + f <= bytes.length) pos += 1 + f;
    else pos = skipMsgpack(bytes, pos, depth + 1, limits);
  }
  return pos;
}

/**
 * The checks every container header passes before anything is allocated for it: each entry takes at
 * least one byte, so a length beyond the bytes left is a lie; then the depth and size limits.
 */
export function checkContainer(
  n: number,
  valuesEach: number,
  remaining: number,
  depth: number,
  limits: ReaderLimits,
): void {
  if (n * valuesEach > remaining) throw new MsgpackError('truncated msgpack');
  if (depth >= limits.maxDepth) throw new MsgpackError('msgpack nested too deeply', true);
  if (n > limits.maxItems) throw new MsgpackError(`msgpack container of ${n} entries is too large`, true);
}
