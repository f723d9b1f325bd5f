/**
 * The engine core's two halves of P/D: a prefill that holds its blocks for a remote decoder, and a
 * decode whose prompt KV arrived from elsewhere.
 */
import { describe, expect, it } from 'vitest';
import type { StepResult } from '../../../src/engine/core/types.js';
import { makeEngine, request, runUntilIdle, tokens } from './engine-fixtures.js';

function finished(steps: StepResult[], id: string) {
  for (const s of steps)
    for (const o of s.outputs) if (o.requestId === id && o.finishReason !== null) return o;
  return undefined;
}

describe('P/D prefill: holding blocks for the decoder', () => {
  it('keeps the blocks of a length-capped prefill, reports their ids, and frees them on release', () => {
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 32 });
    engine.addRequest(request('p', tokens(1, 10), [7], { holdBlocksOnFinish: true }));
    const run = runUntilIdle(engine);
    const out = finished(run.steps, 'p')!;
    expect(out.finishReason).toBe('length');
    // The ten prompt tokens' KV: three blocks of four (the sampled token has no KV yet).
    expect(out.heldBlockIds).toHaveLength(3);
    expect(engine.stats().numHeld).toBe(1);
    const used = engine.stats().kvCacheUsage;
    expect(used).toBeGreaterThan(0);
    expect(engine.heldBlocks('p')!.blockIds).toEqual(out.heldBlockIds);
    expect(engine.heldBlocks('p')!.promptTokenIds).toEqual(tokens(1, 10));
    expect(engine.releaseHeld('p')).toBe(true);
    expect(engine.releaseHeld('p')).toBe(false);
    expect(engine.stats().numHeld).toBe(0);
    expect(engine.stats().kvCacheUsage).toBe(0);
    // Released blocks stay in the prefix cache.
    engine.addRequest(request('again', tokens(1, 10), [7]));
    expect(runUntilIdle(engine).byRequest.get('again')!.numCachedTokens).toBe(8);
  });

  it('frees held blocks when the finished prefill is aborted (its answer never reached a decoder)', () => {
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 32 });
    engine.addRequest(request('p', tokens(1, 10), [7], { holdBlocksOnFinish: true }));
    runUntilIdle(engine);
    expect(engine.stats().numHeld).toBe(1);
    expect(engine.abortRequest('p')).toBe(true);
    expect(engine.stats().numHeld).toBe(0);
    expect(engine.stats().kvCacheUsage).toBe(0);
    expect(engine.abortRequest('p')).toBe(false);
  });

  it('does not hold when the prefill ends otherwise, or when not asked to', () => {
    const engine = makeEngine();
    engine.addRequest(request('stopped', tokens(1, 10), [], { maxTokens: 1, holdBlocksOnFinish: true }));
    engine.addRequest(request('plain', tokens(2, 10), [7]));
    const run = runUntilIdle(engine);
    expect(finished(run.steps, 'stopped')!.heldBlockIds).toBeUndefined();
    expect(finished(run.steps, 'plain')!.heldBlockIds).toBeUndefined();
    expect(engine.stats().numHeld).toBe(0);
    expect(engine.stats().kvCacheUsage).toBe(0);
  });

  it('never lends held blocks to other requests, and releases them when the hold times out', () => {
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 9, heldBlocksTimeoutS: 1 });
    engine.addRequest(request('p', tokens(1, 12), [7], { holdBlocksOnFinish: true }));
    const run = runUntilIdle(engine);
    const held = new Set(finished(run.steps, 'p')!.heldBlockIds);
    // Three blocks held (the twelve prompt tokens) of eight usable: a request needing six must wait.
    engine.addRequest(request('big', tokens(2, 24), [1], { arrivalTime: run.now }));
    const blocked = engine.step(run.now);
    expect(blocked.numScheduledSeqs).toBe(0);
    expect(engine.releaseExpired(run.now + 0.5)).toBe(0);
    expect(engine.releaseExpired(run.now + 1.5)).toBe(1);
    const later = runUntilIdle(engine, run.now + 1.5);
    expect(later.byRequest.get('big')!.finishReason).toBe('length');
    expect(held.size).toBe(3);
  });
});

describe('P/D decode: a prompt whose KV came from a prefiller', () => {
  it('computes only the last prompt position and samples the first token in the first step', () => {
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 64, maxNumBatchedTokens: 64 });
    engine.addRequest(request('d', tokens(1, 30), [5, 6, 7], { remotePrefilled: true }));
    const first = engine.step(0);
    expect(first.numScheduledTokens).toBe(1);
    expect(first.outputs[0]!.newTokenIds).toEqual([5]);
    const run = runUntilIdle(engine, first.endTime);
    expect(run.byRequest.get('d')!.tokens).toEqual([6, 7]);
    // Its full blocks are in the prefix cache now, as if computed here.
    engine.addRequest(request('local', tokens(1, 30), [1]));
    expect(runUntilIdle(engine).byRequest.get('local')!.numCachedTokens).toBe(28);
  });

  it('reuses the blocks it already has and reports them as cached', () => {
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 64 });
    engine.addRequest(request('warm', tokens(1, 16), [1]));
    runUntilIdle(engine);
    engine.addRequest(request('d', [...tokens(1, 16), ...tokens(9, 12)], [5], { remotePrefilled: true }));
    const run = runUntilIdle(engine);
    expect(run.steps[0]!.numScheduledTokens).toBe(1);
    expect(run.byRequest.get('d')!.numCachedTokens).toBe(16);
  });

  it('waits for free blocks like any request', () => {
    // Eight usable blocks: `long` grows to five, `d` needs four, so `d` waits for `long` to finish.
    const engine = makeEngine({ blockSize: 4, numGpuBlocks: 9 });
    engine.addRequest(request('long', tokens(1, 15), [1, 2, 3, 4, 5]));
    engine.step(0);
    engine.addRequest(request('d', tokens(2, 15), [5], { remotePrefilled: true, arrivalTime: 0 }));
    const run = runUntilIdle(engine, 1);
    expect(run.byRequest.get('d')!.tokens).toEqual([5]);
    expect(run.byRequest.get('long')!.finishReason).toBe('length');
  });
});
