/**
 * The block-hash chain of the approximate prefix cache (upstream `approximateprefix/hashing.go`):
 * `prev = XXH64(targetModel ‖ cacheSalt)`; for each run of ≤ blockSize token ids (the last partial run
 * included) `blockID = XXH64(the ids as little-endian uint32 bytes)` and
 * `h = XXH64(LE64(blockID) ‖ LE64(prev))`, `prev = h`; at most `maxBlocks` blocks. XXH64, seed 0.
 *
 * Implementation: XXH64 and the whole chain run in a small WebAssembly module built below from its
 * opcodes (no toolchain, nothing downloaded), one call per prompt: the prompt's ids are copied into
 * its memory, the hashes come back as one typed array. WebAssembly has the 64-bit multiply and rotate
 * that JavaScript lacks. `bench/prefix-hash.ts` compares it with
 * `@node-rs/xxhash` — two N-API calls and two BigInts per block, and no call that hashes many blocks —
 * and with XXH64 in JavaScript over 32-bit limbs (a 64-bit multiply is a dozen 32-bit operations):
 * ~70 ns a 64-token block here, ~20× that with @node-rs/xxhash, ~30× in JavaScript; 10 µs for an
 * 8k-token prompt, 100 µs for 100k tokens.
 *
 * Representation: a prompt's hashes are one `Uint32Array` of (low, high) word pairs — the exact 64
 * bits, no BigInt, no object per block — and the prefix index stores them as they are, in typed
 * arrays. A 52-bit Number key would be exact enough for an approximate index, but it would need a
 * Map, where numbers above 2^31 are heap objects; the index needs no Map.
 */
import { get, section, set, sleb, uleb, type Code } from '../../../core/wasm-encoding.js';

const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

// ---- WebAssembly encoding (the shared helpers, plus what only this module needs) -----------------

const I32 = 0x7f;
const I64 = 0x7e;
const VOID = 0x40;
const op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  call: 0x10,
  select: 0x1b,
  i32Eqz: 0x45,
  i32LtU: 0x49,
  i32LeU: 0x4d,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i64Add: 0x7c,
  i64Sub: 0x7d,
  i64Mul: 0x7e,
  i64Xor: 0x85,
  i64ShrU: 0x88,
  i64Rotl: 0x89,
  i64ExtendI32U: 0xad,
} as const;

const i32 = (v: number): Code => [0x41, ...sleb(BigInt(v))];
const i64 = (v: bigint): Code => [0x42, ...sleb(v)];
// Memory immediates: alignment hint 0 (any address is valid), then the offset.
const load64 = (offset: number): Code => [0x29, 0, ...uleb(offset)];
const load32To64 = (offset: number): Code => [0x35, 0, ...uleb(offset)];
const load8To64 = (offset: number): Code => [0x31, 0, ...uleb(offset)];
const store64 = (offset: number): Code => [0x37, 0, ...uleb(offset)];

/** XXH64's round: `rotl(acc + input·P2, 31)·P1`, of two i64 expressions. */
const round = (acc: Code, input: Code): Code =>
  // prettier-ignore
  [...acc, ...input, ...i64(P2), op.i64Mul, op.i64Add, ...i64(31n), op.i64Rotl, ...i64(P1), op.i64Mul];
const round0 = (input: Code): Code => round(i64(0n), input);

/** Local `h = rotl(h ^ round0(lane), 27)·P1 + P4`. */
// prettier-ignore
const lane8 = (h: number, lane: Code): Code => [
  ...get(h), ...round0(lane), op.i64Xor,
  ...i64(27n), op.i64Rotl, ...i64(P1), op.i64Mul, ...i64(P4), op.i64Add, ...set(h),
];

/** XXH64's final mix of local `h`, leaving the result on the stack. */
// prettier-ignore
const avalanche = (h: number): Code => [
  ...get(h), ...get(h), ...i64(33n), op.i64ShrU, op.i64Xor, ...i64(P2), op.i64Mul, ...set(h), // h = (h ^ h>>33)·P2
  ...get(h), ...get(h), ...i64(29n), op.i64ShrU, op.i64Xor, ...i64(P3), op.i64Mul, ...set(h), // h = (h ^ h>>29)·P3
  ...get(h), ...get(h), ...i64(32n), op.i64ShrU, op.i64Xor,                                   // h ^ h>>32
];

/** f0 `xxh64(p: i32, len: i32, seed: i64) → i64`: XXH64 of memory[p, p+len). */
function xxh64Body(): Code {
  const [P, LEN, SEED, END, LIMIT, V1, V2, V3, V4, H] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const stripe = (v: number, offset: number): Code => [
    ...round(get(v), [...get(P), ...load64(offset)]),
    ...set(v),
  ];
  // prettier-ignore
  const merge = (v: number): Code => [
    ...get(H), ...round0(get(v)), op.i64Xor, ...i64(P1), op.i64Mul, ...i64(P4), op.i64Add, ...set(H),
  ];
  // prettier-ignore
  return funcBody([2, 2, I32, 5, I64], [
    ...get(P), ...get(LEN), op.i32Add, ...set(END),                         // end = p + len
    ...get(LEN), ...i32(32), op.i32GeU, op.if, VOID,                        // if len >= 32:
      ...get(END), ...i32(32), op.i32Sub, ...set(LIMIT),                    //   limit = end - 32
      ...get(SEED), ...i64(P1 + P2), op.i64Add, ...set(V1),                 //   v1 = seed + P1 + P2
      ...get(SEED), ...i64(P2), op.i64Add, ...set(V2),                      //   v2 = seed + P2
      ...get(SEED), ...set(V3),                                             //   v3 = seed
      ...get(SEED), ...i64(P1), op.i64Sub, ...set(V4),                      //   v4 = seed - P1
      op.loop, VOID,                                                        //   do
        ...stripe(V1, 0), ...stripe(V2, 8), ...stripe(V3, 16), ...stripe(V4, 24),
        ...get(P), ...i32(32), op.i32Add, ...set(P),                        //     p += 32
        ...get(P), ...get(LIMIT), op.i32LeU, op.brIf, 0,                    //   while p <= limit
      op.end,
      ...get(V1), ...i64(1n), op.i64Rotl, ...get(V2), ...i64(7n), op.i64Rotl, op.i64Add,
      ...get(V3), ...i64(12n), op.i64Rotl, op.i64Add, ...get(V4), ...i64(18n), op.i64Rotl, op.i64Add,
      ...set(H),                                                            //   h = Σ rotl(v_i, …)
      ...merge(V1), ...merge(V2), ...merge(V3), ...merge(V4),
    op.else,                                                                // else:
      ...get(SEED), ...i64(P5), op.i64Add, ...set(H),                       //   h = seed + P5
    op.end,
    ...get(H), ...get(LEN), op.i64ExtendI32U, op.i64Add, ...set(H),         // h += len
    op.block, VOID, op.loop, VOID,                                          // while end - p >= 8:
      ...get(END), ...get(P), op.i32Sub, ...i32(8), op.i32LtU, op.brIf, 1,
      ...lane8(H, [...get(P), ...load64(0)]),                               //   8-byte lane
      ...get(P), ...i32(8), op.i32Add, ...set(P), op.br, 0,
    op.end, op.end,
    ...get(END), ...get(P), op.i32Sub, ...i32(4), op.i32GeU, op.if, VOID,   // if end - p >= 4:
      ...get(H), ...get(P), ...load32To64(0), ...i64(P1), op.i64Mul, op.i64Xor,
      ...i64(23n), op.i64Rotl, ...i64(P2), op.i64Mul, ...i64(P3), op.i64Add, ...set(H),
      ...get(P), ...i32(4), op.i32Add, ...set(P),
    op.end,
    op.block, VOID, op.loop, VOID,                                          // while p < end:
      ...get(P), ...get(END), op.i32GeU, op.brIf, 1,
      ...get(H), ...get(P), ...load8To64(0), ...i64(P5), op.i64Mul, op.i64Xor,
      ...i64(11n), op.i64Rotl, ...i64(P1), op.i64Mul, ...set(H),
      ...get(P), ...i32(1), op.i32Add, ...set(P), op.br, 0,
    op.end, op.end,
    ...avalanche(H),
  ]);
}

/** f1 `pair(a: i64, b: i64) → i64`: XXH64 of the 16 bytes LE64(a) ‖ LE64(b), seed 0. */
function pairBody(): Code {
  const [A, B, H] = [0, 1, 2];
  return funcBody(
    [1, 1, I64],
    [...i64(P5 + 16n), ...set(H), ...lane8(H, get(A)), ...lane8(H, get(B)), ...avalanche(H)],
  );
}

/**
 * f2 `chain(in, nBytes, blockBytes, nBlocks, prefix, prefixLen, out)`: writes `nBlocks` chained block
 * hashes as i64 at `out`, the first chained from XXH64(memory[prefix, prefix+prefixLen)).
 */
function chainBody(): Code {
  const [IN, NBYTES, BLOCK, NBLOCKS, PREFIX, PREFIXLEN, OUT, PREV, LEN] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  // prettier-ignore
  return funcBody([2, 1, I64, 1, I32], [
    ...get(PREFIX), ...get(PREFIXLEN), ...i64(0n), op.call, 0, ...set(PREV),  // prev = xxh64(prefix)
    op.block, VOID, op.loop, VOID,                                            // while nBlocks > 0:
      ...get(NBLOCKS), op.i32Eqz, op.brIf, 1,
      ...get(BLOCK), ...get(NBYTES), ...get(BLOCK), ...get(NBYTES), op.i32LtU,
      op.select, ...set(LEN),                                                 //   len = min(block, nBytes)
      ...get(IN), ...get(LEN), ...i64(0n), op.call, 0,                        //   id = xxh64(in, len)
      ...get(PREV), op.call, 1, ...set(PREV),                                 //   prev = pair(id, prev)
      ...get(OUT), ...get(PREV), ...store64(0),                               //   *out = prev
      ...get(OUT), ...i32(8), op.i32Add, ...set(OUT),
      ...get(IN), ...get(LEN), op.i32Add, ...set(IN),
      ...get(NBYTES), ...get(LEN), op.i32Sub, ...set(NBYTES),
      ...get(NBLOCKS), ...i32(1), op.i32Sub, ...set(NBLOCKS),
      op.br, 0,
    op.end, op.end,
  ]);
}

/** f3 `hash(p, len, out)`: XXH64 of memory[p, p+len) stored as i64 at `out`. */
function hashBody(): Code {
  return funcBody([0], [...get(2), ...get(0), ...get(1), ...i64(0n), op.call, 0, ...store64(0)]);
}

function funcBody(locals: Code, body: Code): Code {
  const code = [...locals, ...body, op.end];
  return [...uleb(code.length), ...code];
}

const name = (s: string): Code => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const funcType = (params: number[], results: number[]): Code => [
  0x60,
  ...uleb(params.length),
  ...params,
  ...uleb(results.length),
  ...results,
];

function moduleBytes(): Uint8Array {
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [
      funcType([I32, I32, I64], [I64]),
      funcType([I64, I64], [I64]),
      funcType([I32, I32, I32, I32, I32, I32, I32], []),
      funcType([I32, I32, I32], []),
    ]),
    ...section(3, [[0], [1], [2], [3]]),
    ...section(5, [[0x00, 1]]),
    ...section(7, [
      [...name('memory'), 2, 0],
      [...name('chain'), 0, 2],
      [...name('hash'), 0, 3],
    ]),
    ...section(10, [xxh64Body(), pairBody(), chainBody(), hashBody()]),
  ]);
}

// ---- the JS side ------------------------------------------------------------------------------------

/** The slice of the WebAssembly JS API used here (the project's lib settings do not declare it). */
interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object) => { readonly exports: unknown };
}

interface Exports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  chain(
    inPtr: number,
    nBytes: number,
    blockBytes: number,
    nBlocks: number,
    prefixPtr: number,
    prefixLen: number,
    outPtr: number,
  ): void;
  hash(ptr: number, len: number, outPtr: number): void;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const encoder = new TextEncoder();

let wasm: Exports | null = null;
let bytes = new Uint8Array(0);
let words = new Uint32Array(0);

function instance(): Exports {
  if (wasm === null) {
    const api = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    wasm = new api.Instance(new api.Module(moduleBytes())).exports as Exports;
  }
  return wasm;
}

/** Makes the module's memory at least `size` bytes and refreshes the views (growing detaches them). */
function reserve(size: number): Exports {
  const w = instance();
  const buf = w.memory.buffer;
  if (buf.byteLength < size) w.memory.grow(Math.ceil((size - buf.byteLength) / 65536));
  if (bytes.buffer !== w.memory.buffer) {
    bytes = new Uint8Array(w.memory.buffer);
    words = new Uint32Array(w.memory.buffer);
  }
  return w;
}

const align8 = (n: number): number => (n + 7) & ~7;

/** Writes `model ‖ salt` as UTF-8 at offset 0; returns its byte length. */
function writePrefix(model: string, salt: string): number {
  const written = encoder.encodeInto(model, bytes).written;
  return salt.length === 0 ? written : written + encoder.encodeInto(salt, bytes.subarray(written)).written;
}

function copyTokens(tokens: Uint32Array, count: number, at: number): void {
  if (LITTLE_ENDIAN) {
    words.set(count === tokens.length ? tokens : tokens.subarray(0, count), at >>> 2);
    return;
  }
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) view.setUint32(at + 4 * i, tokens[i]!, true);
}

/**
 * The chained block hashes of one prompt as (low, high) uint32 pairs: entry `i` of the chain is
 * `result[2i] + 2^32 · result[2i+1]`. `maxBlocks` may be Infinity.
 */
export function hashPrompt(
  tokens: Uint32Array,
  blockSize: number,
  maxBlocks: number,
  model: string,
  cacheSalt = '',
): Uint32Array {
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`blockSize must be an integer ≥ 1, got ${blockSize}`);
  }
  let nBlocks = Math.ceil(tokens.length / blockSize);
  if (nBlocks > maxBlocks) nBlocks = Math.max(0, Math.floor(maxBlocks));
  if (nBlocks === 0) return new Uint32Array(0);
  const nTokens = Math.min(tokens.length, nBlocks * blockSize);
  // UTF-8 takes at most 3 bytes per UTF-16 unit.
  const prefixCap = align8(3 * (model.length + cacheSalt.length));
  const inAt = prefixCap;
  const outAt = inAt + align8(4 * nTokens);
  const w = reserve(outAt + 8 * nBlocks);
  const prefixLen = writePrefix(model, cacheSalt);
  copyTokens(tokens, nTokens, inAt);
  w.chain(inAt, 4 * nTokens, 4 * blockSize, nBlocks, 0, prefixLen, outAt);
  if (LITTLE_ENDIAN) return words.slice(outAt >>> 2, (outAt >>> 2) + 2 * nBlocks);
  const view = new DataView(bytes.buffer);
  const out = new Uint32Array(2 * nBlocks);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(outAt + 4 * i, true);
  return out;
}

/** XXH64 (seed 0) of arbitrary bytes, as (low, high) uint32 words. */
export function xxh64Words(input: Uint8Array): [number, number] {
  const outAt = align8(input.length);
  const w = reserve(outAt + 8);
  bytes.set(input, 0);
  w.hash(0, input.length, outAt);
  const view = new DataView(bytes.buffer);
  return [view.getUint32(outAt, true), view.getUint32(outAt + 4, true)];
}

/** Entry `i` of a `hashPrompt` result as the unsigned 64-bit value (tests, logs). */
export function blockHashAt(hashes: Uint32Array, i: number): bigint {
  return (BigInt(hashes[2 * i + 1]!) << 32n) | BigInt(hashes[2 * i]!);
}
