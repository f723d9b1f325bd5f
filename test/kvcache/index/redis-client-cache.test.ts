/**
 * The Redis index's client-side cache on a real redis-server: a prefix scored again is walked in
 * process and scores exactly as the server-side walk; another client's change, a FLUSHALL and a lost
 * tracking connection each take effect (never a stale score after the invalidation); this process's
 * own writes are visible to its next score at once, even with cache reads in flight; and a Redis
 * that refuses tracking leaves the index working without the cache.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { DEFAULT_TIER_WEIGHTS, scoreLookup, type PodEntry } from '../../../src/kvcache/index/index.js';
import { RedisIndex } from '../../../src/kvcache/index/redis.js';
import { encodePodField } from '../../../src/kvcache/index/redis-layout.js';
import { keyToDecimal, type KeyList } from '../../../src/kvcache/keys.js';
import { killAllRedis, startRedisServer, type RedisServer } from '../../helpers/redis.js';
import { waitFor } from '../../helpers/wait.js';
import { cpu, gpu, keyRange, sorted } from './contract.js';

let server: RedisServer;
let admin: Redis;
const open: RedisIndex[] = [];

beforeAll(async () => {
  server = await startRedisServer();
  admin = new Redis(server.url, { maxRetriesPerRequest: 0 });
});

afterEach(async () => {
  for (const idx of open.splice(0)) await idx.close();
  await admin.flushall();
});

afterAll(async () => {
  admin?.disconnect();
  await killAllRedis();
});

async function cachedIndex(address = server.url): Promise<RedisIndex> {
  const idx = await RedisIndex.connect(address, { maxReconnectDelayMs: 50 });
  open.push(idx);
  await waitFor(() => idx.clientCacheReady, 5000, 'the tracking connection');
  return idx;
}

function name(keys: KeyList, i: number): string {
  return keyToDecimal(keys[2 * i]!, keys[2 * i + 1]!);
}

async function evalshaCalls(): Promise<number> {
  const info = await admin.info('commandstats');
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

/** Scores until the whole prefix is in the cache (the first score of a prefix fills it behind it). */
async function warmed(idx: RedisIndex, keys: KeyList): Promise<void> {
  await idx.score(keys, DEFAULT_TIER_WEIGHTS);
  await waitFor(
    async () => {
      const before = await evalshaCalls();
      await idx.score(keys, DEFAULT_TIER_WEIGHTS);
      return (await evalshaCalls()) === before;
    },
    5000,
    'the prefix to be cached',
  );
}

describe('RedisIndex client-side cache', () => {
  it('answers a prefix scored again in process, equal to the server-side walk', async () => {
    const idx = await cachedIndex();
    const k = keyRange(1, 32);
    await idx.add(null, k, [gpu('a'), cpu('b')]);
    await idx.add(null, k.subarray(0, 40), [gpu('c')]);
    const first = sorted(await idx.score(k, DEFAULT_TIER_WEIGHTS));
    await warmed(idx, k);
    const calls = await evalshaCalls();
    const hits = idx.clientCacheStats()!.hits;
    const again = sorted(await idx.score(k, DEFAULT_TIER_WEIGHTS));
    expect(again).toEqual(first);
    expect(again).toEqual(sorted(scoreLookup(await idx.lookup(k), DEFAULT_TIER_WEIGHTS)));
    let cpu32 = 0.8;
    for (let i = 1; i < 32; i++) cpu32 += 0.8;
    expect(again).toEqual([
      ['a', { score: 32, blocks: 32 }],
      ['b', { score: cpu32, blocks: 32 }],
      ['c', { score: 20, blocks: 20 }],
    ]);
    expect(await evalshaCalls()).toBe(calls);
    expect(idx.clientCacheStats()!.hits).toBeGreaterThanOrEqual(hits + 21);
    // A pod filter and other weights are applied to the cached fields too.
    const filtered = sorted(await idx.score(k, { gpu: 2 }, new Set(['b', 'c'])));
    expect(filtered).toEqual(sorted(scoreLookup(await idx.lookup(k, new Set(['b', 'c'])), { gpu: 2 })));
    expect(await evalshaCalls()).toBe(calls);
  });

  it('scores exactly as the uncached index over random layouts, writes and re-scores', async () => {
    const idx = await cachedIndex();
    const plain = await RedisIndex.connect(server.url, { clientCacheKeys: 0 });
    open.push(plain);
    const rng = new Rng(11);
    const pods = ['p0', 'p1', 'p2', 'p3', 'p4'];
    const k = keyRange(100, 24);
    for (let round = 0; round < 60; round++) {
      const pod = pods[rng.int(0, pods.length - 1)]!;
      const from = rng.int(0, 23);
      const to = rng.int(from + 1, 24);
      const entry: PodEntry = rng.int(0, 3) === 0 ? cpu(pod) : gpu(pod);
      const part = k.subarray(2 * from, 2 * to);
      if (rng.int(0, 2) === 0) await idx.evict(1, part, [entry]);
      else await idx.add(null, part, [entry]);
      for (let j = 0; j < 3; j++) {
        const weights = j === 1 ? { gpu: 1, cpu: 3 } : DEFAULT_TIER_WEIGHTS;
        expect(sorted(await idx.score(k, weights))).toEqual(sorted(await plain.score(k, weights)));
      }
    }
    expect(idx.clientCacheStats()!.hits).toBeGreaterThan(0);
  });

  it('shows this process’s own writes to its next score at once, cache reads in flight or not', async () => {
    const idx = await cachedIndex();
    const k = keyRange(500, 16);
    await idx.add(null, k, [gpu('a')]);
    for (let i = 0; i < 30; i++) {
      // The first score of the round misses and starts filling the cache behind it; the write
      // that follows at once must win over what that read returns.
      await idx.score(k, DEFAULT_TIER_WEIGHTS);
      const pod = `w${i}`;
      await idx.add(null, k, [gpu(pod)]);
      expect((await idx.score(k, DEFAULT_TIER_WEIGHTS)).get(pod)).toEqual({ score: 16, blocks: 16 });
      await idx.evict(1, k.subarray(8), [gpu(pod)]);
      expect((await idx.score(k, DEFAULT_TIER_WEIGHTS)).get(pod)).toEqual({ score: 4, blocks: 4 });
    }
  });

  it('drops a key another client changes, and everything on FLUSHALL', async () => {
    const idx = await cachedIndex();
    const k = keyRange(900, 8);
    await idx.add(null, k, [gpu('a'), gpu('b')]);
    await warmed(idx, k);
    // Another EPP replica (or a Go one) evicts b's block 3.
    await admin.hdel(name(k, 3), encodePodField(gpu('b')));
    await waitFor(
      async () => (await idx.score(k, DEFAULT_TIER_WEIGHTS)).get('b')?.blocks === 3,
      2000,
      'the invalidation of block 3',
    );
    expect(idx.clientCacheStats()!.invalidations).toBeGreaterThan(0);
    expect((await idx.score(k, DEFAULT_TIER_WEIGHTS)).get('a')).toEqual({ score: 8, blocks: 8 });
    await warmed(idx, k);
    await admin.flushall();
    await waitFor(
      async () => (await idx.score(k, DEFAULT_TIER_WEIGHTS)).size === 0,
      2000,
      'the FLUSHALL invalidation',
    );
  });

  it('flushes when the tracking connection is lost and comes back with fresh reads', async () => {
    const idx = await cachedIndex();
    const k = keyRange(1300, 8);
    await idx.add(null, k, [gpu('a')]);
    await warmed(idx, k);
    const flushes = idx.clientCacheStats()!.flushes;
    const clients = (await admin.client('LIST')) as string;
    const tracking = clients.split('\n').filter((l) => / flags=\S*t/.test(l));
    expect(tracking).toHaveLength(1);
    const id = /id=(\d+)/.exec(tracking[0]!)![1]!;
    // Changed while the connection is down: nothing may be left to answer from what was read before.
    await admin
      .multi()
      .client('KILL', 'ID', id)
      .hdel(name(k, 2), encodePodField(gpu('a')))
      .exec();
    await waitFor(() => idx.clientCacheStats()!.flushes > flushes, 2000, 'the cache to flush');
    expect((await idx.score(k, DEFAULT_TIER_WEIGHTS)).get('a')).toEqual({ score: 2, blocks: 2 });
    await waitFor(() => idx.clientCacheReady, 5000, 'the tracking connection to come back');
    await warmed(idx, k);
    expect((await idx.score(k, DEFAULT_TIER_WEIGHTS)).get('a')).toEqual({ score: 2, blocks: 2 });
  });

  it('works on the address’s database, authenticated, and not at all where tracking is refused', async () => {
    await admin.call('ACL', 'SETUSER', 'cachy', 'on', '>pw', '~*', '&*', '+@all');
    await admin.call('ACL', 'SETUSER', 'plain', 'on', '>pw', '~*', '&*', '+@all', '-client|tracking');
    try {
      const idx = await cachedIndex(`redis://cachy:pw@127.0.0.1:${server.port}/3`);
      const k = keyRange(1700, 4);
      await idx.add(null, k, [gpu('a')]);
      await warmed(idx, k);
      expect(idx.clientCacheStats()!.size).toBeGreaterThanOrEqual(4);
      await admin.select(3);
      await admin.hdel(name(k, 1), encodePodField(gpu('a')));
      await admin.select(0);
      await waitFor(
        async () => (await idx.score(k, DEFAULT_TIER_WEIGHTS)).get('a')?.blocks === 1,
        2000,
        'the invalidation on database 3',
      );

      const refused = await RedisIndex.connect(`redis://plain:pw@127.0.0.1:${server.port}`);
      open.push(refused);
      await refused.add(null, k, [gpu('b')]);
      for (let i = 0; i < 3; i++) {
        expect((await refused.score(k, DEFAULT_TIER_WEIGHTS)).get('b')).toEqual({ score: 4, blocks: 4 });
      }
      expect(refused.clientCacheReady).toBe(false);
      expect(refused.clientCacheStats()!.size).toBe(0);
    } finally {
      await admin.call('ACL', 'DELUSER', 'cachy', 'plain');
    }
  });

  it('opens no tracking connection with clientCacheKeys 0', async () => {
    const before = ((await admin.client('LIST')) as string).trim().split('\n').length;
    const idx = await RedisIndex.connect(server.url, { clientCacheKeys: 0 });
    open.push(idx);
    const after = ((await admin.client('LIST')) as string).trim().split('\n').length;
    expect(after - before).toBe(1);
    expect(idx.clientCacheStats()).toBeNull();
    expect(idx.clientCacheReady).toBe(false);
  });
});
