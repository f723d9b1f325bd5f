/**
 * The P/D side channel between a real prefiller server and a real decoder client on loopback, over a
 * stand-in engine that holds blocks: handshakes, verified reads, notifications and every failure.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/log.js';
import { KvTransferClient, TransferError } from '../../../src/engine/kv-transfer/client.js';
import { blockSeeds } from '../../../src/engine/kv-transfer/payload.js';
import { FrameReader, FrameType, controlFrame } from '../../../src/engine/kv-transfer/protocol.js';
import { KvTransferServer, type HeldBlocksSource } from '../../../src/engine/kv-transfer/server.js';
import { waitFor } from '../../helpers/wait.js';

const MODEL = 'm';
const BS = 4;
const BYTES = 256;
const PROMPT = Array.from({ length: 10 }, (_, i) => 100 + i);

class Held implements HeldBlocksSource {
  readonly held = new Map<string, { blockIds: number[]; promptTokenIds: number[] }>();
  released: string[] = [];
  heldBlocks(id: string) {
    return this.held.get(id);
  }
  releaseHeld(id: string): boolean {
    this.released.push(id);
    return this.held.delete(id);
  }
}

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function prefiller(
  opts: { corrupt?: boolean; engineId?: string; hash?: string; blockBytes?: number } = {},
) {
  const engine = new Held();
  engine.held.set('req-1', { blockIds: [7, 8, 9], promptTokenIds: PROMPT });
  const server = new KvTransferServer({
    host: '127.0.0.1',
    port: 0,
    engineId: opts.engineId ?? 'engine-p',
    compatibilityHash: opts.hash ?? 'h',
    model: MODEL,
    blockSize: BS,
    blockBytes: opts.blockBytes ?? BYTES,
    tpSize: 1,
    engine,
    logger: silentLogger(),
    corruptPayloads: opts.corrupt,
  });
  const port = await server.listen();
  closers.push(() => server.close());
  return { engine, port };
}

/** A raw TCP peer for misbehaving prefillers; its connections are destroyed when the test ends. */
async function rawPeer(onSocket: (s: import('node:net').Socket) => void): Promise<number> {
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return (server.address() as { port: number }).port;
}

function decoder(timeout = 2000) {
  const c = new KvTransferClient({
    compatibilityHash: 'h',
    blockSize: BS,
    blockBytes: BYTES,
    handshakeTimeoutMs: timeout,
  });
  closers.push(() => c.close());
  return c;
}

const seeds = blockSeeds(MODEL, PROMPT, BS);

function pull(
  c: KvTransferClient,
  port: number,
  extra: Partial<Parameters<KvTransferClient['pull']>[0]> = {},
) {
  return c.pull({
    host: '127.0.0.1',
    port,
    engineId: 'engine-p',
    requestId: 'req-1',
    blockIds: [8, 9],
    seeds: seeds.slice(1),
    timeoutMs: 2000,
    ...extra,
  });
}

async function failure(p: Promise<unknown>): Promise<TransferError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(TransferError);
    return e as TransferError;
  }
  throw new Error('expected the pull to fail');
}

describe('the KV side channel', () => {
  it('pulls and verifies the blocks a prefiller holds, and frees them on notify', async () => {
    const { engine, port } = await prefiller();
    const c = decoder();
    const r = await pull(c, port);
    expect(r).toMatchObject({ blocks: 2, bytes: 2 * BYTES });
    c.notify('127.0.0.1', port, 'engine-p', 'req-1');
    await waitFor(() => engine.released.includes('req-1'), 2000, 'the release');
  });

  it('multiplexes concurrent reads on one connection', async () => {
    const { engine, port } = await prefiller();
    engine.held.set('req-2', { blockIds: [1, 2, 3], promptTokenIds: PROMPT });
    const c = decoder();
    const [a, b] = await Promise.all([
      pull(c, port),
      pull(c, port, { requestId: 'req-2', blockIds: [1, 2, 3], seeds }),
    ]);
    expect(a.blocks + b.blocks).toBe(5);
  });

  it('waits out backpressure on long reads without piling up socket listeners', async () => {
    const big = 256 * 1024;
    const prompt = Array.from({ length: 40 * BS }, (_, i) => i);
    const { engine, port } = await prefiller({ blockBytes: big });
    const ids = Array.from({ length: 40 }, (_, i) => i + 1);
    engine.held.set('long', { blockIds: ids, promptTokenIds: prompt });
    const c = new KvTransferClient({
      compatibilityHash: 'h',
      blockSize: BS,
      blockBytes: big,
      handshakeTimeoutMs: 2000,
    });
    closers.push(() => c.close());
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    closers.push(() => void process.off('warning', onWarning));
    const r = await pull(c, port, { requestId: 'long', blockIds: ids, seeds: blockSeeds(MODEL, prompt, BS) });
    expect(r.blocks).toBe(40);
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
  });

  it('fails the handshake with another engine id, an incompatible engine or other block geometry', async () => {
    const wrongId = await prefiller({ engineId: 'someone-else' });
    expect((await failure(pull(decoder(), wrongId.port))).kind).toBe('handshake');
    const wrongHash = await prefiller({ hash: 'different' });
    expect((await failure(pull(decoder(), wrongHash.port))).message).toMatch(/compatibility/);
    const wrongSize = await prefiller({ blockBytes: 128 });
    expect((await failure(pull(decoder(), wrongSize.port))).message).toMatch(/geometry/);
  });

  it('reports blocks no longer held and blocks that were never held', async () => {
    const { port } = await prefiller();
    const c = decoder();
    expect((await failure(pull(c, port, { requestId: 'gone' }))).message).toMatch(/unknown_request/);
    expect((await failure(pull(c, port, { blockIds: [8, 99] }))).message).toMatch(/bad_block/);
    // The connection survives per-transfer errors.
    expect((await pull(c, port)).blocks).toBe(2);
  });

  it('detects corrupt payloads', async () => {
    const { port } = await prefiller({ corrupt: true });
    expect((await failure(pull(decoder(), port))).kind).toBe('corrupt');
  });

  it('detects payloads that belong to other tokens', async () => {
    const { port } = await prefiller();
    const wrong = blockSeeds(
      MODEL,
      PROMPT.map((t) => t + 1),
      BS,
    );
    expect((await failure(pull(decoder(), port, { seeds: wrong.slice(1) }))).kind).toBe('corrupt');
  });

  it('reports a refused connection, and a prefiller that never answers', async () => {
    const probe = await prefiller();
    await closers.pop()!();
    expect((await failure(pull(decoder(), probe.port))).kind).toBe('connect');

    // A listener that accepts and then says nothing.
    const port = await rawPeer(() => undefined);
    const t0 = performance.now();
    expect((await failure(pull(decoder(200), port))).kind).toBe('handshake');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('times out a read that stalls after the handshake', async () => {
    // Answers the handshake, then ignores reads.
    const port = await rawPeer((s) => {
      const r = new FrameReader((f) => {
        if (f.type === FrameType.Hello)
          s.write(controlFrame(FrameType.Meta, { block_size: BS, block_bytes: BYTES }));
      });
      s.on('data', (d: Buffer) => r.push(d));
    });
    const c = decoder();
    const t0 = performance.now();
    expect((await failure(pull(c, port, { timeoutMs: 150 }))).kind).toBe('timeout');
    expect(performance.now() - t0).toBeLessThan(1500);
  });

  it('ends a read when the request is cancelled, and when the prefiller goes away mid-read', async () => {
    const { port } = await prefiller();
    const c = decoder();
    const abort = new AbortController();
    abort.abort();
    expect((await failure(pull(c, port, { signal: abort.signal }))).kind).toBe('aborted');

    const dying: Server = createServer((s) => {
      const r = new FrameReader((f) => {
        if (f.type === FrameType.Hello)
          s.write(controlFrame(FrameType.Meta, { block_size: BS, block_bytes: BYTES }));
        if (f.type === FrameType.Read) s.destroy();
      });
      s.on('data', (d: Buffer) => r.push(d));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => dying.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => dying.close(() => r())));
    const dport = (dying.address() as { port: number }).port;
    expect((await failure(pull(decoder(), dport))).kind).toBe('connection');
  });
});
