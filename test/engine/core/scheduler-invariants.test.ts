import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { computeNoneHash } from '../../../src/engine/core/block-hash.js';
import type { KvBlock } from '../../../src/engine/core/block-pool.js';
import { KvCacheManager } from '../../../src/engine/core/kv-cache-manager.js';
import { EngineRequest } from '../../../src/engine/core/request.js';
import { Scheduler } from '../../../src/engine/core/scheduler.js';

const BLOCK_SIZE = 4;
const NUM_GPU_BLOCKS = 40;
const BUDGET = 24;
const MAX_SEQS = 6;
const MAX_MODEL_LEN = 64;
const noneHash = computeNoneHash('sha256_cbor', '0');

/** Every block is either free (unreferenced) or referenced exactly by the live requests that hold it. */
function checkBlockAccounting(kv: KvCacheManager, live: readonly EngineRequest[]): void {
  const holders = new Map<KvBlock, number>();
  for (const r of live) {
    expect(new Set(r.blocks).size).toBe(r.blocks.length);
    for (const b of r.blocks) holders.set(b, (holders.get(b) ?? 0) + 1);
    // A request holds exactly the blocks for its computed tokens plus those scheduled in this step.
    expect(r.blocks.length).toBe(Math.ceil((r.numComputedTokens + r.numScheduledTokens) / BLOCK_SIZE));
    for (let i = 0; i < r.numCachedBlocks; i++) expect(r.blocks[i]?.hash?.key).toBe(r.blockHashes[i]?.key);
  }
  const free = new Set(kv.pool.freeBlocksInEvictionOrder());
  for (const b of kv.pool.blocks) {
    if (b.isNull) continue;
    expect(b.refCnt).toBe(holders.get(b) ?? 0);
    expect(free.has(b)).toBe(b.refCnt === 0);
  }
  expect(kv.pool.numFreeBlocks).toBe(free.size);
}

describe('Scheduler under a random workload', () => {
  it('keeps block accounting, budgets and token streams exact through preemption and aborts', () => {
    const rng = new Rng(20240611);
    const kv = new KvCacheManager({
      blockSize: BLOCK_SIZE,
      numGpuBlocks: NUM_GPU_BLOCKS,
      maxModelLen: MAX_MODEL_LEN,
      enablePrefixCaching: true,
      enableKvEvents: true,
    });
    const sched = new Scheduler(
      { maxNumSeqs: MAX_SEQS, maxNumBatchedTokens: BUDGET, maxModelLen: MAX_MODEL_LEN },
      kv,
    );
    const live = new Map<string, EngineRequest>();
    const emitted = new Map<string, number[]>();
    const shared = Array.from({ length: 16 }, (_, i) => 500 + i);
    let nextId = 0;
    let finished = 0;
    let aborted = 0;
    let now = 0;

    for (let step = 0; step < 1500; step++) {
      if (rng.next() < 0.35 && live.size < 14) {
        const promptLen = rng.int(1, 30);
        const prompt =
          rng.next() < 0.5
            ? [...shared.slice(0, rng.int(0, 16)), ...Array.from({ length: promptLen }, () => rng.int(0, 50))]
            : Array.from({ length: promptLen }, () => rng.int(0, 50));
        if (prompt.length === 0) prompt.push(1);
        const outLen = rng.int(0, 20);
        const id = `r${nextId++}`;
        const req = new EngineRequest(
          {
            requestId: id,
            promptTokenIds: prompt,
            outputTokenIds: Array.from({ length: outLen }, () => rng.int(0, 50)),
            maxTokens: rng.int(1, 24),
            arrivalTime: now,
            cacheSalt: rng.next() < 0.2 ? 'salt' : undefined,
          },
          'sha256_cbor',
          noneHash,
          BLOCK_SIZE,
          true,
        );
        live.set(id, req);
        emitted.set(id, []);
        sched.addRequest(req);
      }
      if (rng.next() < 0.03 && live.size > 0) {
        const ids = [...live.keys()];
        const id = ids[rng.int(0, ids.length - 1)] as string;
        expect(sched.abort(live.get(id) as EngineRequest)).toBe(true);
        live.delete(id);
        aborted++;
      }

      const n = sched.schedule(now);
      expect(sched.shape.numTokens).toBeLessThanOrEqual(BUDGET);
      expect(n).toBeLessThanOrEqual(MAX_SEQS);
      expect(sched.running.length).toBeLessThanOrEqual(MAX_SEQS);
      checkBlockAccounting(
        kv,
        [...live.values()].filter((r) => r.status === 'running'),
      );
      const outputs = sched.updateFromOutput(now + 0.01);
      now += 0.01;
      for (const o of outputs) {
        emitted.get(o.requestId)?.push(...o.newTokenIds);
        if (o.finishReason === null) continue;
        const req = live.get(o.requestId) as EngineRequest;
        const cap = Math.min(req.maxTokens, MAX_MODEL_LEN - req.numPromptTokens);
        const expected = req.outputTokenIds.slice(0, cap);
        expect(emitted.get(o.requestId)).toEqual(expected);
        expect(o.finishReason).toBe(req.outputTokenIds.length < cap ? 'stop' : 'length');
        live.delete(o.requestId);
        finished++;
      }
      kv.pool.drainEvents();
    }
    expect(finished).toBeGreaterThan(100);
    expect(aborted).toBeGreaterThan(5);
    expect(sched.numPreemptions).toBeGreaterThan(0);
    expect(kv.prefixCacheHits).toBeGreaterThan(0);
  });
});
