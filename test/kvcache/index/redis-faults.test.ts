/**
 * The Redis index when Redis goes away: calls fail fast with KvIndexUnavailableError (never queue,
 * never wait for a reconnect), `available` and `onAvailability` follow the connection, the client
 * reconnects by itself when Redis is back on the same port, and an index whose Redis never answered
 * neither throws on construction nor keeps the process alive after close().
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { KvIndexUnavailableError, RedisIndex } from '../../../src/kvcache/index/redis.js';
import type { PodEntry } from '../../../src/kvcache/index/index.js';
import { freePort, killAllRedis, startRedisServer } from '../../helpers/redis.js';
import { waitFor } from '../../helpers/wait.js';
import { gpu, keyRange } from './contract.js';

/** Well under a second, and far below the command timeout the index uses here. */
const FAST_MS = 250;

const opened: RedisIndex[] = [];

function track(idx: RedisIndex): RedisIndex {
  opened.push(idx);
  return idx;
}

afterEach(async () => {
  for (const idx of opened.splice(0)) await idx.close();
});
afterAll(killAllRedis);

/** Every operation of the index, each as a promise. */
function everyOperation(idx: RedisIndex): Promise<unknown>[] {
  const k = keyRange(100, 4);
  const e: readonly PodEntry[] = [gpu('a')];
  return [
    idx.lookup(k),
    idx.score(k, { gpu: 1 }),
    idx.add(k, k, e),
    idx.evict(0 /* KeyType.Engine */, k, e),
    idx.evict(1 /* KeyType.Request */, k, e),
    idx.getRequestKey(k[0]!, k[1]!),
    idx.clear('a'),
    idx.countKeysByPod(),
  ];
}

/** Every promise rejects with KvIndexUnavailableError; returns how long the slowest took. */
async function allUnavailable(ops: Promise<unknown>[]): Promise<number> {
  const t0 = performance.now();
  const settled = await Promise.allSettled(ops);
  const ms = performance.now() - t0;
  for (const s of settled) {
    expect(s.status).toBe('rejected');
    expect((s as PromiseRejectedResult).reason).toBeInstanceOf(KvIndexUnavailableError);
  }
  return ms;
}

describe('RedisIndex when Redis goes away', () => {
  it('fails fast while Redis is stopped, reports it, and reconnects on its own when it is back', async () => {
    const server = await startRedisServer();
    const idx = track(
      await RedisIndex.connect(server.url, { commandTimeoutMs: 5000, maxReconnectDelayMs: 50 }),
    );
    const changes: boolean[] = [];
    idx.onAvailability((up) => changes.push(up));
    const k = keyRange(1, 8);
    await idx.add(k, k, [gpu('a')]);
    expect(await idx.score(k, { gpu: 1 })).toEqual(new Map([['a', { score: 8, blocks: 8 }]]));

    await server.stop();
    await waitFor(() => !idx.available, 2000, 'the index to notice Redis is gone');
    expect(changes).toEqual([false]);
    expect(await allUnavailable(everyOperation(idx))).toBeLessThan(FAST_MS);
    const err = await idx.lookup(k).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LLMD_ERR_UNAVAILABLE', status: 503 });

    // Same port, empty keyspace and script cache: the index comes back by itself, empty.
    await server.restart();
    await waitFor(() => idx.available, 5000, 'the index to reconnect');
    expect(changes).toEqual([false, true]);
    expect((await idx.score(k, { gpu: 1 })).size).toBe(0);
    expect(await idx.lookup(k)).toEqual([]);
    expect(await idx.getRequestKey(k[0]!, k[1]!)).toBeNull();
    await idx.add(k, k, [gpu('b')]);
    expect(await idx.score(k, { gpu: 1 })).toEqual(new Map([['b', { score: 8, blocks: 8 }]]));
    await idx.evict(0, k.subarray(0, 2), [gpu('b')]);
    expect(await idx.lookup(k)).toEqual([]);
    expect(await idx.countKeysByPod()).toEqual(new Map([['b', 7]]));
    await server.kill();
  });

  it('fails the calls in flight at once when Redis crashes under them', async () => {
    const server = await startRedisServer();
    const idx = track(
      await RedisIndex.connect(server.url, { commandTimeoutMs: 5000, maxReconnectDelayMs: 50 }),
    );
    // Frozen, the server reads nothing: every call below is sent and waits for a reply.
    server.pause();
    const failed = allUnavailable(everyOperation(idx));
    // Let them reach the socket before the crash.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const t0 = performance.now();
    await server.crash();
    await failed;
    expect(performance.now() - t0).toBeLessThan(FAST_MS);
    await waitFor(() => !idx.available, 2000, 'the index to notice the crash');
    await server.restart();
    await waitFor(() => idx.available, 5000, 'the index to reconnect');
    const k = keyRange(1, 2);
    await idx.add(null, k, [gpu('a')]);
    expect(await idx.lookup(k)).toHaveLength(2);
    await server.kill();
  });

  it('bounds calls by the command timeout when Redis hangs, then fails fast until it answers again', async () => {
    const server = await startRedisServer();
    const idx = track(
      await RedisIndex.connect(server.url, { commandTimeoutMs: 150, maxReconnectDelayMs: 50 }),
    );
    const changes: boolean[] = [];
    idx.onAvailability((up) => changes.push(up));
    server.pause();
    const t0 = performance.now();
    const ms = await allUnavailable(everyOperation(idx));
    // The calls in flight wait the timeout (clear and countKeysByPod fail on their first command).
    expect(ms).toBeGreaterThanOrEqual(100);
    expect(performance.now() - t0).toBeLessThan(900);
    // Then the index knows Redis hangs: unavailable, and calls fail at once instead of waiting.
    expect(idx.available).toBe(false);
    expect(changes).toEqual([false]);
    expect(await allUnavailable(everyOperation(idx))).toBeLessThan(FAST_MS);
    await expect(idx.lookup(keyRange(1, 1))).rejects.toThrow(/not answering/);
    server.resume();
    await waitFor(() => idx.available, 5000, 'the index to see Redis answer again');
    expect(changes).toEqual([false, true]);
    const k = keyRange(1, 3);
    await idx.add(null, k, [gpu('a')]);
    expect(await idx.score(k, { gpu: 1 })).toEqual(new Map([['a', { score: 3, blocks: 3 }]]));
    await server.kill();
  });

  it('hands a hung Redis that then drops the connection over to reconnection', async () => {
    const server = await startRedisServer();
    const idx = track(
      await RedisIndex.connect(server.url, { commandTimeoutMs: 100, maxReconnectDelayMs: 50 }),
    );
    server.pause();
    await allUnavailable([idx.lookup(keyRange(1, 1))]);
    expect(idx.available).toBe(false);
    await server.crash();
    await server.restart();
    await waitFor(() => idx.available, 5000, 'the index to reconnect');
    const k = keyRange(1, 2);
    await idx.add(null, k, [gpu('a')]);
    expect(await idx.lookup(k)).toHaveLength(2);
    await server.kill();
  });

  it('is constructed against a port with nothing listening, fails fast, and comes up when Redis does', async () => {
    const server = await startRedisServer();
    await server.stop();
    const idx = track(new RedisIndex({ address: server.url, maxReconnectDelayMs: 50 }));
    expect(idx.available).toBe(false);
    expect(await allUnavailable(everyOperation(idx))).toBeLessThan(FAST_MS);
    const up = new Promise<void>((resolve) => idx.onAvailability((a) => a && resolve()));
    await server.restart();
    await up;
    expect(idx.available).toBe(true);
    const k = keyRange(1, 2);
    await idx.add(k, k, [gpu('a')]);
    expect(await idx.getRequestKey(k[2]!, k[3]!)).toEqual([k[2], k[3]]);
    await server.kill();
  });

  it('connect() rejects with KvIndexUnavailableError when Redis does not answer in time', async () => {
    const port = await freePort();
    const t0 = performance.now();
    const err = await RedisIndex.connect(`127.0.0.1:${port}`, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvIndexUnavailableError);
    expect((err as Error).message).toMatch(/not connected after 200 ms/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('rejects every call after close(), and close() is idempotent', async () => {
    const server = await startRedisServer();
    const idx = await RedisIndex.connect(server.url);
    await idx.close();
    await idx.close();
    expect(idx.available).toBe(false);
    expect(await allUnavailable(everyOperation(idx))).toBeLessThan(FAST_MS);
    await server.kill();
  });

  it('does not keep the process alive after close(), even if Redis never answered', async () => {
    const port = await freePort();
    const module = fileURLToPath(new URL('../../../src/kvcache/index/redis.ts', import.meta.url));
    // The child logs once close() has resolved; it must then exit on its own, promptly.
    const code = `
      import { RedisIndex } from ${JSON.stringify(module)};
      const idx = new RedisIndex({ address: 'redis://127.0.0.1:${port}', maxReconnectDelayMs: 20 });
      await idx.lookup(new Uint32Array([1, 2])).catch((e) => console.log(e.constructor.name));
      await new Promise((r) => setTimeout(r, 100));
      await idx.close();
      console.log('closed');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let closedAt = 0;
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (closedAt === 0 && out.includes('closed')) closedAt = performance.now();
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const exitCode = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    const lingered = performance.now() - closedAt;
    expect(err).toBe('');
    expect(exitCode).toBe(0);
    expect(out).toBe('KvIndexUnavailableError\nclosed\n');
    expect(lingered).toBeLessThan(500);
  });
});
