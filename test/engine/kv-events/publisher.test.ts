/**
 * The KV-event publisher against real zeromq peers on loopback: the bind/connect rule, the 3-frame
 * wire with its sequence numbers, the replay ROUTER with DEALER and REQ clients, and what happens when
 * the send queue is full or the address is unusable.
 */
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import type { KvEvent } from '../../../src/engine/core/types.js';
import { END_OF_REPLAY, KvEventPublisher, shouldBind } from '../../../src/engine/kv-events/publisher.js';
import { decodeKvEventBatch } from '../../../src/kvcache/events/decode.js';
import { waitFor } from '../../helpers/wait.js';
import { Collector, kvConfig, replayWithDealer, replayWithReq } from './helpers.js';

const stored = (h: bigint): KvEvent => ({
  type: 'BlockStored',
  blockHashes: [h],
  parentBlockHash: null,
  tokenIds: [1, 2, 3, 4],
  blockSize: 4,
  loraName: null,
  medium: 'GPU',
  extraKeys: null,
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function publisher(
  over: Parameters<typeof kvConfig>[0] = {},
  mapFormat = false,
): Promise<KvEventPublisher> {
  const p = await KvEventPublisher.create({ config: kvConfig(over), mapFormat });
  cleanups.push(() => p.close());
  return p;
}

function collector(endpoint: string, topic = ''): Collector {
  const c = new Collector(endpoint, { topic });
  cleanups.push(() => c.close());
  return c;
}

/** Publishes until the subscriber sees something: a SUB's subscription reaches the PUB asynchronously. */
async function untilSubscribed(p: KvEventPublisher, c: Collector): Promise<void> {
  await waitFor(
    () => {
      if (c.messages.length > 0) return true;
      p.publish([{ type: 'AllBlocksCleared' }]);
      return false;
    },
    10_000,
    'the subscription to reach the publisher',
  );
}

describe("vLLM's bind-or-connect rule", () => {
  it('binds wildcards, IPv6 any, ipc and inproc, and connects to everything else', () => {
    expect(shouldBind('tcp://*:5557')).toBe(true);
    expect(shouldBind('tcp://127.0.0.1:*')).toBe(true);
    expect(shouldBind('tcp://[::]:5557')).toBe(true);
    expect(shouldBind('ipc:///tmp/kv.sock')).toBe(true);
    expect(shouldBind('inproc://kv')).toBe(true);
    expect(shouldBind('tcp://127.0.0.1:5557')).toBe(false);
    expect(shouldBind('tcp://indexer.svc.cluster.local:5557')).toBe(false);
  });

  it('binds a wildcard endpoint and reports the port it got', async () => {
    const p = await publisher();
    expect(p.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(p.endpoint.endsWith(':0')).toBe(false);
  });

  it('connects to an explicit address, where the indexer binds its SUB (llm-d centralized mode)', async () => {
    const c = await Collector.bound();
    cleanups.push(() => c.close());
    const p = await publisher({ endpoint: c.endpoint });
    await untilSubscribed(p, c);
    expect(c.messages[0]!.topic).toBe('kv@test-pod@test-model');
  });

  it('fails with a ConfigError naming the field when the endpoint cannot be bound', async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, '0.0.0.0', r));
    cleanups.push(() => new Promise<void>((r) => busy.close(() => r())));
    const port = (busy.address() as AddressInfo).port;
    const err = await KvEventPublisher.create({ config: kvConfig({ endpoint: `tcp://*:${port}` }) }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).param).toBe('kvEventsConfig.endpoint');
    expect((err as ConfigError).message).toContain('`endpoint`');

    const bad = await KvEventPublisher.create({ config: kvConfig({ endpoint: 'tcp://*:not-a-port' }) }).catch(
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(ConfigError);

    const replay = await KvEventPublisher.create({
      config: kvConfig({ replay_endpoint: `tcp://*:${port}` }),
    }).catch((e: unknown) => e);
    expect(replay).toBeInstanceOf(ConfigError);
    expect((replay as ConfigError).param).toBe('kvEventsConfig.replay_endpoint');
  });
});

describe('the live stream', () => {
  it('sends exactly three frames per batch, with big-endian sequence numbers that count up by one', async () => {
    const p = await publisher({ topic: 'kv@10.0.0.1:8000@Qwen/Qwen3-0.6B' });
    const c = collector(p.endpoint, 'kv@');
    await untilSubscribed(p, c);
    const first = c.messages.length;
    for (let i = 0; i < 20; i++) p.publish([stored(BigInt(i) + (1n << 63n))], 1_700_000_000 + i);
    await waitFor(() => c.messages.length >= first + 20, 10_000, 'twenty batches');

    for (const frames of c.raw) {
      expect(frames).toHaveLength(3);
      expect(frames[0]!.toString()).toBe('kv@10.0.0.1:8000@Qwen/Qwen3-0.6B');
      expect(frames[1]).toHaveLength(8);
    }
    const seqs = c.messages.map((m) => m.seq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1n);
    const tail = c.messages.slice(first);
    expect(tail.map((m) => m.batch.events[0])).toEqual(
      Array.from({ length: 20 }, (_, i) =>
        expect.objectContaining({ blockHashes: [BigInt(i) + (1n << 63n)] }),
      ),
    );
    expect(tail[3]!.batch.ts).toBe(1_700_000_003);
    expect(tail[0]!.batch.dataParallelRank).toBe(0);
    expect(p.stats.published).toBe(p.stats.nextSeq);
  });

  it('numbers batches from 0 and skips empty ones', async () => {
    const p = await publisher({ replay_endpoint: 'tcp://127.0.0.1:*' });
    p.publish([]);
    expect(p.stats.nextSeq).toBe(0);
    p.publish([stored(1n)]);
    p.publish([stored(2n)]);
    const { replies } = await replayWithDealer(p.replayEndpoint!, 0);
    expect(replies.map((r) => r.seq)).toEqual([0n, 1n]);
  });

  it('sends the map layout when asked', async () => {
    const p = await publisher({ replay_endpoint: 'tcp://127.0.0.1:*' }, true);
    p.publish([stored(5n), { type: 'BlockRemoved', blockHashes: [5n], medium: 'GPU' }]);
    const { replies } = await replayWithDealer(p.replayEndpoint!, 0);
    // A fixmap (0x8N) right after the batch array header, float64 ts and events array header.
    expect(replies[0]!.payload[11]! & 0xf0).toBe(0x80);
    expect(decodeKvEventBatch(replies[0]!.payload).events.map((e) => e.type)).toEqual([
      'BlockStored',
      'BlockRemoved',
    ]);
  });
});

describe('replay', () => {
  async function withHistory(n: number, bufferSteps: number): Promise<KvEventPublisher> {
    const p = await publisher({ replay_endpoint: 'tcp://127.0.0.1:*', buffer_steps: bufferSteps });
    for (let i = 0; i < n; i++) p.publish([stored(BigInt(i))]);
    return p;
  }

  it('streams every buffered batch from the requested seq to a DEALER, then the -1 end marker', async () => {
    const p = await withHistory(8, 100);
    const { replies, frames } = await replayWithDealer(p.replayEndpoint!, 5);
    expect(replies.map((r) => r.seq)).toEqual([5n, 6n, 7n]);
    expect(replies.map((r) => decodeKvEventBatch(r.payload).events[0])).toEqual([
      expect.objectContaining({ blockHashes: [5n] }),
      expect.objectContaining({ blockHashes: [6n] }),
      expect.objectContaining({ blockHashes: [7n] }),
    ]);
    // [delimiter, seq, payload] per batch; the end marker is [delimiter, 0xFF×8, empty].
    for (const f of frames) expect(f[0]).toHaveLength(0);
    const end = frames.at(-1)!;
    expect(end).toHaveLength(3);
    expect(end[1]!.equals(END_OF_REPLAY)).toBe(true);
    expect(end[2]).toHaveLength(0);
    expect(p.stats.replayRequests).toBe(1);
  });

  it('keeps only the last buffer_steps batches', async () => {
    const p = await withHistory(8, 3);
    const { replies } = await replayWithDealer(p.replayEndpoint!, 0);
    expect(replies.map((r) => r.seq)).toEqual([5n, 6n, 7n]);
  });

  it('answers a DEALER that sends no delimiter without one', async () => {
    const p = await withHistory(4, 100);
    const { replies, frames } = await replayWithDealer(p.replayEndpoint!, 2, false);
    expect(replies.map((r) => r.seq)).toEqual([2n, 3n]);
    for (const f of frames) expect(f).toHaveLength(2);
  });

  it('sends only the end marker when nothing is at or after the requested seq', async () => {
    const p = await withHistory(3, 100);
    const { replies, frames } = await replayWithDealer(p.replayEndpoint!, 3);
    expect(replies).toEqual([]);
    expect(frames).toHaveLength(1);
  });

  it('answers a REQ client, whose socket strips the delimiter: first the batch at the start seq', async () => {
    const p = await withHistory(6, 100);
    const reply = await replayWithReq(p.replayEndpoint!, 4);
    expect(reply).toHaveLength(2);
    expect(reply[0]!.readBigUInt64BE(0)).toBe(4n);
    expect(decodeKvEventBatch(reply[1]!).events[0]).toEqual(expect.objectContaining({ blockHashes: [4n] }));
  });

  it('gives a REQ client the end marker when it is up to date', async () => {
    const p = await withHistory(6, 100);
    const reply = await replayWithReq(p.replayEndpoint!, 6);
    expect(reply).toHaveLength(2);
    expect(reply[0]!.equals(END_OF_REPLAY)).toBe(true);
    expect(reply[1]).toHaveLength(0);
  });

  it('ignores malformed requests and keeps serving', async () => {
    const p = await withHistory(2, 100);
    const { Dealer } = await import('zeromq');
    const d = new Dealer({ linger: 0 });
    d.connect(p.replayEndpoint!);
    await d.send([Buffer.alloc(0), Buffer.alloc(9), Buffer.from('x')]);
    await d.send([Buffer.alloc(0), Buffer.alloc(12)]);
    // Closed only once served: with linger 0, closing drops messages still in flight.
    cleanups.push(() => d.close());
    await waitFor(() => p.stats.replayRequests === 2, 10_000, 'the malformed requests');
    const { replies } = await replayWithDealer(p.replayEndpoint!, 0);
    expect(replies.map((r) => r.seq)).toEqual([0n, 1n]);
  });
});

describe('back-pressure and shutdown', () => {
  it('drops live sends when the queue is full, without throwing, and keeps them replayable', async () => {
    const p = await publisher({ max_queue_size: 1, replay_endpoint: 'tcp://127.0.0.1:*' });
    // In one synchronous burst the first batch goes straight to the pump, the second waits in the
    // queue, and the rest find it full.
    expect(() => {
      for (let i = 0; i < 10; i++) p.publish([stored(BigInt(i))]);
    }).not.toThrow();
    expect(p.stats.dropped).toBe(8);
    expect(p.stats.nextSeq).toBe(10);
    await waitFor(() => p.stats.queued === 0, 10_000, 'the queue to drain');
    expect(p.stats.published).toBe(2);
    const { replies } = await replayWithDealer(p.replayEndpoint!, 0);
    expect(replies.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
  });

  it('counts a batch it cannot encode instead of throwing into the engine loop', async () => {
    const p = await publisher();
    expect(() => p.publish([stored(1n << 64n)])).not.toThrow();
    expect(p.stats.failed).toBe(1);
    expect(p.stats.nextSeq).toBe(0);
  });

  it('closes once, and ignores batches published after close', async () => {
    const p = await KvEventPublisher.create({ config: kvConfig({ replay_endpoint: 'tcp://127.0.0.1:*' }) });
    p.publish([stored(1n)]);
    await Promise.all([p.close(), p.close()]);
    expect(() => p.publish([stored(2n)])).not.toThrow();
    expect(p.stats.nextSeq).toBe(1);
  });
});
