/**
 * The write path over real ZMQ, fed by an independent Python publisher (test/fixtures/kv-events/
 * publish.py) in both of llm-d's topologies: our SUB binds and the publisher connects (central), and
 * the publisher binds and our SUB dials it (per endpoint). Batches mix both event encodings and all
 * three hash forms, with a malformed message, a malformed batch and malformed events between valid
 * ones; the index must end exactly as the valid events say.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { requestExtras } from '../../../src/kvcache/events/extra-keys.js';
import { KvEventIngest } from '../../../src/kvcache/events/ingest.js';
import { DEFAULT_TIER_WEIGHTS } from '../../../src/kvcache/index/index.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { TokenProcessor } from '../../../src/kvcache/keys.js';
import { waitFor } from '../../helpers/wait.js';
import { entry, expectIndex, ExpectedIndex } from './index-state.js';
import { Prompt, PyPublisher, pythonWithZmq, type WireBatch } from './py-publisher.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const POD = '10.0.0.1:8000';
const TOPIC = `kv@${POD}@${MODEL}`;
const BS = 16;

const ingests: KvEventIngest[] = [];
afterEach(async () => {
  await Promise.all(ingests.splice(0).map((i) => i.close()));
});
afterAll(() => PyPublisher.closeAll());

function setup(opts: Partial<ConstructorParameters<typeof KvEventIngest>[0]> = {}): {
  ingest: KvEventIngest;
  index: MemoryIndex;
  tp: TokenProcessor;
} {
  const index = new MemoryIndex();
  const tp = new TokenProcessor({ blockSizeTokens: BS });
  const ingest = new KvEventIngest({ index, tokenProcessor: tp, replay: false, ...opts });
  ingests.push(ingest);
  return { ingest, index, tp };
}

/**
 * The vLLM batches: prompts stored over several events (a shared prefix continued by a second
 * prompt), a removal, a CPU tier; a malformed message, a malformed batch, malformed events.
 */
function vllmScenario(seed: number): {
  batches: WireBatch[];
  expect: (tp: TokenProcessor) => ExpectedIndex;
  check: (index: MemoryIndex, tp: TokenProcessor) => void;
} {
  const rng = new Rng(seed);
  const p1 = new Prompt(rng, 8, BS);
  const p2 = new Prompt(rng, 8, BS, p1, 4);
  const p3 = new Prompt(rng, 6, BS);
  const p4 = new Prompt(rng, 2, BS);
  const batches: WireBatch[] = [
    { events: [p1.stored(0, 3), p1.stored(3, 8)], encoding: 'array', hash: 'int' },
    { events: [p2.stored(4, 8)], encoding: 'map', hash: 'bytes' },
    // Not msgpack: the batch is lost, its sequence number is not (no gap follows).
    { payload_hex: 'c1' },
    {
      events: [
        p3.stored(0, 4),
        { raw: ['BlockStored', 'not-a-list'] },
        p3.stored(4, 6),
        { raw: ['Bogus', 1] },
      ],
      encoding: 'map',
      hash: 'int64',
    },
    { events: [p1.removed(6, 8)], encoding: 'array', hash: 'bytes' },
    { events: [p4.stored(0, 2, { medium: 'CPU' })], encoding: 'array', hash: 'int', batch_map: true },
  ];
  const gpu = entry(POD);
  return {
    batches,
    expect: (tp) =>
      new ExpectedIndex()
        .hold(tp.keys(p1.tokens, MODEL), gpu, 0, 6)
        .hold(tp.keys(p2.tokens, MODEL), gpu)
        .hold(tp.keys(p3.tokens, MODEL), gpu)
        .hold(tp.keys(p4.tokens, MODEL), entry(POD, 'cpu')),
    check: (index, tp) => {
      // 6 + 4 new after the shared prefix + 6 + 2.
      expect(index.stats().requestKeys).toBe(18);
      expect(index.score(tp.keys(p1.tokens, MODEL), DEFAULT_TIER_WEIGHTS)).toEqual(
        new Map([[POD, { score: 6, blocks: 6 }]]),
      );
      expect(index.score(tp.keys(p2.tokens, MODEL), DEFAULT_TIER_WEIGHTS).get(POD)?.blocks).toBe(8);
      expect(index.score(tp.keys(p4.tokens, MODEL), DEFAULT_TIER_WEIGHTS).get(POD)?.score).toBeCloseTo(1.6);
      expect(index.lookup(tp.keys(p3.tokens, MODEL))).toEqual(Array.from({ length: 6 }, () => [entry(POD)]));
    },
  };
}

/** A message of two frames: not a KV-event message at all. */
const TWO_FRAMES = [Buffer.from(TOPIC), Buffer.from('x')];

async function publishScenario(py: PyPublisher, pub: string, batches: WireBatch[]): Promise<void> {
  await py.waitSubscribed(pub);
  await py.publish(pub, TOPIC, batches.slice(0, 2));
  await py.raw(pub, TWO_FRAMES);
  await py.publish(pub, TOPIC, batches.slice(2));
}

function expectCounts(ingest: KvEventIngest, batches: number): void {
  const s = ingest.stats();
  expect(s).toMatchObject({
    messagesReceived: batches + 1,
    messagesMalformed: 1,
    batches,
    batchesMalformed: 1,
    eventsMalformed: 2,
    gaps: 0,
    resets: 0,
    duplicates: 0,
    applyErrors: 0,
  });
  expect(s.storesSkipped.parent_unknown).toBe(0);
}

describe.skipIf(!pythonWithZmq())('KV events over ZMQ from a Python publisher', () => {
  it('our SUB binds and the publisher connects (central): the index holds exactly the valid events', async () => {
    const { ingest, index, tp } = setup({ bindEndpoint: 'tcp://127.0.0.1:*' });
    await ingest.start();
    expect(ingest.boundEndpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const py = PyPublisher.start();
    await py.open('central', 'connect', ingest.boundEndpoint!);
    const s = vllmScenario(1);
    await publishScenario(py, 'central', s.batches);
    await waitFor(() => ingest.stats().messagesReceived === s.batches.length + 1, 10_000, 'every message');
    await ingest.idle();
    expectIndex(index, s.expect(tp));
    s.check(index, tp);
    expectCounts(ingest, s.batches.length);
  });

  it('the publisher binds and our SUB dials it (per endpoint): the same state, under the given id', async () => {
    const { ingest, index, tp } = setup();
    await ingest.start();
    const py = PyPublisher.start();
    const { endpoint } = await py.open('dialled', 'bind', 'tcp://127.0.0.1:*');
    await ingest.ensure(POD, endpoint);
    expect(ingest.endpoints()).toEqual([POD]);
    const s = vllmScenario(2);
    await publishScenario(py, 'dialled', s.batches);
    await waitFor(() => ingest.stats().messagesReceived === s.batches.length + 1, 10_000, 'every message');
    await ingest.idle();
    expectIndex(index, s.expect(tp));
    s.check(index, tp);
    expectCounts(ingest, s.batches.length);
    expect(ingest.stats().activeSubscribers).toBe(1);
    // Gone from discovery: unsubscribed and its entries cleared.
    await ingest.setEndpoints([]);
    expect(ingest.endpoints()).toEqual([]);
    expectIndex(index, new ExpectedIndex());
  });

  it('SGLang batches, positional and map, with a cache salt folded into the first block', async () => {
    const { ingest, index, tp } = setup({ dialect: 'sglang' });
    await ingest.start();
    const py = PyPublisher.start();
    const { endpoint } = await py.open('sglang', 'bind', 'tcp://127.0.0.1:*');
    await ingest.ensure(POD, endpoint);
    const rng = new Rng(3);
    const plain = new Prompt(rng, 4, BS);
    const salted = new Prompt(rng, 3, BS);
    const batches: WireBatch[] = [
      { dialect: 'sglang', encoding: 'array', events: [plain.stored(0, 2), plain.stored(2, 4)] },
      {
        dialect: 'sglang',
        encoding: 'map',
        hash: 'bytes',
        events: [salted.stored(0, 3, { cache_salt: 'tenant-a' })],
      },
      { dialect: 'sglang', encoding: 'array', events: [plain.removed(3, 4)] },
    ];
    await py.waitSubscribed('sglang');
    await py.publish('sglang', TOPIC, batches);
    await waitFor(() => ingest.stats().batches === batches.length, 10_000, 'every batch');
    await ingest.idle();
    const saltedKeys = tp.keys(salted.tokens, MODEL, null, requestExtras('tenant-a', 3));
    expectIndex(
      index,
      new ExpectedIndex().hold(tp.keys(plain.tokens, MODEL), entry(POD), 0, 3).hold(saltedKeys, entry(POD)),
    );
    // Unsalted, the same tokens match nothing.
    expect(index.lookup(tp.keys(salted.tokens, MODEL))).toEqual([]);
    expect(ingest.stats()).toMatchObject({ eventsMalformed: 0, batchesMalformed: 0 });
  });
});
