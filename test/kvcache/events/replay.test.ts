/**
 * The replay client against a ROUTER on loopback that answers as the test says: vLLM's protocol
 * ([empty, start] in; [empty, seq, payload] per batch, then [empty, 0xff×8, empty]), and the ways a
 * publisher can fail it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import { ReplayClient, type ReplayLimits } from '../../../src/kvcache/events/replay.js';
import { IngestCounters } from '../../../src/kvcache/events/stats.js';
import { waitFor } from '../../helpers/wait.js';

const END = Buffer.alloc(8, 0xff);
const EMPTY = Buffer.alloc(0);

function seq8(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** What the server does with one request: the frames to send back after the identity. */
type Answer = (start: number, attempt: number) => Buffer[][];

interface Server {
  endpoint: string;
  requests: number[];
  close: () => void;
}

const servers: Server[] = [];
const clients: ReplayClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.close();
});

async function server(answer: Answer): Promise<Server> {
  const router = new Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  const requests: number[] = [];
  void (async () => {
    try {
      for await (const [id, , start] of router) {
        const from = Number(start!.readBigUInt64BE(0));
        requests.push(from);
        for (const frames of answer(from, requests.length)) await router.send([id!, ...frames]);
      }
    } catch {
      // closed
    }
  })();
  const s = { endpoint: router.lastEndpoint!, requests, close: () => router.close() };
  servers.push(s);
  return s;
}

/** vLLM's answer from a buffer of batches 0..n-1. */
function buffered(n: number): Answer {
  return (start) => {
    const out: Buffer[][] = [];
    for (let i = start; i < n; i++) out.push([EMPTY, seq8(i), Buffer.from(`batch ${i}`)]);
    out.push([EMPTY, END, EMPTY]);
    return out;
  };
}

function client(limits: Partial<ReplayLimits> = {}, counters: IngestCounters | null = null): ReplayClient {
  const c = new ReplayClient({ idleMs: 200, backoffMs: 5, maxNoProgressAttempts: 2, ...limits }, counters);
  clients.push(c);
  return c;
}

describe('ReplayClient', () => {
  it('streams every buffered batch from the start asked for, in order, until the end marker', async () => {
    const s = await server(buffered(5));
    const got: [number, string, string | null][] = [];
    const r = await client().replay(s.endpoint, 2, (seq, payload, topic) => {
      got.push([seq, Buffer.from(payload).toString(), topic]);
    });
    expect(r).toEqual({ ok: true, delivered: 3 });
    expect(s.requests).toEqual([2]);
    expect(got).toEqual([
      [2, 'batch 2', null],
      [3, 'batch 3', null],
      [4, 'batch 4', null],
    ]);
  });

  it('accepts replies that carry the topic before the sequence', async () => {
    const s = await server(() => [
      [EMPTY, Buffer.from('kv@p@m'), seq8(0), Buffer.from('x')],
      [EMPTY, END, EMPTY],
    ]);
    const topics: (string | null)[] = [];
    const r = await client().replay(s.endpoint, 0, (_seq, _p, topic) => void topics.push(topic));
    expect(r.ok).toBe(true);
    expect(topics).toEqual(['kv@p@m']);
  });

  it('after silence mid-stream, asks again from the batch after the last one delivered', async () => {
    const all = buffered(6);
    // The first answer stops after two batches, without an end marker.
    const s = await server((start, attempt) => (attempt === 1 ? all(start, 0).slice(0, 2) : all(start, 0)));
    const seqs: number[] = [];
    const r = await client().replay(s.endpoint, 0, (seq) => void seqs.push(seq));
    expect(r).toEqual({ ok: true, delivered: 6 });
    expect(s.requests).toEqual([0, 2]);
    expect(seqs).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('fails after attempts in a row with no reply, and counts the error', async () => {
    const s = await server(() => []);
    const counters = new IngestCounters();
    const r = await client({ idleMs: 50 }, counters).replay(s.endpoint, 0, () => undefined);
    expect(r).toMatchObject({ ok: false, reason: 'no-progress', delivered: 0 });
    expect(s.requests).toEqual([0, 0]);
    expect(counters.zmqErrors).toBe(1);
  });

  it('fails when the handler refuses a batch, and stops there', async () => {
    const s = await server(buffered(4));
    const seqs: number[] = [];
    const r = await client().replay(s.endpoint, 0, (seq) => {
      if (seq === 2) throw new Error('hole');
      seqs.push(seq);
    });
    expect(r).toMatchObject({ ok: false, reason: 'refused', delivered: 2, detail: 'hole' });
    expect(seqs).toEqual([0, 1]);
  });

  it('waits for a handler that returns a promise before reading on', async () => {
    const s = await server(buffered(3));
    const order: string[] = [];
    const r = await client().replay(s.endpoint, 0, async (seq) => {
      order.push(`start ${seq}`);
      await new Promise((resolve) => setImmediate(resolve));
      order.push(`end ${seq}`);
    });
    expect(r.ok).toBe(true);
    expect(order).toEqual(['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('fails on a reply that is not a replay frame', async () => {
    const s = await server(() => [[EMPTY, Buffer.from('short'), Buffer.from('x')]]);
    const r = await client().replay(s.endpoint, 0, () => undefined);
    expect(r).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('gives up at the deadline of the whole replay', async () => {
    const s = await server(() => []);
    const r = await client({ idleMs: 5_000, totalMs: 100 }).replay(s.endpoint, 0, () => undefined);
    expect(r).toMatchObject({ ok: false, reason: 'timeout' });
  });

  it('runs at most maxConcurrent replays; one that gets no slot before its deadline fails', async () => {
    const s = await server(buffered(1));
    const c = client({ maxConcurrent: 1, totalMs: 150 });
    let release!: () => void;
    let called!: () => void;
    const inHandler = new Promise<void>((r) => (called = r));
    // The first replay holds the only slot while its handler waits.
    const first = c.replay(s.endpoint, 0, () => {
      called();
      return new Promise<void>((r) => (release = r));
    });
    await inHandler;
    expect(c.active).toBe(1);
    const second = await c.replay(s.endpoint, 0, () => undefined);
    expect(second).toMatchObject({ ok: false, reason: 'capacity' });
    release();
    // Its own deadline passed meanwhile.
    expect(await first).toMatchObject({ ok: false, reason: 'timeout', delivered: 1 });
  });

  it('close() ends a running replay at once', async () => {
    const s = await server(() => []);
    const c = client({ idleMs: 10_000 });
    const running = c.replay(s.endpoint, 0, () => undefined);
    // The request is out: the client now waits on a silent peer.
    await waitFor(() => s.requests.length === 1, 5_000, 'the replay request');
    const t0 = Date.now();
    c.close();
    expect(await running).toMatchObject({ ok: false, reason: 'closed' });
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(await c.replay(s.endpoint, 0, () => undefined)).toMatchObject({ reason: 'closed' });
  });

  it('fails at once on an endpoint it cannot dial', async () => {
    const r = await client().replay('not-a-transport://x', 0, () => undefined);
    expect(r).toMatchObject({ ok: false, reason: 'connect' });
  });
});
