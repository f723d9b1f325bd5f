import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { KvEvent, PrefixHashAlgo, StepResult } from '../../../src/engine/core/types.js';
import { STEP_SECONDS, makeEngine, request, runUntilIdle, tokens } from './engine-fixtures.js';

describe('EngineCore', () => {
  it('samples the first token when the prefill completes and one token per step after that', () => {
    const engine = makeEngine();
    engine.addRequest(request('a', tokens(1, 10), [7, 8, 9], { arrivalTime: 0 }));
    const r0 = engine.step(0.5);
    expect(r0.startTime).toBe(0.5);
    expect(r0.endTime).toBeCloseTo(0.5 + STEP_SECONDS);
    expect(r0.numScheduledTokens).toBe(10);
    expect(r0.outputs).toEqual([
      {
        requestId: 'a',
        newTokenIds: [7],
        numCachedTokens: 0,
        numPromptTokens: 10,
        finishReason: null,
        timings: undefined,
      },
    ]);
    const r1 = engine.step(r0.endTime);
    expect(r1.numScheduledTokens).toBe(1);
    expect(r1.outputs[0]?.newTokenIds).toEqual([8]);
    const r2 = engine.step(r1.endTime);
    expect(r2.outputs[0]?.newTokenIds).toEqual([9]);
    expect(r2.outputs[0]?.finishReason).toBe('length');
    expect(r2.outputs[0]?.timings).toEqual({
      arrivalTime: 0,
      firstScheduledTime: 0.5,
      firstTokenTime: r0.endTime,
      lastTokenTime: r2.endTime,
      finishedTime: r2.endTime,
    });
    expect(engine.hasUnfinishedRequests()).toBe(false);
  });

  it('ends with stop when the output list runs out before maxTokens, and caps outputs at maxTokens', () => {
    const engine = makeEngine();
    engine.addRequest(request('eos', tokens(1, 5), [1, 2], { maxTokens: 10 }));
    engine.addRequest(request('cap', tokens(2, 5), [1, 2, 3, 4, 5], { maxTokens: 3 }));
    engine.addRequest(request('none', tokens(3, 5), [], { maxTokens: 3 }));
    const run = runUntilIdle(engine);
    expect(run.byRequest.get('eos')).toMatchObject({ tokens: [1, 2], finishReason: 'stop' });
    expect(run.byRequest.get('cap')).toMatchObject({ tokens: [1, 2, 3], finishReason: 'length' });
    expect(run.byRequest.get('none')).toMatchObject({ tokens: [], finishReason: 'stop' });
  });

  it('stops a sequence with length when it reaches maxModelLen', () => {
    const engine = makeEngine({ maxModelLen: 12 });
    engine.addRequest(request('a', tokens(1, 10), tokens(2, 8)));
    const run = runUntilIdle(engine);
    expect(run.byRequest.get('a')).toMatchObject({ tokens: tokens(2, 2), finishReason: 'length' });
  });

  it('rejects duplicate ids and requests the server should have refused', () => {
    const engine = makeEngine({ maxModelLen: 16 });
    engine.addRequest(request('a', tokens(1, 4), [1]));
    expect(() => engine.addRequest(request('a', tokens(1, 4), [1]))).toThrow(/duplicate/);
    expect(() => engine.addRequest(request('b', tokens(1, 4), [1], { maxTokens: 0 }))).toThrow(RangeError);
    expect(() => engine.addRequest(request('c', [], [1]))).toThrow(RangeError);
    expect(() => engine.addRequest(request('d', tokens(1, 17), [1]))).toThrow(RangeError);
    expect(engine.stats().numWaiting).toBe(1);
  });

  it('returns an empty step ending when it starts when there is nothing to run', () => {
    const engine = makeEngine();
    const r = engine.step(3);
    expect(r).toEqual({
      startTime: 3,
      endTime: 3,
      outputs: [],
      numScheduledTokens: 0,
      numScheduledSeqs: 0,
      numPreempted: 0,
    });
  });

  it('serves a repeated prompt from the prefix cache, all full blocks but the one holding the last token', () => {
    const engine = makeEngine({ blockSize: 4 });
    engine.addRequest(request('a', tokens(1, 10), [1, 2]));
    const first = runUntilIdle(engine);
    expect(first.byRequest.get('a')?.numCachedTokens).toBe(0);
    engine.addRequest(request('b', tokens(1, 10), [1, 2]));
    engine.addRequest(request('c', tokens(1, 12), [1, 2]));
    const second = runUntilIdle(engine, first.now);
    // floor((n − 1) / block size) blocks: 8 of 10, and 8 of 12 (the third block holds the last token).
    expect(second.byRequest.get('b')?.numCachedTokens).toBe(8);
    expect(second.byRequest.get('c')?.numCachedTokens).toBe(8);
    expect(second.steps[0]?.numScheduledTokens).toBe(2 + 4);
    const s = engine.stats();
    expect(s.prefixCacheQueries).toBe(10 + 10 + 12);
    expect(s.prefixCacheHits).toBe(16);
  });

  it('reuses blocks computed earlier in the same step', () => {
    const engine = makeEngine({ blockSize: 4 });
    engine.addRequest(request('a', tokens(1, 9), [1]));
    engine.addRequest(request('b', tokens(1, 9), [1]));
    const r = engine.step(0);
    expect(r.outputs.map((o) => o.numCachedTokens)).toEqual([0, 8]);
    expect(r.numScheduledTokens).toBe(9 + 1);
  });

  it('isolates prefixes by cache salt and by LoRA adapter', () => {
    const engine = makeEngine({ blockSize: 4 });
    engine.addRequest(request('a', tokens(1, 13), [1], { cacheSalt: 'tenant-1' }));
    let now = runUntilIdle(engine).now;
    engine.addRequest(request('other-salt', tokens(1, 13), [1], { cacheSalt: 'tenant-2' }));
    engine.addRequest(request('no-salt', tokens(1, 13), [1]));
    engine.addRequest(request('lora', tokens(1, 13), [1], { cacheSalt: 'tenant-1', loraName: 'x' }));
    engine.addRequest(request('same-salt', tokens(1, 13), [1], { cacheSalt: 'tenant-1' }));
    const run = runUntilIdle(engine, now);
    now = run.now;
    expect(run.byRequest.get('other-salt')?.numCachedTokens).toBe(0);
    expect(run.byRequest.get('no-salt')?.numCachedTokens).toBe(0);
    expect(run.byRequest.get('lora')?.numCachedTokens).toBe(0);
    expect(run.byRequest.get('same-salt')?.numCachedTokens).toBe(12);
  });

  it('frees the blocks of an aborted request but keeps them cached for reuse', () => {
    const engine = makeEngine({ blockSize: 4, maxNumSeqs: 1 });
    engine.addRequest(request('a', tokens(1, 12), tokens(2, 20)));
    engine.addRequest(request('queued', tokens(3, 8), [1]));
    let now = engine.step(0).endTime;
    now = engine.step(now).endTime;
    expect(engine.stats().kvCacheUsage).toBeGreaterThan(0);
    expect(engine.abortRequest('a')).toBe(true);
    expect(engine.abortRequest('a')).toBe(false);
    expect(engine.abortRequest('nope')).toBe(false);
    expect(engine.abortRequest('queued')).toBe(true);
    expect(engine.stats()).toMatchObject({ kvCacheUsage: 0, numRunning: 0, numWaiting: 0 });
    expect(engine.hasUnfinishedRequests()).toBe(false);
    const idle = engine.step(now);
    expect(idle.outputs).toEqual([]);
    engine.addRequest(request('b', tokens(1, 12), [1]));
    const r = engine.step(now);
    expect(r.outputs.map((o) => o.requestId)).toEqual(['b']);
    expect(r.outputs[0]?.numCachedTokens).toBe(8);
  });

  it('aborts a request that is waiting after preemption', () => {
    const engine = makeEngine({ numGpuBlocks: 4, blockSize: 4 });
    engine.addRequest(request('a', tokens(1, 4), tokens(11, 6)));
    engine.addRequest(request('b', tokens(2, 4), tokens(12, 6)));
    let now = 0;
    let preempted = false;
    while (!preempted) {
      const r = engine.step(now);
      preempted = r.numPreempted > 0;
      now = r.endTime;
    }
    expect(engine.stats().numWaiting).toBe(1);
    expect(engine.abortRequest('b')).toBe(true);
    const run = runUntilIdle(engine, now);
    expect([...run.byRequest.keys()]).toEqual(['a']);
    expect(engine.stats().kvCacheUsage).toBe(0);
  });

  it('gives identical step results for identical inputs', () => {
    const once = (): { steps: StepResult[]; events: KvEvent[] } => {
      const engine = makeEngine({ numGpuBlocks: 24, maxNumBatchedTokens: 24, enableKvEvents: true });
      for (let i = 0; i < 6; i++) {
        engine.addRequest(
          request(`r${i}`, [...tokens(1, 8), ...tokens(i + 2, 5 + i)], tokens(20 + i, 9), {
            arrivalTime: 0.001 * i,
            cacheSalt: i % 3 === 0 ? 's' : undefined,
          }),
        );
      }
      const events: KvEvent[] = [];
      const steps: StepResult[] = [];
      let now = 0;
      while (engine.hasUnfinishedRequests()) {
        const r = engine.step(now);
        steps.push(r);
        events.push(...engine.drainEvents());
        now = r.endTime;
      }
      return { steps, events };
    };
    const a = once();
    const b = once();
    expect(a.steps.length).toBeGreaterThan(5);
    expect(a.steps.some((s) => s.numPreempted > 0)).toBe(true);
    expect(b).toEqual(a);
  });

  it('publishes BlockStored for newly cached blocks, chained to their parent, as prompts and outputs grow', () => {
    const engine = makeEngine({ blockSize: 4, enableKvEvents: true });
    const prompt = tokens(1, 9);
    const out = tokens(2, 6);
    engine.addRequest(request('a', prompt, out, { loraName: 'lora-a' }));
    const run = runUntilIdle(engine);
    const all = [...prompt, ...out];
    const hashes = engine.blockHashesOf(all, { loraName: 'lora-a' });
    const events = engine.drainEvents();
    // Prompt blocks at prefill, then block 3 once its last token (output 3) is computed.
    expect(events).toEqual([
      {
        type: 'BlockStored',
        blockHashes: [hashes[0], hashes[1]],
        parentBlockHash: null,
        tokenIds: all.slice(0, 8),
        blockSize: 4,
        loraName: 'lora-a',
        medium: 'GPU',
        extraKeys: [['lora-a'], ['lora-a']],
      },
      {
        type: 'BlockStored',
        blockHashes: [hashes[2]],
        parentBlockHash: hashes[1],
        tokenIds: all.slice(8, 12),
        blockSize: 4,
        loraName: 'lora-a',
        medium: 'GPU',
        extraKeys: [['lora-a']],
      },
    ]);
    expect(run.byRequest.get('a')?.tokens).toEqual(out);
    expect(engine.drainEvents()).toEqual([]);
  });

  it('publishes BlockRemoved when a cached block is evicted and AllBlocksCleared on a reset', () => {
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 4, enableKvEvents: true });
    engine.addRequest(request('a', tokens(1, 8), [1]));
    let now = runUntilIdle(engine).now;
    const aHashes = engine.blockHashesOf(tokens(1, 8));
    engine.drainEvents();
    engine.addRequest(request('b', tokens(2, 10), [1, 2]));
    const r = engine.step(now);
    now = r.endTime;
    const removed = engine.drainEvents().filter((e) => e.type === 'BlockRemoved');
    // b needs all three usable blocks: a's uncached partial block, then its two cached ones, tail first.
    expect(removed).toEqual([
      { type: 'BlockRemoved', blockHashes: [aHashes[1]], medium: 'GPU' },
      { type: 'BlockRemoved', blockHashes: [aHashes[0]], medium: 'GPU' },
    ]);
    expect(engine.hasUnfinishedRequests()).toBe(true);
    expect(engine.resetPrefixCache()).toBe(false);
    runUntilIdle(engine, now);
    engine.drainEvents();
    expect(engine.resetPrefixCache()).toBe(true);
    expect(engine.drainEvents()).toEqual([{ type: 'AllBlocksCleared' }]);
    engine.addRequest(request('c', tokens(2, 10), [1]));
    expect(engine.step(now).outputs[0]?.numCachedTokens).toBe(0);
  });

  it('computes the published hashes of a prompt like the reference implementation', () => {
    const dir = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/block-hashes');
    const vectors = JSON.parse(readFileSync(join(dir, 'vectors.json'), 'utf8')) as {
      cases: {
        algo: PrefixHashAlgo;
        blockSize: number;
        hashSeed: string | null;
        noneHash: string;
        tokenIds: number[];
        loraName: string | null;
        cacheSalt: string | null;
        externalHashes: string[];
      }[];
    };
    for (const c of vectors.cases) {
      const engine = makeEngine({
        blockSize: c.blockSize,
        hashAlgo: c.algo,
        hashSeed: c.hashSeed ?? undefined,
        noneHash: c.hashSeed === null ? new Uint8Array(Buffer.from(c.noneHash, 'hex')) : undefined,
      });
      const got = engine.blockHashesOf(c.tokenIds, {
        loraName: c.loraName ?? undefined,
        cacheSalt: c.cacheSalt ?? undefined,
      });
      expect(got.map(String)).toEqual(c.externalHashes);
    }
  });

  it('runs with xxhash_cbor and with prefix caching off', () => {
    for (const opts of [{ hashAlgo: 'xxhash_cbor' as const }, { enablePrefixCaching: false }]) {
      const engine = makeEngine(opts);
      engine.addRequest(request('a', tokens(1, 10), [1, 2]));
      runUntilIdle(engine);
      engine.addRequest(request('b', tokens(1, 10), [1, 2]));
      const run = runUntilIdle(engine);
      expect(run.byRequest.get('b')?.numCachedTokens).toBe(opts.enablePrefixCaching === false ? 0 : 8);
    }
  });

  it('reports its figures in stats', () => {
    const engine = makeEngine({ numGpuBlocks: 11, blockSize: 4, maxNumSeqs: 1 });
    engine.addRequest(request('a', tokens(1, 8), [1, 2]));
    engine.addRequest(request('b', tokens(2, 8), [1, 2]));
    engine.step(0);
    expect(engine.stats()).toEqual({
      numRunning: 1,
      numWaiting: 1,
      kvCacheUsage: expect.closeTo(0.2, 12),
      prefixCacheQueries: 8,
      prefixCacheHits: 0,
      numPreemptions: 0,
      numGpuBlocks: 11,
      blockSize: 4,
      numHeld: 0,
    });
  });
});
