/**
 * KV-event ingestion on one core: engine batches (written by our own encoder, as `llmd serve`
 * publishes them) decoded and applied to the in-memory index through the write path's pool, as the
 * subscriber hands them over (the ZMQ hop itself is not measured). Blocks are of 16 tokens, with
 * 64-bit hashes. Two workloads:
 *
 *  - `steady` (the default): an engine with a full cache. Each step stores the blocks of a few
 *    prefills (new prompts, half of them continuing a common system prompt) and of the decodes that
 *    filled a block (one-block events), and removes the blocks the cache evicts: about as many
 *    removed as stored;
 *  - `prefill`: BlockStored events only, many blocks per event (prefills of 16–256 blocks).
 *
 * Besides the end-to-end figure, it prints the same batches through the stages alone (decode only;
 * decode + request keys without an index) so a regression can be placed.
 *
 *   npx tsx bench/kvcache-ingest.ts
 */
import { pathToFileURL } from 'node:url';
import { Rng } from '../src/core/rng.js';
import type { KvEvent } from '../src/engine/core/types.js';
import { KvEventEncoder } from '../src/engine/kv-events/encode.js';
import { MemoryIndex } from '../src/kvcache/index/memory.js';
import { TokenProcessor } from '../src/kvcache/keys.js';
import { EventApplier } from '../src/kvcache/events/apply.js';
import { decodePackedBatch } from '../src/kvcache/events/decode.js';
import { KvEventPool } from '../src/kvcache/events/pool.js';
import { IngestCounters } from '../src/kvcache/events/stats.js';

const BLOCK = 16;
const MODEL = 'Qwen/Qwen3-0.6B';
const TOPIC = Buffer.from(`kv@10.0.0.1:8000@${MODEL}`);

export type IngestWorkload = 'steady' | 'prefill';

export interface IngestBenchOptions {
  readonly workload?: IngestWorkload;
  /** Engine steps (batches). */
  readonly steps?: number;
  /** Timed rounds; the best is kept. */
  readonly rounds?: number;
  readonly seed?: number;
}

export interface IngestBenchResult {
  readonly workload: IngestWorkload;
  /** Engine blocks stored per second, end to end (decode + apply into the memory index). */
  readonly blocksPerSecond: number;
  readonly batchesPerSecond: number;
  readonly eventsPerSecond: number;
  /** The same batches decoded only (packed form). */
  readonly decodeBlocksPerSecond: number;
  /** Decoded and keyed (request keys computed), without an index. */
  readonly decodeKeysBlocksPerSecond: number;
  readonly blocks: number;
  readonly removedBlocks: number;
  readonly batches: number;
  readonly events: number;
  readonly payloadBytes: number;
}

function hash(rng: Rng): bigint {
  return (BigInt(rng.nextU32()) << 32n) | BigInt(rng.nextU32());
}

function tokens(rng: Rng, n: number): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 151_000);
  return out;
}

interface Running {
  readonly blocks: bigint[];
  /** Tokens decoded since the last full block. */
  pending: number;
  stepsLeft: number;
}

/**
 * Engine steps: prefills of 4–256 blocks (half after a shared 32-block system prompt), decodes that
 * fill a block every 16 steps, and, once the cache holds more than its capacity, removal of the
 * blocks of finished requests, oldest first (blocks in use are never evicted, as in vLLM).
 */
function workload(
  seed: number,
  steps: number,
  kind: IngestWorkload,
): { payloads: Buffer[]; blocks: number; removed: number; events: number } {
  const prefill = kind === 'prefill';
  const rng = new Rng(seed);
  const enc = new KvEventEncoder({ dataParallelRank: 0 });
  const payloads: Buffer[] = [];
  const capacity = 20_000;
  let cached = 0;
  const evictable: bigint[] = [];
  let head = 0;
  const system = Array.from({ length: 32 }, () => hash(rng));
  let running: Running[] = [];
  let blocks = 0;
  let removed = 0;
  let nEvents = 0;
  const stored = (blockHashes: bigint[], parent: bigint | null, n: number): KvEvent => ({
    type: 'BlockStored',
    blockHashes,
    parentBlockHash: parent,
    tokenIds: tokens(rng, n * BLOCK),
    blockSize: BLOCK,
    loraName: null,
    medium: 'GPU',
    extraKeys: null,
  });
  for (let s = 0; s < steps; s++) {
    const events: KvEvent[] = [];
    if (s === 0) {
      events.push(stored(system, null, system.length));
      cached += system.length;
    }
    for (let p = prefill ? rng.int(1, 3) : rng.int(0, 2); p > 0; p--) {
      const n = prefill ? rng.int(16, 256) : rng.int(4, 256);
      const hashes = Array.from({ length: n }, () => hash(rng));
      events.push(stored(hashes, rng.int(0, 1) === 0 ? system.at(-1)! : null, n));
      cached += n;
      if (!prefill) running.push({ blocks: hashes, pending: 0, stepsLeft: rng.int(16, 400) });
    }
    const still: Running[] = [];
    for (const r of running) {
      if (++r.pending === BLOCK) {
        r.pending = 0;
        const h = hash(rng);
        events.push(stored([h], r.blocks.at(-1)!, 1));
        r.blocks.push(h);
        cached++;
      }
      if (--r.stepsLeft > 0) still.push(r);
      else evictable.push(...r.blocks);
    }
    running = still;
    if (cached > capacity && evictable.length > head) {
      const n = Math.min(cached - capacity, evictable.length - head);
      events.push({ type: 'BlockRemoved', blockHashes: evictable.slice(head, head + n), medium: 'GPU' });
      head += n;
      cached -= n;
      removed += n;
      if (head > 100_000) {
        evictable.splice(0, head);
        head = 0;
      }
    }
    for (const e of events) if (e.type === 'BlockStored') blocks += e.blockHashes.length;
    nEvents += events.length;
    // The encoder hands out views of a slab it reuses: keep a copy.
    payloads.push(Buffer.from(enc.encode(1_700_000_000 + s / 100, events)));
  }
  return { payloads, blocks, removed, events: nEvents };
}

function seqFrame(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(seq / 2 ** 32), 0);
  b.writeUInt32BE(seq >>> 0, 4);
  return b;
}

/** Best of `rounds` timings of `run` (ms). */
function best(rounds: number, run: () => void): number {
  let min = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    run();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

export async function benchIngest(opts: IngestBenchOptions = {}): Promise<IngestBenchResult> {
  const kind = opts.workload ?? 'steady';
  const steps = opts.steps ?? (kind === 'prefill' ? 2_000 : 4_000);
  const rounds = opts.rounds ?? 7;
  const w = workload(opts.seed ?? 42, steps, kind);
  const seqs = w.payloads.map((_p, i) => seqFrame(i));
  const bytes = w.payloads.reduce((n, p) => n + p.length, 0);

  const decodeMs = best(rounds, () => {
    for (const p of w.payloads) decodePackedBatch(p);
  });

  const tp = new TokenProcessor({ blockSizeTokens: BLOCK });
  const keysMs = best(rounds, () => {
    for (const p of w.payloads) {
      for (const e of decodePackedBatch(p).events) if (e.type === 'BlockStored') tp.keys(e.tokenIds, MODEL);
    }
  });

  let check: IngestCounters | null = null;
  const endToEndMs = best(rounds, () => {
    const counters = new IngestCounters();
    const index = new MemoryIndex();
    const pool = new KvEventPool(new EventApplier(index, tp, counters), counters, null);
    for (let i = 0; i < w.payloads.length; i++) pool.push(TOPIC, seqs[i]!, w.payloads[i]!, null);
    check = counters;
  });
  const c = check as IngestCounters | null;
  if (
    c === null ||
    c.blocksStored !== w.blocks ||
    c.batchesMalformed !== 0 ||
    c.storesSkipped.parent_unknown !== 0
  ) {
    throw new Error(`the bench's batches did not all apply: ${JSON.stringify(c)}`);
  }
  await Promise.resolve();
  const perSec = (n: number, ms: number): number => Math.round((n * 1000) / ms);
  return {
    workload: kind,
    blocksPerSecond: perSec(w.blocks, endToEndMs),
    batchesPerSecond: perSec(w.payloads.length, endToEndMs),
    eventsPerSecond: perSec(w.events, endToEndMs),
    decodeBlocksPerSecond: perSec(w.blocks, decodeMs),
    decodeKeysBlocksPerSecond: perSec(w.blocks, keysMs),
    blocks: w.blocks,
    removedBlocks: w.removed,
    batches: w.payloads.length,
    events: w.events,
    payloadBytes: bytes,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const fmt = (n: number): string => n.toLocaleString('en-US');
  for (const workload of ['steady', 'prefill'] as const) {
    const r = await benchIngest({ workload });
    console.log(
      `KV-event ingestion, one core, ${workload} (${fmt(r.batches)} engine batches, ${fmt(r.events)} events,`,
    );
    console.log(
      `  ${fmt(r.blocks)} blocks stored and ${fmt(r.removedBlocks)} removed, ${fmt(r.payloadBytes)} bytes)`,
    );
    console.log(`  decode only                 ${fmt(r.decodeBlocksPerSecond).padStart(12)} blocks/s`);
    console.log(`  decode + request keys       ${fmt(r.decodeKeysBlocksPerSecond).padStart(12)} blocks/s`);
    console.log(
      `  decode + apply (memory)     ${fmt(r.blocksPerSecond).padStart(12)} blocks stored/s   (goal ≥ 1,000,000)`,
    );
    console.log(
      `                              ${fmt(r.batchesPerSecond).padStart(12)} batches/s, ${fmt(r.eventsPerSecond)} events/s`,
    );
  }
}
