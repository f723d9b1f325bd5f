/**
 * `npm run bench:kvcache`: the KV-cache indexer's goals in one run —
 *   1. event ingestion, blocks per second on one core (decode + apply into the memory index); goal ≥ 1M;
 *   2. lookup of a 512-block prompt across 64 servers, p50/p99: memory (goal p50 ≤ 50 µs) and Redis
 *      on loopback (goal p50 ≤ 1 ms);
 *   3. memory per indexed block, measured two ways: the index's own accounting of its typed arrays and
 *      the process heap growth while it fills; goal ≤ 100 bytes.
 * Flags: --quick (smaller runs), --no-redis.
 */
import { Rng } from '../src/core/rng.js';
import type { PodEntry } from '../src/kvcache/index/index.js';
import { DEFAULT_TIER_WEIGHTS } from '../src/kvcache/index/index.js';
import { MemoryIndex } from '../src/kvcache/index/memory.js';
import { TokenProcessor, type KeyList } from '../src/kvcache/keys.js';
import { benchIngest } from './kvcache-ingest.js';
import { benchRedisLookup } from './kvcache-redis.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const quick = process.argv.includes('--quick');
const withRedis = !process.argv.includes('--no-redis');

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const entry = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false, groupIdx: null });

function randomKeys(rng: Rng, n: number): KeyList {
  const k = new Uint32Array(2 * n);
  for (let i = 0; i < k.length; i++) k[i] = rng.nextU32();
  return k;
}

/**
 * 64 servers sharing a 512-block prompt to different depths (the worst case for the walk: every
 * server survives many blocks), amid background prompts, then timed lookups of that prompt.
 */
function benchMemoryLookup(
  lookups: number,
  holders: number,
): { p50Us: number; p99Us: number; meanUs: number } {
  const rng = new Rng(7);
  const tp = new TokenProcessor({ blockSizeTokens: 16 });
  const idx = new MemoryIndex({ maxKeys: 2_000_000, podCacheSize: 64 });
  const prompt = Array.from({ length: 512 * 16 }, () => rng.int(0, 151_000));
  const keys = tp.keys(prompt, MODEL);
  for (let s = 0; s < holders; s++) {
    const depth = 512 - s * Math.floor(256 / holders);
    idx.add(randomKeys(rng, depth), keys.subarray(0, 2 * depth), [entry(`10.0.${s >> 8}.${s & 255}:8000`)]);
  }
  for (let b = 0; b < 2000; b++) {
    const n = 64;
    idx.add(randomKeys(rng, n), randomKeys(rng, n), [entry(`10.0.0.${b % 64}:8000`)]);
  }
  for (let i = 0; i < 2000; i++) idx.score(keys, DEFAULT_TIER_WEIGHTS);
  const t = new Float64Array(lookups);
  let sum = 0;
  for (let i = 0; i < lookups; i++) {
    const t0 = process.hrtime.bigint();
    const s = idx.score(keys, DEFAULT_TIER_WEIGHTS);
    t[i] = Number(process.hrtime.bigint() - t0) / 1000;
    sum += t[i]!;
    if (s.size !== holders) throw new Error(`expected ${holders} servers, got ${s.size}`);
  }
  t.sort();
  return { p50Us: percentile(t, 50), p99Us: percentile(t, 99), meanUs: sum / lookups };
}

/** Bytes per block: n blocks each held by one server, engine and request key both indexed. */
function benchMemoryPerBlock(n: number): { accountedBytes: number; heapBytes: number } {
  const rng = new Rng(11);
  global.gc?.();
  const before = process.memoryUsage();
  const idx = new MemoryIndex({ maxKeys: n + 1 });
  const chunk = 64;
  for (let i = 0; i < n; i += chunk) {
    idx.add(randomKeys(rng, chunk), randomKeys(rng, chunk), [entry(`10.0.0.${(i / chunk) % 64}:8000`)]);
  }
  global.gc?.();
  const after = process.memoryUsage();
  // `external` already includes `arrayBuffers` (Node's process.memoryUsage docs): adding both would
  // count every typed array twice.
  const grown = after.heapUsed + after.external - (before.heapUsed + before.external);
  const stats = idx.stats();
  return { accountedBytes: stats.bytes / n, heapBytes: grown / n };
}

function verdict(ok: boolean): string {
  return ok ? 'meets goal' : 'MISSES goal';
}

async function main(): Promise<void> {
  console.log(`bench:kvcache${quick ? ' (quick)' : ''} — node ${process.version}, one core`);

  const ing = await benchIngest(quick ? { steps: 1000, rounds: 3 } : {});
  console.log(
    `ingestion: ${(ing.blocksPerSecond / 1e6).toFixed(2)} M blocks/s (decode + apply into memory; ` +
      `decode only ${(ing.decodeBlocksPerSecond / 1e6).toFixed(2)} M/s, decode + keys ${(ing.decodeKeysBlocksPerSecond / 1e6).toFixed(2)} M/s; ` +
      `${ing.blocks} blocks in ${ing.batches} batches) — goal ≥ 1 M: ${verdict(ing.blocksPerSecond >= 1e6)}`,
  );

  for (const holders of [8, 64]) {
    const mem = benchMemoryLookup(quick ? 2000 : 20_000, holders);
    console.log(
      `lookup, memory, 512-block prompt, 64 servers indexed, ${holders} holding the prompt: ` +
        `p50 ${mem.p50Us.toFixed(1)} µs, p99 ${mem.p99Us.toFixed(1)} µs, mean ${mem.meanUs.toFixed(1)} µs — ` +
        `goal p50 ≤ 50 µs: ${verdict(mem.p50Us <= 50)}`,
    );
  }

  // Before the Redis run: ioredis keeps a closed client reachable, which would count as growth here.
  const per = benchMemoryPerBlock(quick ? 200_000 : 1_000_000);
  console.log(
    `memory per indexed block: ${per.accountedBytes.toFixed(1)} B (index accounting), ` +
      `${per.heapBytes.toFixed(1)} B (process growth${global.gc === undefined ? ', no --expose-gc' : ''}) — ` +
      `goal ≤ 100 B: ${verdict(Math.max(per.accountedBytes, per.heapBytes) <= 100)}`,
  );

  if (withRedis) {
    const r = await benchRedisLookup({ lookups: quick ? 300 : 2000 });
    const ms = (us: number): string => (us / 1000).toFixed(3);
    console.log(
      `lookup, Redis on loopback, 512 blocks × 64 servers (default: client-side cache): ` +
        `p50 ${ms(r.p50Us)} ms, p99 ${ms(r.p99Us)} ms; while another client changes the prompt's ` +
        `blocks every 2 ms: p50 ${ms(r.churnP50Us)} ms, p99 ${ms(r.churnP99Us)} ms ` +
        `(${(r.churnMissRatio * 100).toFixed(0)} % missed) — goal p50 ≤ 1 ms: ` +
        `${verdict(Math.max(r.p50Us, r.churnP50Us) <= 1000)}`,
    );
    console.log(
      `  without the cache (one EVALSHA walk per score): p50 ${ms(r.walkP50Us)} ms, p99 ${ms(r.walkP99Us)} ms ` +
        `(Redis itself ${r.serverUs.toFixed(0)} µs/call); upstream's read path, same run: ` +
        `p50 ${ms(r.baselineP50Us)} ms (${(r.baselineP50Us / r.walkP50Us).toFixed(1)}× the walk)`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
