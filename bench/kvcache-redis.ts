/**
 * `tsx bench/kvcache-redis.ts`: the Redis KV-block index's read path, `score()` of a 512-block prompt
 * (8192 tokens, block 16) on loopback Redis, against upstream's way of reading (one pipeline of
 * HKEYS per block, then scoring on the client: our `lookup()` + `scoreLookup`) measured in the same
 * run. Also exported as `benchRedisLookup()` for `bench/kvcache.ts`.
 *
 * Scenario: 64 servers; the looked-up prompt is held whole by 2 servers and its first half by 4
 * others; 200 other 512-block prompts are each held by 3 servers picked at random (seeded), so the
 * keyspace holds ~100k request keys and the walk meets realistic hashes. Goal: p50 ≤ 1 ms.
 *
 * Three ways of reading, each timed over the same prompt: the index as configured by default (the
 * client-side cache, kept coherent by Redis's client tracking: a prefix scored again is walked in
 * process); the same while another client keeps changing the prompt's blocks (one HSET or HDEL every
 * 2 ms on a random block, so scores keep missing and refilling the cache); and the index without the
 * cache (every score one EVALSHA walk on the server).
 */
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { Rng } from '../src/core/rng.js';
import { RedisIndex } from '../src/kvcache/index/redis.js';
import { decimalKey, encodePodField } from '../src/kvcache/index/redis-layout.js';
import { scoreLookup, type PodEntry } from '../src/kvcache/index/index.js';
import { TokenProcessor, type KeyList } from '../src/kvcache/keys.js';
import { startRedisServer } from '../test/helpers/redis.js';

export interface RedisLookupBench {
  /** `score()` latency with the default configuration (client-side cache), microseconds. */
  readonly p50Us: number;
  readonly p99Us: number;
  readonly meanUs: number;
  /** The same while another client changes the prompt's blocks every 2 ms. */
  readonly churnP50Us: number;
  readonly churnP99Us: number;
  /** Cache misses among the churn run's scores (each one an EVALSHA walk and a refill). */
  readonly churnMissRatio: number;
  /** `score()` without the client cache: one EVALSHA walk per call. */
  readonly walkP50Us: number;
  readonly walkP99Us: number;
  /** Upstream's read path (pipelined HKEYS + client-side scoring), same run. */
  readonly baselineP50Us: number;
  readonly baselineP99Us: number;
  readonly lookups: number;
  readonly blocks: number;
  readonly servers: number;
  /** Keys in Redis (request hashes and engine ZSETs). */
  readonly requestKeys: number;
  /** Time Redis itself spent per score() (INFO commandstats, EVALSHA usec_per_call). */
  readonly serverUs: number;
}

export interface RedisLookupBenchOptions {
  readonly lookups?: number;
  readonly servers?: number;
  readonly backgroundPrompts?: number;
  readonly blocks?: number;
}

const MODEL = 'Qwen/Qwen3-0.6B';
const WEIGHTS = { gpu: 1.0, cpu: 0.8 };

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function promptTokens(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.int(0, 151_000));
}

function engineKeysFor(rng: Rng, n: number): KeyList {
  const out = new Uint32Array(2 * n);
  for (let i = 0; i < out.length; i++) out[i] = rng.nextU32();
  return out;
}

function entry(pod: string): PodEntry {
  return { pod, tier: 'gpu', speculative: false, groupIdx: null };
}

/**
 * `fn`'s latency, n times in a row. With `yieldEach`, the event loop turns between calls (untimed),
 * as it does between requests in an EPP: a cache hit completes without I/O, so a tight loop of hits
 * would starve timers and sockets, the invalidations arriving on them included.
 */
async function timeIt(n: number, fn: () => Promise<unknown>, yieldEach = false): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (yieldEach) await new Promise((r) => setImmediate(r));
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out.sort((a, b) => a - b);
}

export async function benchRedisLookup(o: RedisLookupBenchOptions = {}): Promise<RedisLookupBench> {
  const lookups = o.lookups ?? 2000;
  const servers = o.servers ?? 64;
  const background = o.backgroundPrompts ?? 200;
  const blocks = o.blocks ?? 512;
  const redis = await startRedisServer();
  const index = await RedisIndex.connect({ address: redis.url });
  const walkOnly = await RedisIndex.connect({ address: redis.url, clientCacheKeys: 0 });
  // A plain client beside the index, for the server's own figures.
  const stats = new Redis(redis.url, { maxRetriesPerRequest: 0 });
  try {
    const rng = new Rng(7);
    const tp = new TokenProcessor({ blockSizeTokens: 16 });
    const pods = Array.from({ length: servers }, (_, i) => `10.0.${i >> 8}.${i & 0xff}:8000`);

    for (let p = 0; p < background; p++) {
      const keys = tp.keys(promptTokens(rng, blocks * 16), MODEL);
      const holders = new Set<string>();
      while (holders.size < 3) holders.add(pods[rng.int(0, servers - 1)]!);
      await Promise.all([...holders].map((pod) => index.add(engineKeysFor(rng, blocks), keys, [entry(pod)])));
    }
    const keys = tp.keys(promptTokens(rng, blocks * 16), MODEL);
    for (const pod of pods.slice(0, 2)) await index.add(engineKeysFor(rng, blocks), keys, [entry(pod)]);
    const half = keys.subarray(0, blocks); // the first blocks/2 keys: [hi, lo] pairs
    for (const pod of pods.slice(2, 6)) await index.add(engineKeysFor(rng, blocks / 2), half, [entry(pod)]);

    // The two read paths must agree before either is timed.
    const fast = await index.score(keys, WEIGHTS);
    const ref = scoreLookup(await index.lookup(keys), WEIGHTS);
    if (JSON.stringify([...fast].sort()) !== JSON.stringify([...ref].sort())) {
      throw new Error('score() and scoreLookup(lookup()) disagree');
    }
    if (
      fast.size !== 6 ||
      fast.get(pods[0]!)?.blocks !== blocks ||
      fast.get(pods[2]!)?.blocks !== blocks / 2
    ) {
      throw new Error(`unexpected scores: ${JSON.stringify([...fast])}`);
    }

    const again = await walkOnly.score(keys, WEIGHTS);
    if (JSON.stringify([...again].sort()) !== JSON.stringify([...fast].sort())) {
      throw new Error('the cached and the uncached index disagree');
    }

    await timeIt(200, () => walkOnly.score(keys, WEIGHTS)); // warm-up (JIT, connection, script cache)
    await stats.config('RESETSTAT');
    const w = await timeIt(lookups, () => walkOnly.score(keys, WEIGHTS));
    const serverUs = evalshaUsPerCall(await stats.info('commandstats'));

    await timeIt(200, () => index.score(keys, WEIGHTS), true);
    const t = await timeIt(lookups, () => index.score(keys, WEIGHTS), true);

    // Churn: another client flips one of the prompt's blocks every 2 ms (a third server's entry in,
    // or out again), invalidating it in the cache; the prompt's scores are unaffected by that entry.
    const names = Array.from({ length: blocks }, (_, i) => decimalKey(keys[2 * i]!, keys[2 * i + 1]!));
    const extra = encodePodField(entry(pods[63]!));
    const churnRng = new Rng(99);
    let churning = true;
    const writer = (async () => {
      while (churning) {
        const name = names[churnRng.int(0, blocks - 1)]!;
        if (churnRng.int(0, 1) === 0) await stats.hset(name, extra, '');
        else await stats.hdel(name, extra);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const misses0 = index.clientCacheStats()!;
    const c = await timeIt(lookups, () => index.score(keys, WEIGHTS), true);
    churning = false;
    await writer;
    const misses1 = index.clientCacheStats()!;
    await timeIt(100, async () => scoreLookup(await index.lookup(keys), WEIGHTS));
    const b = await timeIt(Math.max(200, lookups >> 2), async () =>
      scoreLookup(await index.lookup(keys), WEIGHTS),
    );
    const requestKeys = await stats.dbsize();
    // A score reads keys from the cache until its first miss: a miss ends one score's walk.
    const churnMisses = misses1.misses - misses0.misses;
    return {
      p50Us: percentile(t, 50),
      p99Us: percentile(t, 99),
      meanUs: t.reduce((s, x) => s + x, 0) / t.length,
      churnP50Us: percentile(c, 50),
      churnP99Us: percentile(c, 99),
      churnMissRatio: churnMisses / lookups,
      walkP50Us: percentile(w, 50),
      walkP99Us: percentile(w, 99),
      baselineP50Us: percentile(b, 50),
      baselineP99Us: percentile(b, 99),
      lookups,
      blocks,
      servers,
      requestKeys,
      serverUs,
    };
  } finally {
    stats.disconnect();
    await index.close();
    await walkOnly.close();
    await redis.kill();
  }
}

function evalshaUsPerCall(info: string): number {
  const m = /cmdstat_evalsha:.*usec_per_call=([0-9.]+)/.exec(info);
  return m === null ? NaN : Number(m[1]);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await benchRedisLookup();
  console.log(
    `Redis KV-block index, score() of a ${r.blocks}-block prompt, ${r.servers} servers, ` +
      `${r.requestKeys} keys in Redis, ${r.lookups} lookups on loopback:`,
  );
  console.log(
    `  score(), default (client-side cache): p50 ${r.p50Us.toFixed(0)} µs, p99 ${r.p99Us.toFixed(0)} µs`,
  );
  console.log(
    `  score(), default, the prompt's blocks changing every 2 ms: p50 ${r.churnP50Us.toFixed(0)} µs, ` +
      `p99 ${r.churnP99Us.toFixed(0)} µs (${(r.churnMissRatio * 100).toFixed(0)} % of scores missed)`,
  );
  console.log(
    `  score() without the cache (one EVALSHA walk): p50 ${r.walkP50Us.toFixed(0)} µs, ` +
      `p99 ${r.walkP99Us.toFixed(0)} µs (Redis itself: ${r.serverUs.toFixed(0)} µs per call)`,
  );
  console.log(
    `  upstream read path (pipelined HKEYS + client scoring): p50 ${r.baselineP50Us.toFixed(0)} µs, ` +
      `p99 ${r.baselineP99Us.toFixed(0)} µs — ${(r.baselineP50Us / r.walkP50Us).toFixed(1)}× the walk at p50`,
  );
  console.log(`  goal p50 ≤ 1000 µs: ${r.p50Us <= 1000 ? 'met' : 'missed'}`);
}
