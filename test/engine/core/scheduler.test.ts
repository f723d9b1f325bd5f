import { describe, expect, it } from 'vitest';
import { collect, makeEngine, request, runUntilIdle, tokens, type Collected } from './engine-fixtures.js';

describe('Scheduler', () => {
  it('splits a long prompt across steps without exceeding the token budget', () => {
    const engine = makeEngine({ maxNumBatchedTokens: 32, enablePrefixCaching: false });
    engine.addRequest(request('long', tokens(1, 100), tokens(9, 3)));
    engine.addRequest(request('short', tokens(2, 10), tokens(8, 3)));
    const run = runUntilIdle(engine);
    for (const s of run.steps) expect(s.numScheduledTokens).toBeLessThanOrEqual(32);
    // The last 4 prompt tokens of the long request share step 4 with the short prompt.
    expect(run.steps.slice(0, 4).map((s) => s.numScheduledTokens)).toEqual([32, 32, 32, 14]);
    expect(run.steps.slice(0, 3).map((s) => s.numScheduledSeqs)).toEqual([1, 1, 1]);
    // 100 prompt tokens at 32 per step: the first token comes out of the fourth step.
    expect(run.byRequest.get('long')?.tokenSteps[0]).toBe(3);
    expect(run.steps[0]?.outputs.find((o) => o.requestId === 'long')?.newTokenIds).toEqual([]);
    expect(run.byRequest.get('long')?.tokens).toEqual(tokens(9, 3));
    expect(run.byRequest.get('short')?.tokens).toEqual(tokens(8, 3));
  });

  it('serves running decodes before admitting waiting prefills', () => {
    const engine = makeEngine({ maxNumBatchedTokens: 16, enablePrefixCaching: false });
    engine.addRequest(request('a', tokens(1, 8), tokens(9, 5)));
    engine.step(0);
    engine.addRequest(request('b', tokens(2, 40), tokens(8, 2)));
    const r = engine.step(1);
    // One decode token for a, the other 15 for b's first chunk.
    expect(r.numScheduledSeqs).toBe(2);
    expect(r.outputs.map((o) => [o.requestId, o.newTokenIds.length])).toEqual([
      ['a', 1],
      ['b', 0],
    ]);
    expect(r.numScheduledTokens).toBe(16);
  });

  it('never runs more than maxNumSeqs sequences at once', () => {
    const engine = makeEngine({ maxNumSeqs: 2 });
    for (let i = 0; i < 5; i++) engine.addRequest(request(`r${i}`, tokens(i, 6), tokens(50 + i, 4)));
    const run = runUntilIdle(engine);
    for (const s of run.steps) expect(s.numScheduledSeqs).toBeLessThanOrEqual(2);
    expect(engine.stats().numRunning).toBe(0);
    expect(run.byRequest.size).toBe(5);
    for (let i = 0; i < 5; i++) expect(run.byRequest.get(`r${i}`)?.tokens).toEqual(tokens(50 + i, 4));
  });

  it('preempts the newest running sequence when blocks run out, then resumes it to the same tokens', () => {
    // 9 usable blocks of 4 tokens; three sequences growing to 16 tokens each need 12.
    const engine = makeEngine({ numGpuBlocks: 10, maxNumBatchedTokens: 64 });
    engine.addRequest(request('a', tokens(1, 4), tokens(11, 12)));
    engine.addRequest(request('b', tokens(2, 4), tokens(12, 12)));
    engine.addRequest(request('c', tokens(3, 4), tokens(13, 12)));
    const byRequest = new Map<string, Collected>();
    let now = 0;
    let firstPreemption = -1;
    for (let step = 0; engine.hasUnfinishedRequests(); step++) {
      const r = engine.step(now);
      collect(r, step, byRequest);
      if (r.numPreempted > 0 && firstPreemption < 0) {
        firstPreemption = step;
        // c, the newest, lost its blocks; a and b went on decoding.
        expect(r.outputs.map((o) => o.requestId)).toEqual(['a', 'b']);
        expect(engine.stats().numWaiting).toBe(1);
      }
      now = r.endTime;
      expect(step).toBeLessThan(200);
    }
    expect(firstPreemption).toBeGreaterThan(0);
    expect(engine.stats().numPreemptions).toBeGreaterThanOrEqual(1);
    for (const [id, key] of [
      ['a', 11],
      ['b', 12],
      ['c', 13],
    ] as const) {
      const c = byRequest.get(id);
      expect(c?.tokens).toEqual(tokens(key, 12));
      expect(c?.finishReason).toBe('length');
    }
    // a, the oldest, was never interrupted: one token per step from its first.
    const aSteps = byRequest.get('a')?.tokenSteps ?? [];
    expect(aSteps).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(engine.stats().kvCacheUsage).toBe(0);
  });

  it('does not admit waiting requests in a step that preempted', () => {
    const engine = makeEngine({ numGpuBlocks: 4, maxNumBatchedTokens: 64 });
    engine.addRequest(request('a', tokens(1, 4), tokens(11, 6)));
    engine.addRequest(request('b', tokens(2, 4), tokens(12, 6)));
    let now = 0;
    let sawPreemption = false;
    while (engine.hasUnfinishedRequests()) {
      const r = engine.step(now);
      if (r.numPreempted > 0) {
        sawPreemption = true;
        expect(r.outputs.every((o) => o.requestId === 'a')).toBe(true);
      }
      now = r.endTime;
    }
    expect(sawPreemption).toBe(true);
  });
});
