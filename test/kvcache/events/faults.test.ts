/**
 * Faults over real ZMQ, from the Python publisher: an engine that restarts (its sequence back to 0),
 * batches lost on the way (a sequence gap) with and without vLLM's replay ROUTER. The faulty server's
 * entries are cleared and rebuilt, or replayed to completeness; another server's are never touched.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { KvEventIngest, type KvEventIngestOptions } from '../../../src/kvcache/events/ingest.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { TokenProcessor } from '../../../src/kvcache/keys.js';
import { waitFor } from '../../helpers/wait.js';
import { entry, expectIndex, ExpectedIndex, indexState } from './index-state.js';
import { Prompt, PyPublisher, pythonWithZmq } from './py-publisher.js';

const MODEL = 'm';
const A = '10.0.0.1:8000';
const B = '10.0.0.2:8000';
const BS = 16;
const ANY = 'tcp://127.0.0.1:*';

const ingests: KvEventIngest[] = [];
afterEach(async () => {
  await Promise.all(ingests.splice(0).map((i) => i.close()));
});
afterAll(() => PyPublisher.closeAll());

function setup(opts: Partial<KvEventIngestOptions> = {}): {
  ingest: KvEventIngest;
  index: MemoryIndex;
  tp: TokenProcessor;
} {
  const index = new MemoryIndex();
  const tp = new TokenProcessor({ blockSizeTokens: BS });
  const ingest = new KvEventIngest({
    index,
    tokenProcessor: tp,
    defaultModel: MODEL,
    replay: { idleMs: 1_000, backoffMs: 10 },
    ...opts,
  });
  ingests.push(ingest);
  return { ingest, index, tp };
}

const topic = (pod: string): string => `kv@${pod}@${MODEL}`;

/** Waits until `n` batches went through the pool and nothing is left to do. */
async function applied(ingest: KvEventIngest, n: number): Promise<void> {
  await waitFor(() => ingest.stats().batches >= n, 10_000, `${n} batches`);
  await ingest.idle();
}

/**
 * A Python publisher bound with a replay endpoint, dialled by an ingest (its replay on connect done),
 * that has published three prompts of `blocks` blocks; a fourth prompt is returned for what follows.
 */
async function dialledWithThreeStored(seed: number, blocks: number) {
  const { ingest, index, tp } = setup();
  await ingest.start();
  const py = PyPublisher.start();
  const a = await py.open('a', 'bind', ANY, ANY);
  await ingest.ensure(A, a.endpoint, a.replay);
  await waitFor(() => ingest.stats().replaysCompleted === 1, 10_000, 'the replay on connect');
  await py.waitSubscribed('a');
  const rng = new Rng(seed);
  const [a1, a2, a3, a4] = [0, 1, 2, 3].map(() => new Prompt(rng, blocks, BS));
  await py.publish(
    'a',
    topic(A),
    [a1!, a2!, a3!].map((p) => ({ events: [p.stored(0, blocks)] })),
  );
  await applied(ingest, 3);
  return { ingest, index, tp, py, a, a4: a4! };
}

/** Waits until the index holds exactly `want` (replays may still be bringing it), else fails on it. */
async function settlesTo(ingest: KvEventIngest, index: MemoryIndex, want: ExpectedIndex): Promise<void> {
  await waitFor(
    async () => {
      await ingest.idle();
      return JSON.stringify(indexState(index)) === JSON.stringify(want.toRecord());
    },
    10_000,
    'the index to hold exactly what the server holds',
  ).catch(() => expectIndex(index, want));
}

describe.skipIf(!pythonWithZmq())('KV-event faults over ZMQ', () => {
  it('a server that restarts (sequence back to 0) is cleared and rebuilt; another server is untouched', async () => {
    const { ingest, index, tp } = setup({ bindEndpoint: ANY, replay: false });
    await ingest.start();
    const py = PyPublisher.start();
    await py.open('a', 'connect', ingest.boundEndpoint!);
    await py.open('b', 'connect', ingest.boundEndpoint!);
    await Promise.all([py.waitSubscribed('a'), py.waitSubscribed('b')]);
    const rng = new Rng(11);
    const [a1, a2, a3, b1] = [0, 1, 2, 3].map(() => new Prompt(rng, 4, BS));
    await py.publish('a', topic(A), [{ events: [a1!.stored(0, 4)] }, { events: [a2!.stored(0, 4)] }]);
    await py.publish('b', topic(B), [{ events: [b1!.stored(0, 4)] }]);
    await applied(ingest, 3);
    const bHolds = (e: ExpectedIndex): ExpectedIndex => e.hold(tp.keys(b1!.tokens, MODEL), entry(B));
    expectIndex(
      index,
      bHolds(
        new ExpectedIndex()
          .hold(tp.keys(a1!.tokens, MODEL), entry(A))
          .hold(tp.keys(a2!.tokens, MODEL), entry(A)),
      ),
    );

    await py.restart('a');
    await py.waitSubscribed('a');
    expect(await py.publish('a', topic(A), [{ events: [a3!.stored(0, 4)] }])).toEqual([0]);
    await applied(ingest, 4);
    expectIndex(index, bHolds(new ExpectedIndex().hold(tp.keys(a3!.tokens, MODEL), entry(A))));
    expect(ingest.stats()).toMatchObject({ resets: 1, gaps: 0, duplicates: 0 });
  });

  it('a sequence gap without a replay endpoint clears that server, and later events rebuild it', async () => {
    const { ingest, index, tp } = setup();
    await ingest.start();
    const py = PyPublisher.start();
    const a = await py.open('a', 'bind', ANY);
    const b = await py.open('b', 'bind', ANY);
    await ingest.setEndpoints([
      { id: A, endpoint: a.endpoint },
      { id: B, endpoint: b.endpoint },
    ]);
    await Promise.all([py.waitSubscribed('a'), py.waitSubscribed('b')]);
    const rng = new Rng(12);
    const [a1, a2, a3, b1] = [0, 1, 2, 3].map(() => new Prompt(rng, 6, BS));
    await py.publish('b', topic(B), [{ events: [b1!.stored(0, 6)] }]);
    await py.publish(
      'a',
      topic(A),
      [
        { events: [a1!.stored(0, 4)] },
        { events: [a2!.stored(0, 6)] }, // lost
        { events: [a3!.stored(0, 6)] },
        { events: [a1!.stored(4, 6)] }, // chains to a1's block 3, stored before the gap
      ],
      [1],
    );
    await applied(ingest, 4);
    // Everything A announced before the gap is gone (a removal may have been lost with it); what came
    // after is there, a1's tail included: its parent still resolves.
    expectIndex(
      index,
      new ExpectedIndex()
        .hold(tp.keys(b1!.tokens, MODEL), entry(B))
        .hold(tp.keys(a3!.tokens, MODEL), entry(A))
        .hold(tp.keys(a1!.tokens, MODEL), entry(A), 4, 6),
    );
    expect(ingest.stats()).toMatchObject({ gaps: 1, missedSequences: 1, resets: 1, replaysStarted: 0 });
    expect(ingest.stats().storesSkipped.parent_unknown).toBe(0);
  });

  it('a sequence gap with a replay endpoint is replayed: the index is complete', async () => {
    const { ingest, index, tp } = setup();
    await ingest.start();
    const py = PyPublisher.start();
    const a = await py.open('a', 'bind', ANY, ANY);
    const b = await py.open('b', 'bind', ANY);
    expect(a.replay).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    await ingest.ensure(A, a.endpoint, a.replay);
    await ingest.ensure(B, b.endpoint);
    // The replay on connect (from 0) finds an empty buffer.
    await waitFor(() => ingest.stats().replaysCompleted === 1, 10_000, 'the replay on connect');
    await Promise.all([py.waitSubscribed('a'), py.waitSubscribed('b')]);
    const rng = new Rng(13);
    const [a1, a2, a3, b1] = [0, 1, 2, 3].map(() => new Prompt(rng, 6, BS));
    await py.publish('b', topic(B), [{ events: [b1!.stored(0, 6)] }]);
    await py.publish(
      'a',
      topic(A),
      [
        { events: [a1!.stored(0, 4)] },
        { events: [a2!.stored(0, 6)] }, // lost
        { events: [a1!.stored(4, 6), a2!.removed(4, 6)] }, // lost
        { events: [a3!.stored(0, 6)], hash: 'bytes' },
      ],
      [1, 2],
    );
    await waitFor(() => ingest.stats().replaysCompleted === 2, 10_000, 'the gap replay');
    await applied(ingest, 5);
    expectIndex(
      index,
      new ExpectedIndex()
        .hold(tp.keys(b1!.tokens, MODEL), entry(B))
        .hold(tp.keys(a1!.tokens, MODEL), entry(A))
        .hold(tp.keys(a2!.tokens, MODEL), entry(A), 0, 4)
        .hold(tp.keys(a3!.tokens, MODEL), entry(A)),
    );
    expect(await py.replayRequests('a')).toEqual([0, 1]);
    expect(ingest.stats()).toMatchObject({
      gaps: 1,
      missedSequences: 2,
      resets: 0,
      replayedMessages: 3,
      // The live copy of the batch that showed the gap, applied by the replay.
      duplicates: 1,
      replaysFailed: 0,
    });
  });

  it('a restart with a replay endpoint clears the server, then replays the new process from 0', async () => {
    const { ingest, index, tp, py, a, a4 } = await dialledWithThreeStored(14, 3);

    const again = await py.restart('a');
    expect(again).toEqual(a);
    await py.waitSubscribed('a');
    // The new process's first batch does not arrive live: its second one (seq 1 < 2) shows the restart.
    await py.publish('a', topic(A), [{ events: [a4.stored(0, 2)] }, { events: [a4.stored(2, 3)] }], [0]);
    // The reconnect and the numbering going back both start the server over (in either order).
    await waitFor(() => ingest.stats().replaysCompleted >= 2, 10_000, 'the replay after the restart');
    await settlesTo(ingest, index, new ExpectedIndex().hold(tp.keys(a4.tokens, MODEL), entry(A)));
    expect(ingest.stats().resets).toBeGreaterThanOrEqual(1);
    expect(ingest.stats().replaysFailed).toBe(0);
  });

  it('a restart whose new numbering passed the old one before the socket reconnected is still caught', async () => {
    const { ingest, index, tp, py, a4 } = await dialledWithThreeStored(15, 5);

    await py.restart('a');
    await py.waitSubscribed('a');
    // Only the new process's fifth batch (seq 4, past the old process's last, 2) arrives live.
    const batches = [0, 1, 2, 3, 4].map((i) => ({ events: [a4.stored(i, i + 1)] }));
    await py.publish('a', topic(A), batches, [0, 1, 2, 3]);
    await settlesTo(ingest, index, new ExpectedIndex().hold(tp.keys(a4.tokens, MODEL), entry(A)));
    expect(ingest.stats().replaysFailed).toBe(0);
  });
});
