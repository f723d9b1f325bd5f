/**
 * The KvEventIngest facade: its endpoint set (idempotent, replaced, removed), its counters as plain
 * snapshots, its close. A TS XPUB stands in for the engine (it sees the subscription arrive, so
 * nothing is sent before the subscriber listens).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { XPublisher } from 'zeromq';
import type { KvEvent } from '../../../src/engine/core/types.js';
import { KvEventEncoder } from '../../../src/engine/kv-events/encode.js';
import { KvEventIngest } from '../../../src/kvcache/events/ingest.js';
import { IngestCounters, snapshotCounters } from '../../../src/kvcache/events/stats.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { TokenProcessor } from '../../../src/kvcache/keys.js';
import { waitFor } from '../../helpers/wait.js';
import { entry, expectIndex, ExpectedIndex } from './index-state.js';

const MODEL = 'm';
const POD = 'p:8000';
const tp = new TokenProcessor({ blockSizeTokens: 4 });

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** An engine's PUB, bound on loopback; `ready()` resolves once a subscriber's filter arrived. */
async function engine(): Promise<{
  endpoint: string;
  ready: () => Promise<void>;
  send: (seq: number, tokens: number[]) => Promise<void>;
}> {
  const pub = new XPublisher({ linger: 0 });
  await pub.bind('tcp://127.0.0.1:*');
  closers.push(() => pub.close());
  const enc = new KvEventEncoder({ dataParallelRank: 0 });
  return {
    endpoint: pub.lastEndpoint!,
    ready: async () => {
      for (;;) {
        const [sub] = await pub.receive();
        if (sub![0] === 1) return;
      }
    },
    send: async (seq, tokens) => {
      const e: KvEvent = {
        type: 'BlockStored',
        blockHashes: [BigInt(seq + 1)],
        parentBlockHash: null,
        tokenIds: tokens,
        blockSize: 4,
        loraName: null,
        medium: 'GPU',
        extraKeys: null,
      };
      const s = Buffer.alloc(8);
      s.writeBigUInt64BE(BigInt(seq));
      await pub.send([`kv@ignored@${MODEL}`, s, Buffer.from(enc.encode(1, [e]))]);
    },
  };
}

function ingestWith(opts: Partial<ConstructorParameters<typeof KvEventIngest>[0]> = {}): {
  ingest: KvEventIngest;
  index: MemoryIndex;
} {
  const index = new MemoryIndex();
  const ingest = new KvEventIngest({ index, tokenProcessor: tp, replay: false, ...opts });
  closers.push(() => ingest.close());
  return { ingest, index };
}

describe('KvEventIngest', () => {
  it('ensure is idempotent; a changed endpoint replaces the subscription and starts the server over', async () => {
    const { ingest, index } = ingestWith();
    await ingest.start();
    const one = await engine();
    await ingest.ensure(POD, one.endpoint);
    await ingest.ensure(POD, one.endpoint);
    expect(ingest.stats().activeSubscribers).toBe(1);
    await one.ready();
    await one.send(0, [1, 2, 3, 4]);
    await waitFor(() => ingest.stats().batches === 1, 5_000, 'the first batch');
    await ingest.idle();
    // The topic says another pod: the dialled id wins.
    expectIndex(index, new ExpectedIndex().hold(tp.keys([1, 2, 3, 4], MODEL), entry(POD, 'gpu', 0)));

    const two = await engine();
    await ingest.ensure(POD, two.endpoint);
    expectIndex(index, new ExpectedIndex());
    await two.ready();
    await two.send(0, [5, 6, 7, 8]);
    await waitFor(() => ingest.stats().batches === 2, 5_000, 'the second batch');
    await ingest.idle();
    expectIndex(index, new ExpectedIndex().hold(tp.keys([5, 6, 7, 8], MODEL), entry(POD, 'gpu', 0)));
    expect(ingest.stats()).toMatchObject({ resets: 0, duplicates: 0, servers: 1 });
  });

  it('a bind that fails is counted and retried until it succeeds', async () => {
    const squatter = await engine();
    const { ingest } = ingestWith({ bindEndpoint: squatter.endpoint, retryIntervalMs: 10 });
    await ingest.start();
    expect(ingest.boundEndpoint).toBeNull();
    await waitFor(() => ingest.stats().reconnections >= 2, 5_000, 'retries');
    expect(ingest.stats().zmqErrors).toBeGreaterThanOrEqual(2);
  });

  it('close() is idempotent and leaves the endpoint free', async () => {
    const { ingest } = ingestWith({ bindEndpoint: 'tcp://127.0.0.1:*' });
    await ingest.start();
    const bound = ingest.boundEndpoint!;
    const closing = ingest.close();
    expect(ingest.close()).toBe(closing);
    await closing;
    const again = ingestWith({ bindEndpoint: bound }).ingest;
    await again.start();
    expect(again.boundEndpoint).toBe(bound);
  });
});

describe('ingest counters', () => {
  it('a snapshot is a copy, nested reasons included', () => {
    const c = new IngestCounters();
    c.batches = 3;
    c.storesSkipped.parent_unknown = 1;
    const snap = snapshotCounters(c);
    c.batches++;
    c.storesSkipped.parent_unknown++;
    c.removalsSkipped.unknown_group++;
    expect(snap.batches).toBe(3);
    expect(snap.storesSkipped.parent_unknown).toBe(1);
    expect(snap.removalsSkipped.unknown_group).toBe(0);
  });
});
