/**
 * `tsx bench/kvcache-redis.ts`: the Redis KV-block index's read path, `score()` of a 512-block prompt
 * (8192 tokens, block 16) on loopback Redis, against upstream's way of reading (one pipeline of
 * HKEYS per block, then scoring on the client: our `lookup()` + `scoreLookup`) measured in the same
 * run. Also exported as `benchRedisLookup()` for `bench/kvcache.ts`.
 *
 * Scenario: 64 servers; the looked-up prompt is held whole by 2 servers and its first half by 4
 * others; 200 other 512-block prompts are each held by 3 servers picked at random (seeded), so the
 * keyspace holds ~100k request keys and the walk meets realistic hashes. Goal: p50 ≤ 1 ms.
 */
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { Rng } from '../src/core/rng.js';
import { RedisIndex } from '../src/kvcache/index/redis.js';
import { scoreLookup, type PodEntry } from '../src/kvcache/index/index.js';
import { TokenProcessor, type KeyList } from '../src/kvcache/keys.js';
import { startRedisServer } from '../test/helpers/redis.js';

export interface RedisLookupBench {
  /** `score()` latency, microseconds. */
  readonly p50Us: number;
  readonly p99Us: number;
  readonly meanUs: number;
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

async function timeIt(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
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

    await timeIt(200, () => index.score(keys, WEIGHTS)); // warm-up (JIT, connection, script cache)
    await stats.config('RESETSTAT');
    const t = await timeIt(lookups, () => index.score(keys, WEIGHTS));
    const serverUs = evalshaUsPerCall(await stats.info('commandstats'));
    await timeIt(100, async () => scoreLookup(await index.lookup(keys), WEIGHTS));
    const b = await timeIt(Math.max(200, lookups >> 2), async () =>
      scoreLookup(await index.lookup(keys), WEIGHTS),
    );
    const requestKeys = await stats.dbsize();
    return {
      p50Us: percentile(t, 50),
      p99Us: percentile(t, 99),
      meanUs: t.reduce((s, x) => s + x, 0) / t.length,
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
    `  score() (one EVALSHA walk): p50 ${r.p50Us.toFixed(0)} µs, p99 ${r.p99Us.toFixed(0)} µs ` +
      `(Redis itself: ${r.serverUs.toFixed(0)} µs per call)`,
  );
  console.log(
    `  upstream read path (pipelined HKEYS + client scoring): p50 ${r.baselineP50Us.toFixed(0)} µs, ` +
      `p99 ${r.baselineP99Us.toFixed(0)} µs — ${(r.baselineP50Us / r.p50Us).toFixed(1)}× slower at p50`,
  );
  console.log(`  goal p50 ≤ 1000 µs: ${r.p50Us <= 1000 ? 'met' : 'missed'}`);
}
