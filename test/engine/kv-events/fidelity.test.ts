/**
 * Event fidelity: a subscriber that sees only `llmd serve`'s KV events can rebuild exactly what the
 * prefix cache holds. A workload with shared and distinct prefixes runs through the HTTP API against a
 * cache small enough to evict; the multiset of block hashes rebuilt from the events (live stream, gaps
 * filled by replay as a real indexer would) must equal the engine's own, and a prefix-cache reset must
 * arrive as AllBlocksCleared and leave nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { startServe, type RunningServe } from '../../../src/engine/serve.js';
import {
  decodeKvEventBatch,
  parseTopic,
  type DecodedKvEventBatch,
} from '../../../src/kvcache/events/decode.js';
import { waitFor } from '../../helpers/wait.js';
import { Collector, LOOPBACK_ANY_PORT, rebuildCache, replayWithDealer, sortedCounts } from './helpers.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const TOPIC = `kv@127.0.0.1:8000@${MODEL}`;
const BLOCK_SIZE = 16;
const NUM_GPU_BLOCKS = 40;

let srv: RunningServe;
let sub: Collector;
/** Batches the live stream missed, fetched once by replay. */
const replayed = new Map<bigint, DecodedKvEventBatch>();

beforeAll(async () => {
  srv = await startServe({
    model: MODEL,
    host: '127.0.0.1',
    port: 0,
    blockSize: BLOCK_SIZE,
    numGpuBlocksOverride: NUM_GPU_BLOCKS,
    simFixedStepMs: 1,
    hashSeed: '0',
    logLevel: 'silent',
    kvEventsConfig: {
      enable_kv_cache_events: true,
      publisher: 'zmq',
      endpoint: LOOPBACK_ANY_PORT,
      replay_endpoint: LOOPBACK_ANY_PORT,
      topic: TOPIC,
    },
  });
  sub = new Collector(srv.kvEvents!.endpoint, { topic: 'kv@' });
});

afterAll(async () => {
  await sub?.close();
  await srv?.close();
});

/** Every batch 0..nextSeq-1: the live ones, and any the SUB missed (it joined late) fetched by replay. */
async function allBatches(): Promise<DecodedKvEventBatch[] | null> {
  const next = BigInt(srv.kvEvents!.stats.nextSeq);
  const bySeq = new Map<bigint, DecodedKvEventBatch>(replayed);
  for (const m of sub.messages) bySeq.set(m.seq, m.batch);
  let missing = -1n;
  for (let s = 0n; s < next; s++) {
    if (!bySeq.has(s)) {
      missing = s;
      break;
    }
  }
  if (missing >= 0n) {
    const { replies } = await replayWithDealer(srv.kvEvents!.replayEndpoint!, missing);
    for (const r of replies) {
      const b = decodeKvEventBatch(r.payload);
      replayed.set(r.seq, b);
      bySeq.set(r.seq, b);
    }
  }
  const out: DecodedKvEventBatch[] = [];
  for (let s = 0n; s < next; s++) {
    const b = bySeq.get(s);
    if (b === undefined) return null;
    out.push(b);
  }
  return out;
}

async function complete(prompt: number[], maxTokens: number): Promise<void> {
  const res = await fetch(`${srv.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt, max_tokens: maxTokens, ignore_eos: true }),
  });
  expect(res.status).toBe(200);
  await res.json();
}

function tokens(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.int(100, 100_000));
}

describe('KV events describe the prefix cache exactly', () => {
  it('rebuilds the cached block multiset from the events of a workload that evicts', async () => {
    const rng = new Rng(7);
    // Four shared system prompts (2–6 blocks), each request adding a distinct tail; some requests are
    // exact repeats, some share nothing.
    const prefixes = [32, 48, 80, 96].map((n) => tokens(rng, n));
    const prompts: number[][] = [];
    for (let i = 0; i < 60; i++) {
      const kind = rng.int(0, 9);
      if (kind < 6) prompts.push([...prefixes[rng.int(0, 3)]!, ...tokens(rng, rng.int(1, 70))]);
      else if (kind < 8 && prompts.length > 0) prompts.push(prompts[rng.int(0, prompts.length - 1)]!);
      else prompts.push(tokens(rng, rng.int(5, 150)));
    }
    // Six at a time: more than the 40 blocks hold, so blocks are evicted (and requests preempted).
    let next = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next < prompts.length) {
          const p = prompts[next++]!;
          await complete(p, rng.int(1, 40));
        }
      }),
    );

    let rebuilt: Map<bigint, number> = new Map();
    let anomalies: string[] = [];
    let batches: DecodedKvEventBatch[] = [];
    await waitFor(
      async () => {
        const all = await allBatches();
        if (all === null) return false;
        batches = all;
        ({ cached: rebuilt, anomalies } = rebuildCache(all));
        return sortedCounts(rebuilt).join() === sortedCounts(srv.core.cachedBlockHashes()).join();
      },
      15_000,
      'the events to describe the cache',
    ).catch(() => undefined);

    expect(anomalies).toEqual([]);
    expect(sortedCounts(rebuilt)).toEqual(sortedCounts(srv.core.cachedBlockHashes()));
    const events = batches.flatMap((b) => b.events);
    const removed = events.filter((e) => e.type === 'BlockRemoved').length;
    expect(removed).toBeGreaterThan(0);
    expect(events.some((e) => e.type === 'BlockStored' && e.parentBlockHash !== null)).toBe(true);
    for (const e of events) {
      if (e.type !== 'BlockStored') continue;
      expect(e.tokenIds.length).toBe(e.blockHashes.length * BLOCK_SIZE);
      expect(e.blockSize).toBe(BLOCK_SIZE);
      expect(e.medium).toBe('GPU');
    }
    expect(batches.every((b) => b.dataParallelRank === 0)).toBe(true);
    expect(parseTopic(sub.messages[0]!.topic)).toEqual({ pod: '127.0.0.1:8000', model: MODEL });
    expect(sub.errors).toEqual([]);
    // The hashes are the engine's: a prompt's full blocks, hashed as the engine does, were announced.
    const announced = new Set(events.flatMap((e) => (e.type === 'BlockStored' ? e.blockHashes : [])));
    for (const h of srv.core.blockHashesOf(prompts.at(-1)!)) expect(announced.has(h)).toBe(true);
  });

  it('announces a prefix-cache reset as AllBlocksCleared, after which the rebuilt cache is empty', async () => {
    expect(srv.core.cachedBlockHashes().size).toBeGreaterThan(0);
    const res = await fetch(`${srv.url}/reset_prefix_cache`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    expect(srv.core.cachedBlockHashes().size).toBe(0);

    let batches: DecodedKvEventBatch[] = [];
    await waitFor(
      async () => {
        const all = await allBatches();
        if (all === null) return false;
        batches = all;
        return all.at(-1)?.events.at(-1)?.type === 'AllBlocksCleared';
      },
      15_000,
      'AllBlocksCleared',
    );
    expect(rebuildCache(batches).cached.size).toBe(0);
  });

  it('refuses a reset with 409 while a request holds blocks, and allows GET nowhere', async () => {
    const get = await fetch(`${srv.url}/reset_prefix_cache`);
    expect(get.status).toBe(405);
    await get.body?.cancel();

    const ac = new AbortController();
    const stream = await fetch(`${srv.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        prompt: 'a long story',
        max_tokens: 500,
        ignore_eos: true,
        stream: true,
      }),
      signal: ac.signal,
    });
    // 500 tokens at 1 ms a step: the request holds its blocks for about half a second.
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read();
    const res = await fetch(`${srv.url}/reset_prefix_cache`, { method: 'POST' });
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual({
      error: expect.objectContaining({ type: 'ConflictError', code: 409 }),
    });
    ac.abort();
    await reader.cancel().catch(() => undefined);
    await waitFor(
      async () => {
        const r = await fetch(`${srv.url}/reset_prefix_cache`, { method: 'POST' });
        await r.body?.cancel();
        return r.status === 200;
      },
      15_000,
      'the aborted request to free its blocks',
    );
  });
});
