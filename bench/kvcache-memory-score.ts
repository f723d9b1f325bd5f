/**
 * `npx tsx bench/kvcache-memory-score.ts`: MemoryIndex.score of a 512-block prompt with 64 servers
 * indexed, 8 or 64 of them holding the prompt to different depths (the workload of bench:kvcache),
 * and add() of new blocks (one server, engine and request keys) into an index of ~0.5M keys.
 */
import { Rng } from '../src/core/rng.js';
import { DEFAULT_TIER_WEIGHTS, type PodEntry } from '../src/kvcache/index/index.js';
import { MemoryIndex } from '../src/kvcache/index/memory.js';

const entry = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false, groupIdx: null });

function randomKeys(rng: Rng, n: number): Uint32Array {
  const k = new Uint32Array(2 * n);
  for (let i = 0; i < k.length; i++) k[i] = rng.nextU32();
  return k;
}

function scoreP50(holders: number, lookups: number): number {
  const rng = new Rng(7);
  const idx = new MemoryIndex({ maxKeys: 2_000_000, podCacheSize: 64 });
  const keys = randomKeys(rng, 512);
  for (let s = 0; s < holders; s++) {
    const depth = 512 - s * Math.floor(256 / holders);
    idx.add(randomKeys(rng, depth), keys.subarray(0, 2 * depth), [entry(`10.0.0.${s}:8000`)]);
  }
  for (let b = 0; b < 2000; b++)
    idx.add(randomKeys(rng, 64), randomKeys(rng, 64), [entry(`10.0.0.${b % 64}:8000`)]);
  for (let i = 0; i < 2000; i++) idx.score(keys, DEFAULT_TIER_WEIGHTS);
  const t = new Float64Array(lookups);
  for (let i = 0; i < lookups; i++) {
    const t0 = process.hrtime.bigint();
    idx.score(keys, DEFAULT_TIER_WEIGHTS);
    t[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  t.sort();
  return t[lookups >> 1]!;
}

function addNsPerBlock(total: number): number {
  const rng = new Rng(11);
  const idx = new MemoryIndex({ maxKeys: total + 1 });
  const batches: [Uint32Array, Uint32Array][] = [];
  for (let i = 0; i < total; i += 64) batches.push([randomKeys(rng, 64), randomKeys(rng, 64)]);
  const half = batches.length >> 1;
  for (let b = 0; b < half; b++) idx.add(batches[b]![0], batches[b]![1], [entry(`10.0.0.${b % 64}:8000`)]);
  const t0 = process.hrtime.bigint();
  for (let b = half; b < batches.length; b++)
    idx.add(batches[b]![0], batches[b]![1], [entry(`10.0.0.${b % 64}:8000`)]);
  return Number(process.hrtime.bigint() - t0) / ((batches.length - half) * 64);
}

for (const holders of [8, 64])
  console.log(`score, ${holders} holders: p50 ${scoreP50(holders, 5000).toFixed(1)} µs`);
console.log(`add, new blocks at ~0.5M keys: ${addNsPerBlock(1_000_000).toFixed(0)} ns/block`);
