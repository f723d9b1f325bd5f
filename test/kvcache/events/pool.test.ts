import { describe, expect, it } from 'vitest';
import type { KvEvent } from '../../../src/engine/core/types.js';
import { KvEventEncoder } from '../../../src/engine/kv-events/encode.js';
import { EventApplier } from '../../../src/kvcache/events/apply.js';
import { KvEventPool, type PoolOptions, type ReplaySource } from '../../../src/kvcache/events/pool.js';
import type { ReplayHandler, ReplayResult } from '../../../src/kvcache/events/replay.js';
import { IngestCounters } from '../../../src/kvcache/events/stats.js';
import type { KeyType, KvBlockIndex, PodEntry } from '../../../src/kvcache/index/index.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { TokenProcessor, type KeyList } from '../../../src/kvcache/keys.js';
import { entry, expectIndex, ExpectedIndex } from './index-state.js';
import { waitFor } from '../../helpers/wait.js';

const MODEL = 'm';
const A = 'a:8000';
const B = 'b:8000';
const BS = 4;
/** The KV-cache group llmd's engine names in its events. */
const GROUP = 0;
const tp = new TokenProcessor({ blockSizeTokens: BS });
const enc = new KvEventEncoder({ dataParallelRank: 0 });

const topic = (pod: string): Buffer => Buffer.from(`kv@${pod}@${MODEL}`);

function seqFrame(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}

/** Batch `n` of a server: one block of its own tokens (distinct per server and batch). */
function tokensOf(pod: string, n: number): number[] {
  const base = (pod === A ? 1_000 : 2_000) + 10 * n;
  return [base, base + 1, base + 2, base + 3];
}

function payload(pod: string, n: number, extra: KvEvent[] = []): Buffer {
  const stored: KvEvent = {
    type: 'BlockStored',
    blockHashes: [BigInt(pod === A ? 1_000_000 + n : 2_000_000 + n)],
    parentBlockHash: null,
    tokenIds: tokensOf(pod, n),
    blockSize: BS,
    loraName: null,
    medium: 'GPU',
    extraKeys: null,
  };
  return Buffer.from(enc.encode(1_700_000_000 + n, [stored, ...extra]));
}

/** The expected state: server → the batches whose block it holds. */
function holding(held: Record<string, number[]>): ExpectedIndex {
  const e = new ExpectedIndex();
  for (const [pod, ns] of Object.entries(held))
    for (const n of ns) e.hold(tp.keys(tokensOf(pod, n), MODEL), entry(pod, 'gpu', GROUP));
  return e;
}

/** A memory index whose calls for one server wait for a gate to open (a slow backend). */
class GatedIndex implements KvBlockIndex {
  readonly backend = 'redis' as const;
  readonly inner = new MemoryIndex();
  readonly applied: string[] = [];
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;

  constructor(private readonly slowPod: string) {}

  close(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  release(): void {
    this.gate = null;
    this.open?.();
  }

  private run(pod: string, what: string, f: () => void): void | Promise<void> {
    if (pod !== this.slowPod || this.gate === null) {
      f();
      this.applied.push(`${pod} ${what}`);
      return;
    }
    return this.gate.then(() => {
      f();
      this.applied.push(`${pod} ${what}`);
    });
  }

  lookup(keys: KeyList): PodEntry[][] {
    return this.inner.lookup(keys);
  }
  score(keys: KeyList): Map<string, { score: number; blocks: number }> {
    return this.inner.score(keys, {});
  }
  add(e: KeyList | null, r: KeyList, entries: readonly PodEntry[]): void | Promise<void> {
    return this.run(entries[0]!.pod, `add ${e?.[1] ?? ''}`, () => this.inner.add(e, r, entries));
  }
  evict(t: KeyType, keys: KeyList, entries: readonly PodEntry[]): void | Promise<void> {
    return this.run(entries[0]!.pod, 'evict', () => this.inner.evict(t, keys, entries));
  }
  getRequestKey(hi: number, lo: number): readonly [number, number] | null {
    return this.inner.getRequestKey(hi, lo);
  }
  clear(pod: string): void | Promise<void> {
    return this.run(pod, 'clear', () => this.inner.clear(pod));
  }
}

/** A memory index that fails every call while `down`, as a Redis index does when Redis is away. */
class FlakyIndex implements KvBlockIndex {
  readonly backend = 'redis' as const;
  readonly inner = new MemoryIndex();
  down = false;

  get available(): boolean {
    return !this.down;
  }

  private run<T>(f: () => T): Promise<T> {
    return this.down ? Promise.reject(new Error('redis is down')) : Promise.resolve(f());
  }

  close(): void {}
  lookup(keys: KeyList): PodEntry[][] {
    return this.inner.lookup(keys);
  }
  score(keys: KeyList): Map<string, { score: number; blocks: number }> {
    return this.inner.score(keys, {});
  }
  add(e: KeyList | null, r: KeyList, entries: readonly PodEntry[]): Promise<void> {
    return this.run(() => this.inner.add(e, r, entries));
  }
  evict(t: KeyType, keys: KeyList, entries: readonly PodEntry[]): Promise<void> {
    return this.run(() => this.inner.evict(t, keys, entries));
  }
  getRequestKey(hi: number, lo: number): Promise<readonly [number, number] | null> {
    return this.run(() => this.inner.getRequestKey(hi, lo));
  }
  clear(pod: string): Promise<void> {
    return this.run(() => this.inner.clear(pod));
  }
}

/** A replay client the test answers by hand. */
class FakeReplay implements ReplaySource {
  readonly limits = { cooldownMs: 1_000 };
  readonly calls: {
    endpoint: string;
    from: number;
    onMessage: ReplayHandler;
    resolve: (r: ReplayResult) => void;
  }[] = [];

  replay(endpoint: string, from: number, onMessage: ReplayHandler): Promise<ReplayResult> {
    return new Promise((resolve) => this.calls.push({ endpoint, from, onMessage, resolve }));
  }
}

function setup(opts: PoolOptions & { replay?: FakeReplay | null; index?: KvBlockIndex } = {}): {
  pool: KvEventPool;
  index: MemoryIndex;
  counters: IngestCounters;
  push: (pod: string, seq: number, p?: Buffer) => void;
} {
  const counters = new IngestCounters();
  const index = opts.index ?? new MemoryIndex();
  const pool = new KvEventPool(new EventApplier(index, tp, counters), counters, opts.replay ?? null, opts);
  return {
    pool,
    index: index instanceof GatedIndex ? index.inner : (index as MemoryIndex),
    counters,
    push: (pod, seq, p = payload(pod, seq)) => pool.push(topic(pod), seqFrame(seq), p, null),
  };
}

describe('KvEventPool: ordering', () => {
  it("applies each server's batches in order; a slow server does not hold up another", async () => {
    const gated = new GatedIndex(A);
    const { pool, index, push } = setup({ index: gated });
    gated.close();
    push(A, 0);
    push(A, 1);
    push(B, 0);
    push(A, 2);
    push(B, 1);
    // B is done at once; A waits on its first call.
    expectIndex(index, holding({ [B]: [0, 1] }));
    expect(pool.serverState(A)).toMatchObject({ lastApplied: 2, queued: 2 });
    let idle = false;
    const done = pool.idle().then(() => (idle = true));
    await Promise.resolve();
    expect(idle).toBe(false);
    gated.release();
    await done;
    expectIndex(index, holding({ [A]: [0, 1, 2], [B]: [0, 1] }));
    expect(gated.applied.filter((s) => s.startsWith(A))).toEqual([
      `${A} add ${1_000_000}`,
      `${A} add ${1_000_001}`,
      `${A} add ${1_000_002}`,
    ]);
  });

  it('applies synchronously when the index does: no promise, no queue hop', () => {
    const { pool, index, push } = setup();
    push(A, 0);
    expectIndex(index, holding({ [A]: [0] }));
    expect(pool.queueDepth).toBe(0);
  });
});

describe('KvEventPool: sequence tracking', () => {
  it('drops a duplicate sequence number', () => {
    const { index, counters, push } = setup();
    push(A, 0);
    push(A, 1);
    push(A, 1, payload(A, 7));
    expect(counters.duplicates).toBe(1);
    expectIndex(index, holding({ [A]: [0, 1] }));
  });

  it('on a gap without replay, clears the server and rebuilds it from what follows', () => {
    const { index, counters, push } = setup();
    push(A, 0);
    push(B, 0);
    push(A, 3);
    push(A, 4);
    expect(counters).toMatchObject({ gaps: 1, missedSequences: 2, resets: 1 });
    expectIndex(index, holding({ [A]: [3, 4], [B]: [0] }));
  });

  it('on a restart (the number goes back), clears the server and takes the new stream', () => {
    const { pool, index, counters, push } = setup();
    push(A, 0);
    push(A, 1);
    push(A, 2);
    push(B, 0);
    push(A, 0, payload(A, 10));
    push(A, 1, payload(A, 11));
    expect(counters).toMatchObject({ resets: 1, gaps: 0, duplicates: 0 });
    expectIndex(index, holding({ [A]: [10, 11], [B]: [0] }));
    expect(pool.serverState(A)).toMatchObject({ lastLive: 1, lastApplied: 1 });
  });

  it('takes a first message mid-stream as it is when there is no replay', () => {
    const { index, counters, push } = setup();
    push(A, 41);
    push(A, 42);
    expect(counters).toMatchObject({ gaps: 0, resets: 0 });
    expectIndex(index, holding({ [A]: [41, 42] }));
  });

  it('counts a malformed batch and keeps its sequence number (no gap after it)', () => {
    const { index, counters, push } = setup();
    push(A, 0);
    push(A, 1, Buffer.from([0xc1]));
    push(A, 2);
    expect(counters).toMatchObject({ batches: 3, batchesMalformed: 1, gaps: 0 });
    expectIndex(index, holding({ [A]: [0, 2] }));
  });

  it('drops what a full queue cannot take; the next message shows the hole', async () => {
    const gated = new GatedIndex(A);
    const { pool, index, counters, push } = setup({ index: gated, maxQueuedPerServer: 2 });
    gated.close();
    push(A, 0); // being applied
    push(A, 1);
    push(A, 2);
    push(A, 3); // no room
    expect(counters.messagesDropped).toBe(1);
    gated.release();
    await pool.idle();
    push(A, 4);
    await pool.idle();
    expect(counters).toMatchObject({ gaps: 1, missedSequences: 1 });
    expectIndex(index, holding({ [A]: [4] }));
  });
});

describe('KvEventPool: replay', () => {
  it('after writes failed while the index was away, replays the server from 0 once it answers again', async () => {
    const replay = new FakeReplay();
    const flaky = new FlakyIndex();
    const { pool, counters, push } = setup({ replay, index: flaky, replayEndpointFor: () => 'tcp://r:1' });
    push(A, 0);
    await pool.idle();
    flaky.down = true;
    push(A, 1);
    push(A, 2);
    await pool.idle();
    expect(counters.applyErrors).toBe(2);
    // Back, and empty, as a restarted Redis: the next batch sends the server back to the start.
    flaky.down = false;
    flaky.inner.clear(A);
    push(A, 3);
    expect(replay.calls.map((c) => c.from)).toEqual([0]);
    for (const n of [0, 1, 2, 3]) await replay.calls[0]!.onMessage(n, payload(A, n), null);
    replay.calls[0]!.resolve({ ok: true, delivered: 4 });
    await pool.idle();
    expectIndex(flaky.inner, holding({ [A]: [0, 1, 2, 3] }));
  });

  it('resyncs a server that lost writes and then went quiet, once the index answers', async () => {
    const replay = new FakeReplay();
    const flaky = new FlakyIndex();
    const { pool, push } = setup({ replay, index: flaky, replayEndpointFor: () => 'tcp://r:1' });
    push(A, 0);
    await pool.idle();
    flaky.down = true;
    push(A, 1);
    await pool.idle();
    flaky.down = false;
    flaky.inner.clear(A);
    // No further batch arrives: the pool asks for the replay by itself.
    await waitFor(() => replay.calls.length === 1, 5000, 'the resync replay');
    expect(replay.calls[0]!.from).toBe(0);
    for (const n of [0, 1]) await replay.calls[0]!.onMessage(n, payload(A, n), null);
    replay.calls[0]!.resolve({ ok: true, delivered: 2 });
    await pool.idle();
    expectIndex(flaky.inner, holding({ [A]: [0, 1] }));
    pool.close();
  });

  it('after writes failed, without a replay endpoint, clears the server and rebuilds it from live batches', async () => {
    const flaky = new FlakyIndex();
    const { pool, counters, push } = setup({ index: flaky });
    push(A, 0);
    await pool.idle();
    flaky.down = true;
    push(A, 1);
    await pool.idle();
    flaky.down = false;
    push(A, 2);
    await pool.idle();
    // Batch 0 goes with the rest: the server may have evicted it while the removal was lost.
    expectIndex(flaky.inner, holding({ [A]: [2] }));
    expect(counters.resets).toBe(1);
  });

  it('replays a gap from the first missing batch; live batches wait and the covered ones are dropped', async () => {
    const replay = new FakeReplay();
    const { pool, index, counters, push } = setup({
      replay,
      replayEndpointFor: (s) => (s === A ? 'tcp://a:5558' : null),
    });
    push(A, 0);
    push(A, 3);
    push(A, 4);
    expect(replay.calls.map((c) => [c.endpoint, c.from])).toEqual([['tcp://a:5558', 1]]);
    expectIndex(index, holding({ [A]: [0] }));
    const c = replay.calls[0]!;
    for (const n of [1, 2, 3]) await c.onMessage(n, payload(A, n), null);
    c.resolve({ ok: true, delivered: 3 });
    await pool.idle();
    expectIndex(index, holding({ [A]: [0, 1, 2, 3, 4] }));
    expect(counters).toMatchObject({
      gaps: 1,
      replaysStarted: 1,
      replaysCompleted: 1,
      replayedMessages: 3,
      duplicates: 1,
      resets: 0,
    });
    // B has no replay endpoint: its gap is rebuilt.
    push(B, 0);
    push(B, 2);
    expect(replay.calls).toHaveLength(1);
    expect(counters.resets).toBe(1);
  });

  it('replays from 0 on a first message mid-stream, and on a proactive request', async () => {
    const replay = new FakeReplay();
    const { pool, index, push } = setup({ replay, replayEndpointFor: () => 'tcp://r:1' });
    push(A, 2);
    expect(replay.calls.map((c) => c.from)).toEqual([0]);
    for (const n of [0, 1, 2]) await replay.calls[0]!.onMessage(n, payload(A, n), null);
    replay.calls[0]!.resolve({ ok: true, delivered: 3 });
    await pool.idle();
    expectIndex(index, holding({ [A]: [0, 1, 2] }));

    pool.ensureServer(B, 'tcp://b:2', MODEL, true);
    expect(replay.calls.map((c) => [c.endpoint, c.from])).toEqual([
      ['tcp://r:1', 0],
      ['tcp://b:2', 0],
    ]);
    // Nothing buffered yet: an empty replay from 0 is a success.
    replay.calls[1]!.resolve({ ok: true, delivered: 0 });
    await pool.idle();
    expect(pool.serverState(B)).toMatchObject({ replaying: false, lastApplied: -1 });
  });

  it('after a failed replay, rebuilds and cools down; a gap then is rebuilt, and later replayed again', async () => {
    let now = 0;
    const replay = new FakeReplay();
    const { pool, index, counters, push } = setup({
      replay,
      replayEndpointFor: () => 'tcp://r:1',
      now: () => now,
    });
    push(A, 0);
    push(A, 2);
    replay.calls[0]!.resolve({ ok: false, delivered: 0, reason: 'no-progress', detail: '' });
    await pool.idle();
    expect(counters).toMatchObject({ replaysFailed: 1, resets: 1 });
    expectIndex(index, holding({ [A]: [2] }));
    push(A, 4);
    expect(replay.calls).toHaveLength(1);
    expect(counters.resets).toBe(2);
    now = 1_000;
    push(A, 6);
    expect(replay.calls.map((c) => c.from)).toEqual([1, 5]);
  });

  it("rebuilds when the publisher's buffer no longer reaches back to the hole", async () => {
    const replay = new FakeReplay();
    const { pool, index, counters, push } = setup({ replay, replayEndpointFor: () => 'tcp://r:1' });
    push(A, 0);
    push(A, 5);
    const c = replay.calls[0]!;
    expect(c.from).toBe(1);
    await c.onMessage(3, payload(A, 3), null);
    await c.onMessage(4, payload(A, 4), null);
    // A hole after the first replayed message is an error: the replay is refused.
    expect(() => c.onMessage(9, payload(A, 9), null)).toThrow(/skipped/);
    c.resolve({ ok: false, delivered: 2, reason: 'refused', detail: '' });
    await pool.idle();
    expect(counters.missedSequences).toBe(4 + 2);
    // Cleared at the first replayed message, then 3, 4 applied; the failure rebuilds once more from 5.
    expectIndex(index, holding({ [A]: [5] }));
  });

  it('abandons a replay when the server restarts meanwhile, then replays the new stream', async () => {
    const replay = new FakeReplay();
    const { pool, index, counters, push } = setup({ replay, replayEndpointFor: () => 'tcp://r:1' });
    push(A, 0);
    push(A, 1);
    push(A, 5); // gap: replay from 2
    push(A, 1, payload(A, 21)); // the engine restarted (1 < 5) and its batch 0 was missed
    expect(() => replay.calls[0]!.onMessage(2, payload(A, 2), null)).toThrow(/no longer wanted/);
    replay.calls[0]!.resolve({ ok: false, delivered: 0, reason: 'refused', detail: '' });
    await Promise.resolve();
    expect(replay.calls.map((c) => c.from)).toEqual([2, 0]);
    const c = replay.calls[1]!;
    await c.onMessage(0, payload(A, 20), null);
    await c.onMessage(1, payload(A, 21), null);
    c.resolve({ ok: true, delivered: 2 });
    await pool.idle();
    expectIndex(index, holding({ [A]: [20, 21] }));
    expect(counters).toMatchObject({ resets: 1, replaysFailed: 0, replaysCompleted: 1 });
  });
});

describe('KvEventPool: connections of dialled servers', () => {
  it('a first connection during or after the replay on connect changes nothing', async () => {
    const replay = new FakeReplay();
    const { pool, counters } = setup({ replay });
    pool.ensureServer(A, 'tcp://a:1', MODEL, true);
    pool.connected(A, true);
    expect(replay.calls).toHaveLength(1);
    replay.calls[0]!.resolve({ ok: true, delivered: 0 });
    await pool.idle();
    pool.connected(A, true);
    expect(replay.calls).toHaveLength(1);
    expect(counters.resets).toBe(0);
  });

  it('a first connection after the replay on connect found no server asks for it again', async () => {
    const replay = new FakeReplay();
    const { pool, counters } = setup({ replay, now: () => 0 });
    pool.ensureServer(A, 'tcp://a:1', MODEL, true);
    replay.calls[0]!.resolve({ ok: false, delivered: 0, reason: 'no-progress', detail: '' });
    await pool.idle();
    // Still cooling down from that failure, but the server is there now.
    pool.connected(A, true);
    expect(replay.calls.map((c) => c.from)).toEqual([0, 0]);
    expect(counters.resets).toBe(0);
  });

  it('a connection made again clears the server and replays it from 0, whatever its numbering', async () => {
    const replay = new FakeReplay();
    const { pool, index, counters, push } = setup({ replay, replayEndpointFor: () => 'tcp://a:1' });
    for (const n of [0, 1, 2]) push(A, n);
    push(B, 0);
    await pool.idle();
    pool.connected(A, false);
    expect(replay.calls.map((c) => c.from)).toEqual([0]);
    const c = replay.calls[0]!;
    // The new process numbered past the old one before the socket came back.
    for (const n of [0, 1, 2, 3, 4]) await c.onMessage(n, payload(A, 10 + n), null);
    c.resolve({ ok: true, delivered: 5 });
    push(A, 5, payload(A, 15));
    await pool.idle();
    expectIndex(index, holding({ [A]: [10, 11, 12, 13, 14, 15], [B]: [0] }));
    expect(counters.resets).toBe(1);
  });

  it('a connection made again during a replay abandons it and replays from 0 once it ends', async () => {
    const replay = new FakeReplay();
    const { pool, index, push } = setup({ replay, replayEndpointFor: () => 'tcp://a:1' });
    push(A, 0);
    push(A, 3); // gap: replay from 1
    pool.connected(A, false);
    expect(() => replay.calls[0]!.onMessage(1, payload(A, 1), null)).toThrow(/no longer wanted/);
    replay.calls[0]!.resolve({ ok: false, delivered: 0, reason: 'refused', detail: '' });
    await Promise.resolve();
    expect(replay.calls.map((c) => c.from)).toEqual([1, 0]);
    const c = replay.calls[1]!;
    await c.onMessage(0, payload(A, 30), null);
    c.resolve({ ok: true, delivered: 1 });
    await pool.idle();
    expectIndex(index, holding({ [A]: [30] }));
  });

  it('without a replay endpoint, a connection made again clears the server; live events rebuild it', async () => {
    const { pool, index, push } = setup();
    push(A, 0);
    push(A, 1);
    pool.connected(A, false);
    push(A, 7, payload(A, 40));
    await pool.idle();
    expectIndex(index, holding({ [A]: [40] }));
  });
});

describe('KvEventPool: servers and topics', () => {
  it('removing a server clears its entries and forgets it; a later message starts it afresh', async () => {
    const { pool, index, push } = setup();
    push(A, 0);
    push(B, 0);
    await pool.removeServer(A);
    expect(pool.serverState(A)).toBeNull();
    expectIndex(index, holding({ [B]: [0] }));
    push(A, 7);
    expectIndex(index, holding({ [A]: [7], [B]: [0] }));
  });

  it('rejects servers beyond maxServers', () => {
    const { pool, counters, push } = setup({ maxServers: 1 });
    push(A, 0);
    push(B, 0);
    expect(pool.servers).toBe(1);
    expect(counters).toMatchObject({ serversRejected: 1, messagesDropped: 1 });
  });

  it('takes a topic not shaped kv@<pod>@<model> as the pod id, under the default model', () => {
    const { pool, index, counters } = setup({ defaultModel: MODEL });
    pool.push(Buffer.from('bare-topic'), seqFrame(0), payload(A, 0), null);
    expect(counters.topicsUnparsed).toBe(1);
    expectIndex(
      index,
      new ExpectedIndex().hold(tp.keys(tokensOf(A, 0), MODEL), entry('bare-topic', 'gpu', GROUP)),
    );
  });

  it('a forced source id wins over the topic', () => {
    const { pool, index } = setup();
    pool.push(topic(A), seqFrame(0), payload(A, 0), 'forced:1');
    expectIndex(
      index,
      new ExpectedIndex().hold(tp.keys(tokensOf(A, 0), MODEL), entry('forced:1', 'gpu', GROUP)),
    );
  });
});
