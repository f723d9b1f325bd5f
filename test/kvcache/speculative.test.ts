/** Speculative entries: entered at routing, gone after the TTL, separate from confirmed entries. */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { MemoryIndex } from '../../src/kvcache/index/memory.js';
import { TokenProcessor } from '../../src/kvcache/keys.js';
import { MAX_PENDING, SpeculativeIndexer, type SpeculativeTimers } from '../../src/kvcache/speculative.js';

class ManualTimers implements SpeculativeTimers {
  pending: { fn: () => void; ms: number } | null = null;
  setTimeout(fn: () => void, ms: number): unknown {
    this.pending = { fn, ms };
    return this.pending;
  }
  clearTimeout(): void {
    this.pending = null;
  }
  fire(): void {
    const p = this.pending;
    this.pending = null;
    p?.fn();
  }
}

const tp = new TokenProcessor({ blockSizeTokens: 4 });
const keysA = tp.keys(
  Array.from({ length: 16 }, (_, i) => i),
  'm',
);
const keysB = tp.keys(
  Array.from({ length: 8 }, (_, i) => 100 + i),
  'm',
);

describe('SpeculativeIndexer', () => {
  it('scores a just-routed prompt for its server until the TTL passes', () => {
    let now = 1000;
    const timers = new ManualTimers();
    const idx = new MemoryIndex();
    const spec = new SpeculativeIndexer(idx, 2000, () => now, silentLogger(), timers);
    spec.add(keysA, 'a:1');
    expect(idx.score(keysA, {}).get('a:1')).toEqual({ score: 4, blocks: 4 });
    expect(timers.pending?.ms).toBe(2000);
    now += 500;
    spec.add(keysB, 'b:1');
    now += 1500;
    timers.fire();
    // A is due; B is not, and the timer is set for it.
    expect(idx.score(keysA, {}).size).toBe(0);
    expect(idx.score(keysB, {}).get('b:1')?.blocks).toBe(2);
    expect(timers.pending?.ms).toBe(500);
    now += 500;
    timers.fire();
    expect(idx.score(keysB, {}).size).toBe(0);
    expect(timers.pending).toBeNull();
    expect([spec.added, spec.expired, spec.pending]).toEqual([2, 2, 0]);
  });

  it('leaves confirmed entries alone when speculative ones expire', () => {
    let now = 0;
    const timers = new ManualTimers();
    const idx = new MemoryIndex();
    const spec = new SpeculativeIndexer(idx, 10, () => now, silentLogger(), timers);
    spec.add(keysA, 'a:1');
    idx.add(keysA, keysA, [{ pod: 'a:1', tier: 'gpu', speculative: false, groupIdx: null }]);
    now = 10;
    timers.fire();
    expect(idx.score(keysA, {}).get('a:1')?.blocks).toBe(4);
    expect(idx.lookup(keysA)[0]).toEqual([{ pod: 'a:1', tier: 'gpu', speculative: false, groupIdx: null }]);
  });

  it('expires the oldest early rather than grow without bound', () => {
    const timers = new ManualTimers();
    const idx = new MemoryIndex();
    const spec = new SpeculativeIndexer(idx, 60_000, () => 0, silentLogger(), timers);
    for (let i = 0; i < MAX_PENDING + 5; i++) spec.add(keysB, 'b:1');
    expect(spec.pending).toBe(MAX_PENDING);
    expect(spec.expired).toBe(5);
    spec.close();
    expect(timers.pending).toBeNull();
  });
});
