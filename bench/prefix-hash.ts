/**
 * The approximate prefix cache's block-hash chain (src/epp/plugins/producer/prefix-hash.ts), three ways:
 *   wasm     — the chosen one: XXH64 and the chain in a WebAssembly module, one call per prompt;
 *   node-rs  — `@node-rs/xxhash`: two N-API calls (block id, then chain step) and two BigInts per block;
 *   pure-js  — XXH64 over 32-bit limbs in JavaScript, reading the Uint8Array directly.
 * All three must agree bit for bit (checked first). Then the producer's per-request costs over 100
 * endpoints: estimate tokenization, hashing + index match (cold and warm index), recording at PreRequest.
 *
 *   npx tsx bench/prefix-hash.ts
 */
import { xxh64 } from '@node-rs/xxhash';
import { ApproxPrefixCacheProducer } from '../src/epp/plugins/producer/approx-prefix-cache.js';
import { blockHashAt, hashPrompt } from '../src/epp/plugins/producer/prefix-hash.js';
import { estimateTokens } from '../src/epp/plugins/producer/token/estimate.js';
import { TOKENIZED_REQUEST } from '../src/epp/framework/data-keys.js';
import type { Endpoint } from '../src/epp/framework/endpoint.js';
import type { SchedulingResult } from '../src/epp/framework/scheduling.js';
import { makeEndpoints, makeRequest, testHandle } from '../test/epp/helpers.js';

const BLOCK = 64; // the producer's minimum block size
const MODEL = 'Qwen/Qwen3-0.6B';

// ---- candidate: @node-rs/xxhash -----------------------------------------------------------------

const pairBuf = Buffer.alloc(16);
function chainNodeRs(tokens: Uint32Array, blockSize: number, model: string): bigint[] {
  const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  let prev = xxh64(Buffer.from(model));
  const out: bigint[] = [];
  for (let i = 0; i < tokens.length; i += blockSize) {
    const id = xxh64(bytes.subarray(4 * i, 4 * Math.min(tokens.length, i + blockSize)));
    pairBuf.writeBigUInt64LE(id, 0);
    pairBuf.writeBigUInt64LE(prev, 8);
    prev = xxh64(pairBuf);
    out.push(prev);
  }
  return out;
}

// ---- candidate: pure JS over 32-bit limbs ------------------------------------------------------

const P1H = 0x9e3779b1,
  P1L = 0x85ebca87,
  P2H = 0xc2b2ae3d,
  P2L = 0x27d4eb4f,
  P3H = 0x165667b1,
  P3L = 0x9e3779f9,
  P4H = 0x85ebca77,
  P4L = 0xc2b2ae63,
  P5H = 0x27d4eb2f,
  P5L = 0x165667c5;
// Results of the limb helpers, kept as int32 so that V8 stores them unboxed.
let rh = 0;
let rl = 0;

function mul(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  rl = (mid << 16) | (p00 & 0xffff);
  const carry = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
  rh = (Math.imul(ah, bl) + Math.imul(al, bh) + carry) | 0;
}
function add(ah: number, al: number, bh: number, bl: number): void {
  const lo = (al >>> 0) + (bl >>> 0);
  rl = lo | 0;
  rh = (ah + bh + (lo > 0xffffffff ? 1 : 0)) | 0;
}
function rotl(h: number, l: number, r: number): void {
  if (r >= 32) {
    const t = h;
    h = l;
    l = t;
    r -= 32;
  }
  if (r === 0) {
    rh = h;
    rl = l;
    return;
  }
  rh = (h << r) | (l >>> (32 - r));
  rl = (l << r) | (h >>> (32 - r));
}
/** acc = rotl(acc + input·P2, 31)·P1 */
function round(ah: number, al: number, ih: number, il: number): void {
  mul(ih, il, P2H, P2L);
  add(ah, al, rh, rl);
  rotl(rh, rl, 31);
  mul(rh, rl, P1H, P1L);
}
/** Little-endian word at byte `p`: from the aligned word view when there is one. */
let words: Uint32Array | null = null;
function le32(b: Uint8Array, p: number): number {
  if (words !== null) return words[p >>> 2]! | 0;
  return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
}

let hh = 0;
let hl = 0;
function mergeRound(vh: number, vl: number): void {
  round(0, 0, vh, vl);
  mul(hh ^ rh, hl ^ rl, P1H, P1L);
  add(rh, rl, P4H, P4L);
  hh = rh;
  hl = rl;
}

/** XXH64, seed 0, of b[start, end) (`w`: the same bytes as aligned words, when they are): rh/rl. */
function xxh64Js(b: Uint8Array, start: number, end: number, w: Uint32Array | null = null): void {
  words = w;
  let p = start;
  const len = end - start;
  if (len >= 32) {
    add(0, 0, P1H, P1L);
    add(rh, rl, P2H, P2L);
    let v1h = rh,
      v1l = rl;
    let v2h = P2H,
      v2l = P2L;
    let v3h = 0,
      v3l = 0;
    add(0, 0, ~P1H, ~P1L);
    add(rh, rl, 0, 1); // -P1
    let v4h = rh,
      v4l = rl;
    const limit = end - 32;
    do {
      round(v1h, v1l, le32(b, p + 4), le32(b, p));
      v1h = rh;
      v1l = rl;
      round(v2h, v2l, le32(b, p + 12), le32(b, p + 8));
      v2h = rh;
      v2l = rl;
      round(v3h, v3l, le32(b, p + 20), le32(b, p + 16));
      v3h = rh;
      v3l = rl;
      round(v4h, v4l, le32(b, p + 28), le32(b, p + 24));
      v4h = rh;
      v4l = rl;
      p += 32;
    } while (p <= limit);
    rotl(v1h, v1l, 1);
    let sh = rh,
      sl = rl;
    rotl(v2h, v2l, 7);
    add(sh, sl, rh, rl);
    sh = rh;
    sl = rl;
    rotl(v3h, v3l, 12);
    add(sh, sl, rh, rl);
    sh = rh;
    sl = rl;
    rotl(v4h, v4l, 18);
    add(sh, sl, rh, rl);
    hh = rh;
    hl = rl;
    mergeRound(v1h, v1l);
    mergeRound(v2h, v2l);
    mergeRound(v3h, v3l);
    mergeRound(v4h, v4l);
  } else {
    hh = P5H;
    hl = P5L;
  }
  add(hh, hl, 0, len);
  hh = rh;
  hl = rl;
  while (end - p >= 8) {
    round(0, 0, le32(b, p + 4), le32(b, p));
    rotl(hh ^ rh, hl ^ rl, 27);
    mul(rh, rl, P1H, P1L);
    add(rh, rl, P4H, P4L);
    hh = rh;
    hl = rl;
    p += 8;
  }
  if (end - p >= 4) {
    mul(0, le32(b, p), P1H, P1L);
    rotl(hh ^ rh, hl ^ rl, 23);
    mul(rh, rl, P2H, P2L);
    add(rh, rl, P3H, P3L);
    hh = rh;
    hl = rl;
    p += 4;
  }
  while (p < end) {
    mul(0, b[p]!, P5H, P5L);
    rotl(hh ^ rh, hl ^ rl, 11);
    mul(rh, rl, P1H, P1L);
    hh = rh;
    hl = rl;
    p++;
  }
  // avalanche
  hl ^= hh >>> 1;
  mul(hh, hl, P2H, P2L);
  hh = rh;
  hl = rl;
  hl ^= (hl >>> 29) | (hh << 3);
  hh ^= hh >>> 29;
  mul(hh, hl, P3H, P3L);
  rl ^= rh;
}

const pairBytes = new Uint8Array(16);
const pairWords = new Uint32Array(pairBytes.buffer);
function chainJs(tokens: Uint32Array, blockSize: number, model: string): Uint32Array {
  const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  const m = Buffer.from(model);
  xxh64Js(m, 0, m.length);
  let ph = rh,
    pl = rl;
  const n = Math.ceil(tokens.length / blockSize);
  const out = new Uint32Array(2 * n);
  const pv = new DataView(pairBytes.buffer);
  for (let k = 0; k < n; k++) {
    const i = k * blockSize;
    xxh64Js(bytes, 4 * i, 4 * Math.min(tokens.length, i + blockSize), tokens);
    pv.setUint32(0, rl, true);
    pv.setUint32(4, rh, true);
    pv.setUint32(8, pl, true);
    pv.setUint32(12, ph, true);
    xxh64Js(pairBytes, 0, 16, pairWords);
    ph = rh;
    pl = rl;
    out[2 * k] = pl;
    out[2 * k + 1] = ph;
  }
  return out;
}

// ---- harness ------------------------------------------------------------------------------------

function tokensOf(n: number, seed: number): Uint32Array {
  const t = new Uint32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    t[i] = x >>> 0;
  }
  return t;
}

/** Median µs per call over `rounds` timed batches. */
function time(fn: () => void, minMs = 300): number {
  for (let i = 0; i < 20; i++) fn();
  let batch = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) fn();
    if (performance.now() - t0 > 5) break;
    batch *= 2;
  }
  const samples: number[] = [];
  const until = performance.now() + minMs;
  while (performance.now() < until || samples.length < 7) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) fn();
    samples.push(((performance.now() - t0) * 1000) / batch);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1]!;
}

function check(tokens: Uint32Array): void {
  const w = hashPrompt(tokens, BLOCK, Infinity, MODEL);
  const n = chainNodeRs(tokens, BLOCK, MODEL);
  const j = chainJs(tokens, BLOCK, MODEL);
  if (n.length * 2 !== w.length || j.length !== w.length) throw new Error('length mismatch');
  for (let i = 0; i < n.length; i++) {
    if (blockHashAt(w, i) !== n[i] || blockHashAt(j, i) !== n[i]) throw new Error(`mismatch at block ${i}`);
  }
}

for (const n of [1, 17, 100, 1000, 8192]) check(tokensOf(n, n));

const rows: string[][] = [['prompt', 'candidate', 'µs / prompt', 'ns / block', 'vs wasm']];
for (const tokens of [8192, 100_000]) {
  const t = tokensOf(tokens, 7);
  const blocks = Math.ceil(tokens / BLOCK);
  const wasm = time(() => void hashPrompt(t, BLOCK, Infinity, MODEL));
  const nodeRs = time(() => void chainNodeRs(t, BLOCK, MODEL));
  const js = time(() => void chainJs(t, BLOCK, MODEL));
  for (const [name, us] of [
    ['wasm', wasm],
    ['node-rs', nodeRs],
    ['pure-js', js],
  ] as const) {
    rows.push([
      `${tokens} tokens (${blocks} blocks)`,
      name,
      us.toFixed(1),
      ((us * 1000) / blocks).toFixed(0),
      (us / wasm).toFixed(1) + '×',
    ]);
  }
}

// The producer's per-request cost with 100 candidates: estimate tokens from the prompt text; hash and
// match against a cold index (nobody holds the prompt) and a warm one (endpoint i holds the first
// (i+1)% of it: every endpoint has work to do, the worst case); record the chain at PreRequest.
const endpoints = makeEndpoints(100);
const decision = (ep: Endpoint): SchedulingResult => ({
  primaryProfileName: 'decode',
  profileResults: new Map([
    ['decode', { targetEndpoints: [ep], scored: { endpoints: [ep], scores: new Float64Array(1) } }],
  ]),
});
const newProducer = (): ApproxPrefixCacheProducer =>
  new ApproxPrefixCacheProducer(
    'approx',
    {
      blockSizeTokens: BLOCK,
      autoTune: false,
      maxPrefixTokensToMatch: 131072,
      maxPrefixBlocksToMatch: 2048,
      lruCapacityPerServer: 31250,
    },
    testHandle(endpoints),
  );
for (const tokens of [8192, 100_000]) {
  const label = `${tokens} tokens, 100 endpoints`;
  const text = 'lorem ipsum dolor sit amet, '.repeat(Math.ceil((tokens * 4) / 28)).slice(0, tokens * 4);
  const req = makeRequest({ model: MODEL, json: { model: MODEL, prompt: text } });
  const tokenized = estimateTokens(req.body);
  const produceWith = (p: ApproxPrefixCacheProducer) => () => {
    req.state.write(TOKENIZED_REQUEST, tokenized);
    p.produce(req, endpoints);
  };

  const cold = newProducer();
  const warm = newProducer();
  for (let i = 0; i < endpoints.length; i++) {
    const r = makeRequest({ model: MODEL, json: {} });
    const part = Math.max(1, Math.floor((tokenized.prompts[0]!.length * (i + 1)) / 100));
    r.state.write(TOKENIZED_REQUEST, { ...tokenized, prompts: [tokenized.prompts[0]!.subarray(0, part)] });
    warm.produce(r, endpoints);
    warm.preRequest(r, decision(endpoints[i]!));
  }
  rows.push([label, 'estimate tokens', time(() => void estimateTokens(req.body)).toFixed(1), '', '']);
  rows.push([label, 'hash + match, cold', time(produceWith(cold)).toFixed(1), '', '']);
  rows.push([label, 'hash + match, warm', time(produceWith(warm)).toFixed(1), '', '']);
  produceWith(warm)();
  rows.push([
    label,
    'record (PreRequest)',
    time(() => warm.preRequest(req, decision(endpoints[99]!))).toFixed(1),
    '',
    '',
  ]);
}

const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
