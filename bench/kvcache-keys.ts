/**
 * Request keys alone: ns per 16-token block of `TokenProcessor.keys` (cbor-fnv and xxh64), over
 * prompts of 64 blocks, token ids as Uint32Array (the write path's packed events) and as number[]
 * (requests). Best of 5 rounds of about 1M blocks each.
 *
 *   npx tsx bench/kvcache-keys.ts
 */
import { Rng } from '../src/core/rng.js';
import { TokenProcessor, type HashAlgorithm } from '../src/kvcache/keys.js';

const BLOCK = 16;
const BLOCKS_PER_PROMPT = 64;
const PROMPTS = 256;
const TOTAL_BLOCKS = 1 << 20;
const MODEL = 'Qwen/Qwen3-0.6B';

function prompts(rng: Rng, maxToken: number): Uint32Array[] {
  const out: Uint32Array[] = [];
  for (let p = 0; p < PROMPTS; p++) {
    const t = new Uint32Array(BLOCK * BLOCKS_PER_PROMPT);
    for (let i = 0; i < t.length; i++) t[i] = rng.int(0, maxToken);
    out.push(t);
  }
  return out;
}

function run(tp: TokenProcessor, inputs: readonly ArrayLike<number>[]): number {
  const rounds = TOTAL_BLOCKS / BLOCKS_PER_PROMPT;
  let sink = 0;
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) sink ^= tp.keys(inputs[i % inputs.length]!, MODEL)[1]!;
    const ns = Number(process.hrtime.bigint() - t0) / TOTAL_BLOCKS;
    if (ns < best) best = ns;
  }
  if (sink === 0.5) console.log(sink);
  return best;
}

const rng = new Rng(7);
const vocab = prompts(rng, 151_000);
const small = prompts(rng, 255);
for (const algo of ['cbor-fnv', 'xxh64'] as HashAlgorithm[]) {
  const tp = new TokenProcessor({ blockSizeTokens: BLOCK, hashAlgorithm: algo });
  const typed = run(tp, vocab);
  const arrays = run(
    tp,
    vocab.map((t) => Array.from(t)),
  );
  const bytes = run(tp, small);
  console.log(
    `${algo.padEnd(8)}  Uint32Array ${typed.toFixed(1)} ns/block  number[] ${arrays.toFixed(1)} ns/block  ids < 256 ${bytes.toFixed(1)} ns/block`,
  );
}
