import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { collectStartupGarbage } from '../../src/core/startup-heap.js';

describe('collectStartupGarbage', () => {
  it('collects unreachable objects at once, without leaving gc exposed to later contexts', async () => {
    let ref: WeakRef<object> | null = null;
    (() => {
      ref = new WeakRef({ big: new Array(100_000).fill(1) });
    })();
    // A WeakRef target stays alive until the job that created it ends.
    await new Promise((r) => setImmediate(r));
    expect(typeof runInNewContext('typeof gc')).toBe('string');
    collectStartupGarbage();
    expect(ref!.deref()).toBeUndefined();
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});
