/**
 * Request keys: the indexer's own chained 64-bit hash of a prompt's full blocks, computed the same way
 * from the token ids of a KV event (write path) and of a request (read path), so engine hash algorithm
 * and `PYTHONHASHSEED` do not matter. Bit for bit llm-d's current scheme (llm-d-router
 * `kvblock/token_processor.go`), so a Redis index can be shared with Go replicas:
 *
 *  - `cbor-fnv` (default): key = FNV-64a(canonical CBOR `[parent, tokens, extra]`), where `extra` is
 *    null or an array of `{"Hash": <string>}` maps (multimodal identifiers, the cache salt on block 0);
 *    the chain starts at the model's root, FNV-64a(CBOR `[FNV-64a(hashSeed), null, "<model>"]`);
 *  - `xxh64`: key = XXH64(parent as u64 LE ‖ tokens as u32 LE ‖ per extra string: u64 LE length ‖
 *    bytes); root = that of (XXH64(hashSeed), no tokens, [model]).
 *
 * The trailing partial block is never keyed: an engine only announces full blocks. Keys are returned
 * as `KeyList`, pairs of unsigned 32-bit halves, which is what the index stores. FNV runs over the
 * CBOR bytes as they are produced, with no buffer, no bigint and no allocation per block: for blocks
 * of fewer than 24 tokens (llm-d's 16 included) in a small WebAssembly module built below from its
 * opcodes, one call per run of blocks without extras, a byte costing one 64-bit xor and multiply;
 * otherwise in JavaScript on two 32-bit halves. Blocks with extras, the model's root and a parent
 * whose upper half is 0 (a shorter CBOR head) take a general path that encodes into a buffer first.
 */
import { xxh64 } from '@node-rs/xxhash';
import { get, i32c, i64c, section, set, uleb, W_I32, W_I64, type Code } from '../core/wasm-encoding.js';

/** 64-bit keys as [hi, lo] pairs of unsigned 32-bit halves: key i is (keys[2i], keys[2i + 1]). */
export type KeyList = Uint32Array;

export type HashAlgorithm = 'cbor-fnv' | 'xxh64';

export interface TokenProcessorConfig {
  /** Tokens per block (llm-d's `blockSizeTokens`, default 16). */
  readonly blockSizeTokens: number;
  /** llm-d's `hashSeed` (default ""): only the chain's start depends on it. */
  readonly hashSeed: string;
  readonly hashAlgorithm: HashAlgorithm;
}

export const DEFAULT_TOKEN_PROCESSOR: TokenProcessorConfig = {
  blockSizeTokens: 16,
  hashSeed: '',
  hashAlgorithm: 'cbor-fnv',
};

/** Per block: the strings that taint its key (null: none). */
export type BlockExtras = readonly (readonly string[] | null)[];

const FNV_OFFSET_HI = 0xcbf29ce4;
const FNV_OFFSET_LO = 0x84222325;
/** The low 32 bits of the FNV prime 2^40 + 0x1b3. */
const FNV_PRIME_LO = 0x1b3;

/** 0x1b3 / 2^32, exactly (0x1b3 has 9 significant bits). */
const FNV_PRIME_LO_2_32 = FNV_PRIME_LO / 4294967296;

/**
 * The upper 32 bits of x · 0x1b3 for x an unsigned 32-bit value held as a signed int32: x · 0x1b3 is
 * below 2^41, so x · (0x1b3 / 2^32) is exact in a double, and below 2^9.
 */
function mulHi(x: number): number {
  return ((x >>> 0) * FNV_PRIME_LO_2_32) | 0;
}

/** FNV-64a state after the bytes 0x83 (array of 3) and 0x1b (uint64 follows): every block starts so. */
const [HEAD_HI, HEAD_LO] = ((): [number, number] => {
  let hi = FNV_OFFSET_HI | 0;
  let lo = FNV_OFFSET_LO | 0;
  for (const byte of [0x83, 0x1b]) {
    const x = lo ^ byte;
    hi = (Math.imul(hi, FNV_PRIME_LO) + (x << 8) + mulHi(x)) | 0;
    lo = Math.imul(x, FNV_PRIME_LO);
  }
  return [hi, lo];
})();
const utf8 = new TextEncoder();

/** Decimal form of a key, as Redis and the HTTP API spell it. */
export function keyToDecimal(hi: number, lo: number): string {
  return (BigInt(hi) * 4294967296n + BigInt(lo)).toString();
}

export function keyToBigInt(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** A bigint (taken modulo 2^64) as a [hi, lo] pair. */
export function bigIntToKey(v: bigint): [number, number] {
  const u = BigInt.asUintN(64, v);
  return [Number(u >> 32n), Number(u & 0xffffffffn)];
}

/** Keys of a list as bigints (tests, logs, the HTTP API). */
export function keysToBigInts(keys: KeyList): bigint[] {
  const out: bigint[] = new Array<bigint>(keys.length >>> 1);
  for (let i = 0; i < out.length; i++) out[i] = keyToBigInt(keys[2 * i]!, keys[2 * i + 1]!);
  return out;
}

/**
 * Canonical CBOR into a reusable byte buffer, then FNV-64a over it as two 32-bit halves: multiplying
 * by the prime 2^40 + 0x1b3 is h·0x1b3 + (h << 40).
 */
class CborFnv {
  buf = new Uint8Array(1024);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  /** A CBOR head: major type and argument, shortest form. `hi` is the argument's upper 32 bits. */
  head(major: number, hi: number, lo: number): void {
    const b = this.buf;
    let p = this.pos;
    const m = major << 5;
    if (hi !== 0) {
      b[p++] = m | 27;
      b[p++] = hi >>> 24;
      b[p++] = (hi >>> 16) & 0xff;
      b[p++] = (hi >>> 8) & 0xff;
      b[p++] = hi & 0xff;
      b[p++] = lo >>> 24;
      b[p++] = (lo >>> 16) & 0xff;
      b[p++] = (lo >>> 8) & 0xff;
      b[p++] = lo & 0xff;
    } else if (lo < 24) {
      b[p++] = m | lo;
    } else if (lo < 0x100) {
      b[p++] = m | 24;
      b[p++] = lo;
    } else if (lo < 0x10000) {
      b[p++] = m | 25;
      b[p++] = lo >>> 8;
      b[p++] = lo & 0xff;
    } else {
      b[p++] = m | 26;
      b[p++] = lo >>> 24;
      b[p++] = (lo >>> 16) & 0xff;
      b[p++] = (lo >>> 8) & 0xff;
      b[p++] = lo & 0xff;
    }
    this.pos = p;
  }

  text(s: Uint8Array): void {
    this.ensure(9 + s.length);
    this.head(3, 0, s.length);
    this.buf.set(s, this.pos);
    this.pos += s.length;
  }

  /**
   * FNV-64a of the bytes written; the halves land in `out`. The state stays in signed 32-bit integers
   * (values ≥ 2^31 kept unsigned would become doubles), and the low half's carry comes from 16-bit
   * limbs, so the loop is integer arithmetic only.
   */
  digest(out: [number, number]): void {
    const b = this.buf;
    let hi = FNV_OFFSET_HI | 0;
    let lo = FNV_OFFSET_LO | 0;
    for (let i = 0, n = this.pos; i < n; i++) {
      const x = lo ^ b[i]!;
      const carry = ((x >>> 16) * 0x1b3 + (((x & 0xffff) * 0x1b3) >>> 16)) >>> 16;
      hi = (Math.imul(hi, 0x1b3) + carry + (x << 8)) | 0;
      lo = Math.imul(x, 0x1b3);
    }
    out[0] = hi >>> 0;
    out[1] = lo >>> 0;
  }
}

/**
 * Keys of blocks `b`, `b + 1`, … of `bs` tokens without extras, chained from (phi, plo), into `out`:
 * FNV-64a over the block's CBOR `[parent, tokens, null]` as it is produced, byte by byte, with no
 * buffer. Each byte is `x = lo ^ byte; hi = hi · 0x1b3 + (x << 8) + mulHi(x); lo = x · 0x1b3`, the
 * halves kept as signed int32. Stops at the first block with extras or whose parent's upper half is 0
 * (a shorter CBOR head, left to the general path); returns the block it stopped at.
 */
function fnvRun(
  tokens: ArrayLike<number>,
  b: number,
  n: number,
  bs: number,
  head: Uint8Array,
  extras: BlockExtras | null,
  parentHi: number,
  parentLo: number,
  out: Uint32Array,
): number {
  const P = FNV_PRIME_LO;
  const headLen = head.length;
  let phi = parentHi | 0;
  let plo = parentLo | 0;
  for (; b < n; b++) {
    if (phi === 0 || (extras !== null && extras[b] !== null)) break;
    let hi = HEAD_HI;
    let lo = HEAD_LO;
    let x = 0;
    // The parent: 8 bytes, big-endian.
    x = lo ^ (phi >>> 24);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ ((phi >>> 16) & 0xff);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ ((phi >>> 8) & 0xff);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ (phi & 0xff);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ (plo >>> 24);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ ((plo >>> 16) & 0xff);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ ((plo >>> 8) & 0xff);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    x = lo ^ (plo & 0xff);
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    // The tokens' array head.
    for (let k = 0; k < headLen; k++) {
      x = lo ^ head[k]!;
      hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
      lo = Math.imul(x, P);
    }
    // The token ids, each a uint of 1, 2, 3 or 5 bytes.
    for (let i = b * bs, end = i + bs; i < end; i++) {
      const t = tokens[i]! | 0;
      if (t >>> 8 === 0) {
        if (t >= 24) {
          x = lo ^ 24;
          hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
          lo = Math.imul(x, P);
        }
        x = lo ^ t;
        hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
        lo = Math.imul(x, P);
        continue;
      }
      if (t >>> 16 === 0) {
        x = lo ^ 25;
        hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
        lo = Math.imul(x, P);
      } else {
        x = lo ^ 26;
        hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
        lo = Math.imul(x, P);
        x = lo ^ (t >>> 24);
        hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
        lo = Math.imul(x, P);
        x = lo ^ ((t >>> 16) & 0xff);
        hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
        lo = Math.imul(x, P);
      }
      x = lo ^ ((t >>> 8) & 0xff);
      hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
      lo = Math.imul(x, P);
      x = lo ^ (t & 0xff);
      hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
      lo = Math.imul(x, P);
    }
    // extra: null.
    x = lo ^ 0xf6;
    hi = (Math.imul(hi, P) + (((x << 8) + mulHi(x)) | 0)) | 0;
    lo = Math.imul(x, P);
    out[2 * b] = hi;
    out[2 * b + 1] = lo;
    phi = hi;
    plo = lo;
  }
  return b;
}

/**
 * f0 `run(in, n, bs, head, phi, plo, out) → blocks`: what `fnvRun` does, for `bs` < 24 (a one-byte
 * array head), over the token ids at `in` (uint32 LE) with the keys stored at `out` as (hi, lo) uint32
 * pairs. WebAssembly has the 64-bit multiply, so a byte is one xor and one multiply.
 */
function runBody(): Code {
  const [IN, N, BS, HEAD, PHI, PLO, OUT, H, PAR, B, END, T] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const prime = i64c(0x100, FNV_PRIME_LO);
  const step = (byte: Code): Code => [...get(H), ...byte, 0x85, ...prime, 0x7e, ...set(H)];
  const tByte = (shift: number, mask: boolean): Code => [
    ...get(T),
    ...(shift === 0 ? [] : [...i32c(shift), 0x76]),
    ...(mask ? [...i32c(0xff), 0x71] : []),
    0xad,
  ];
  const parent: Code = [];
  for (let s = 56; s >= 0; s -= 8) {
    parent.push(...step([...get(PAR), ...i64c(0, s), 0x88, ...i64c(0, 0xff), 0x83]));
  }
  // prettier-ignore
  const code: Code = [
    2, 2, W_I64, 3, W_I32,
    ...get(PHI), 0xad, ...i64c(0, 32), 0x86, ...get(PLO), 0xad, 0x84, ...set(PAR),
    0x02, 0x40, 0x03, 0x40,
      ...get(B), ...get(N), 0x4f, 0x0d, 1,
      ...get(PAR), ...i64c(0, 32), 0x88, 0x50, 0x0d, 1,
      ...i64c(HEAD_HI, HEAD_LO), ...set(H),
      ...parent,
      ...step([...get(HEAD), 0xad]),
      ...get(IN), ...get(BS), ...i32c(2), 0x74, 0x6a, ...set(END),
      0x03, 0x40,
        ...get(IN), 0x28, 2, 0, ...set(T),
        ...get(T), ...i32c(256), 0x49, 0x04, 0x40,
          ...get(T), ...i32c(24), 0x4f, 0x04, 0x40, ...step(i64c(0, 24)), 0x0b,
          ...step(tByte(0, false)),
        0x05,
          ...get(T), ...i32c(65536), 0x49, 0x04, 0x40,
            ...step(i64c(0, 25)),
          0x05,
            ...step(i64c(0, 26)), ...step(tByte(24, false)), ...step(tByte(16, true)),
          0x0b,
          ...step(tByte(8, true)), ...step(tByte(0, true)),
        0x0b,
        ...get(IN), ...i32c(4), 0x6a, ...set(IN),
        ...get(IN), ...get(END), 0x49, 0x0d, 0,
      0x0b,
      ...step(i64c(0, 0xf6)),
      ...get(OUT), ...get(H), ...i64c(0, 32), 0x88, 0xa7, 0x36, 2, 0,
      ...get(OUT), ...get(H), 0xa7, 0x36, 2, 4,
      ...get(OUT), ...i32c(8), 0x6a, ...set(OUT),
      ...get(H), ...set(PAR),
      ...get(B), ...i32c(1), 0x6a, ...set(B),
      0x0c, 0,
    0x0b, 0x0b,
    ...get(B),
    0x0b,
  ];
  return [...uleb(code.length), ...code];
}

function moduleBytes(): Uint8Array {
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [[0x60, 7, W_I32, W_I32, W_I32, W_I32, W_I32, W_I32, W_I32, 1, W_I32]]),
    ...section(3, [[0]]),
    ...section(5, [[0x00, 1]]),
    ...section(7, [
      [1, 0x6d, 2, 0],
      [1, 0x72, 0, 0],
    ]),
    ...section(10, [runBody()]),
  ]);
}

/** The slice of the WebAssembly JS API used here (the project's lib settings do not declare it). */
interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object) => { readonly exports: unknown };
}

interface FnvWasm {
  readonly m: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  r(inPtr: number, n: number, bs: number, head: number, phi: number, plo: number, outPtr: number): number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
let wasm: FnvWasm | null = null;
/** The module's memory as uint32 words, refreshed when it grows (which detaches the old view). */
let words = new Uint32Array(0);

function fnvWasm(size: number): FnvWasm {
  if (wasm === null) {
    const api = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    wasm = new api.Instance(new api.Module(moduleBytes())).exports as FnvWasm;
    words = new Uint32Array(wasm.m.buffer);
  }
  if (words.length * 4 < size) {
    wasm.m.grow(Math.ceil((size - words.length * 4) / 65536));
    words = new Uint32Array(wasm.m.buffer);
  }
  return wasm;
}

/** `fnvRun` through the WebAssembly module (`bs` < 24, little-endian hosts). */
function wasmRun(
  tokens: ArrayLike<number>,
  b: number,
  n: number,
  bs: number,
  extras: BlockExtras | null,
  parentHi: number,
  parentLo: number,
  out: Uint32Array,
): number {
  let e = b + 1;
  if (extras === null) e = n;
  else while (e < n && extras[e] === null) e++;
  const count = (e - b) * bs;
  const w = fnvWasm(4 * count + 8 * (e - b));
  const mem = words;
  const from = b * bs;
  // A typed array is copied in one memcpy (as fast as the loop from one block of 16 on, and faster
  // beyond); other array-likes element by element.
  if (count >= 16 && tokens instanceof Uint32Array) mem.set(tokens.subarray(from, from + count), 0);
  else for (let i = 0; i < count; i++) mem[i] = tokens[from + i]!;
  const done = w.r(0, e - b, bs, 0x80 | bs, parentHi, parentLo, 4 * count);
  for (let i = 0, o = 2 * b; i < 2 * done; i++) out[o + i] = mem[count + i]!;
  return b + done;
}

const HASH_KEY = utf8.encode('Hash');

export class TokenProcessor {
  readonly blockSize: number;
  readonly algorithm: HashAlgorithm;
  private readonly initHi: number;
  private readonly initLo: number;
  private readonly cbor = new CborFnv();
  private readonly pair: [number, number] = [0, 0];
  private readonly roots = new Map<string, readonly [number, number]>();
  private xbuf = Buffer.allocUnsafe(1024);
  /** CBOR head of a block's token array (major type 4, `blockSize` items). */
  private readonly tokensHead: Uint8Array;

  constructor(config: Partial<TokenProcessorConfig> = {}) {
    const c = { ...DEFAULT_TOKEN_PROCESSOR, ...config };
    if (!Number.isInteger(c.blockSizeTokens) || c.blockSizeTokens <= 0) {
      throw new RangeError(`blockSizeTokens must be a positive integer, got ${c.blockSizeTokens}`);
    }
    this.blockSize = c.blockSizeTokens;
    this.algorithm = c.hashAlgorithm;
    this.cbor.head(4, 0, this.blockSize);
    this.tokensHead = this.cbor.buf.slice(0, this.cbor.pos);
    this.cbor.pos = 0;
    if (c.hashAlgorithm === 'xxh64') {
      [this.initHi, this.initLo] = bigIntToKey(xxh64(Buffer.from(c.hashSeed, 'utf8')));
    } else {
      const seed = utf8.encode(c.hashSeed);
      this.cbor.ensure(seed.length);
      this.cbor.buf.set(seed, 0);
      this.cbor.pos = seed.length;
      this.cbor.digest(this.pair);
      [this.initHi, this.initLo] = this.pair;
    }
  }

  /** Full blocks in `tokenCount` tokens. */
  blocksIn(tokenCount: number): number {
    return Math.floor(tokenCount / this.blockSize);
  }

  /** The chain's start for `model` (a LoRA adapter's name when one is used). */
  root(model: string): readonly [number, number] {
    let r = this.roots.get(model);
    if (r === undefined) {
      const m = utf8.encode(model);
      r =
        this.algorithm === 'xxh64'
          ? this.xxhBlock(this.initHi, this.initLo, null, 0, 0, [model])
          : this.fnvBlock(this.initHi, this.initLo, null, 0, 0, null, m);
      // Models are few; a bound keeps hostile model names from growing the map.
      if (this.roots.size < 1024) this.roots.set(model, r);
    }
    return r;
  }

  /**
   * Keys of the full blocks of `tokens`, chained from `parent` (the model's root when null).
   * `extras[i]`, when given, taints block i (its length must be the number of full blocks).
   */
  keys(
    tokens: ArrayLike<number>,
    model: string,
    parent: readonly [number, number] | null = null,
    extras: BlockExtras | null = null,
  ): KeyList {
    const bs = this.blockSize;
    const n = Math.floor(tokens.length / bs);
    if (extras !== null && extras.length !== n) {
      throw new RangeError(`extras has ${extras.length} entries for ${n} full blocks`);
    }
    const out = new Uint32Array(2 * n);
    const start = parent ?? this.root(model);
    let hi = start[0];
    let lo = start[1];
    const xxh = this.algorithm === 'xxh64';
    for (let b = 0; b < n;) {
      const extra = extras === null ? null : extras[b]!;
      if (!xxh && extra === null && hi !== 0) {
        // The common case, many blocks at a time.
        b =
          bs < 24 && LITTLE_ENDIAN
            ? wasmRun(tokens, b, n, bs, extras, hi, lo, out)
            : fnvRun(tokens, b, n, bs, this.tokensHead, extras, hi, lo, out);
        hi = out[2 * b - 2]!;
        lo = out[2 * b - 1]!;
        continue;
      }
      const k = xxh
        ? this.xxhBlock(hi, lo, tokens, b * bs, bs, extra)
        : this.fnvBlock(hi, lo, tokens, b * bs, bs, extra, null);
      hi = k[0];
      lo = k[1];
      out[2 * b] = hi;
      out[2 * b + 1] = lo;
      b++;
    }
    return out;
  }

  /** FNV-64a of CBOR `[parent, tokens | null, extra]`; `text` is the root's model string. */
  private fnvBlock(
    phi: number,
    plo: number,
    tokens: ArrayLike<number> | null,
    start: number,
    count: number,
    extra: readonly string[] | null,
    text: Uint8Array | null,
  ): [number, number] {
    const c = this.cbor;
    c.pos = 0;
    c.ensure(16 + 5 * count);
    c.byte(0x83);
    c.head(0, phi, plo);
    if (tokens === null) c.byte(0xf6);
    else {
      c.head(4, 0, count);
      // Token ids inline: this loop is most of the bytes hashed.
      const b = c.buf;
      let p = c.pos;
      for (let i = start, end = start + count; i < end; i++) {
        const t = tokens[i]! >>> 0;
        if (t < 24) b[p++] = t;
        else if (t < 0x100) {
          b[p++] = 24;
          b[p++] = t;
        } else if (t < 0x10000) {
          b[p++] = 25;
          b[p++] = t >>> 8;
          b[p++] = t & 0xff;
        } else {
          b[p++] = 26;
          b[p++] = t >>> 24;
          b[p++] = (t >>> 16) & 0xff;
          b[p++] = (t >>> 8) & 0xff;
          b[p++] = t & 0xff;
        }
      }
      c.pos = p;
    }
    if (text !== null) c.text(text);
    else if (extra === null) c.byte(0xf6);
    else {
      c.ensure(9);
      c.head(4, 0, extra.length);
      for (const s of extra) {
        c.ensure(1);
        c.byte(0xa1);
        c.text(HASH_KEY);
        c.text(utf8.encode(s));
      }
    }
    const out: [number, number] = [0, 0];
    c.digest(out);
    return out;
  }

  private xxhBlock(
    phi: number,
    plo: number,
    tokens: ArrayLike<number> | null,
    start: number,
    count: number,
    extra: readonly string[] | null,
  ): [number, number] {
    let need = 8 + count * 4;
    const parts = extra === null ? [] : extra.map((s) => Buffer.from(s, 'utf8'));
    for (const p of parts) need += 8 + p.length;
    if (this.xbuf.length < need) this.xbuf = Buffer.allocUnsafe(Math.max(need, this.xbuf.length * 2));
    const b = this.xbuf;
    b.writeUInt32LE(plo, 0);
    b.writeUInt32LE(phi, 4);
    let off = 8;
    if (tokens !== null) {
      for (let i = start, end = start + count; i < end; i++, off += 4) b.writeUInt32LE(tokens[i]! >>> 0, off);
    }
    for (const p of parts) {
      b.writeUInt32LE(p.length, off);
      b.writeUInt32LE(0, off + 4);
      p.copy(b, off + 8);
      off += 8 + p.length;
    }
    return bigIntToKey(xxh64(b.subarray(0, off)));
  }
}
