/**
 * The Redis KV-block index on a real redis-server (a free loopback port, started here): the shared
 * contract, every fresh index on an empty database; then what only Redis has: llm-d's key layout
 * byte for byte (so Go replicas can share it), entries other writers left, keys of other types,
 * scripts lost to SCRIPT FLUSH, the address's database and credentials, and countKeysByPod.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import {
  DEFAULT_TIER_WEIGHTS,
  KeyType,
  scoreLookup,
  type PodEntry,
  type TierWeights,
} from '../../../src/kvcache/index/index.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { RedisIndex } from '../../../src/kvcache/index/redis.js';
import { keyToDecimal, type KeyList } from '../../../src/kvcache/keys.js';
import { killAllRedis, startRedisServer, type RedisServer } from '../../helpers/redis.js';
import {
  canon,
  cpu,
  describeIndexContract,
  gpu,
  group,
  keyRange,
  one,
  pair,
  sorted,
  spec,
} from './contract.js';

let server: RedisServer;
let admin: Redis;

beforeAll(async () => {
  server = await startRedisServer();
  admin = new Redis(server.url, { maxRetriesPerRequest: 0 });
});

afterAll(async () => {
  admin?.disconnect();
  await killAllRedis();
});

describeIndexContract('RedisIndex', async () => {
  await admin.flushdb();
  return RedisIndex.connect(server.url);
});

/** The Redis name of key i of a list. */
function name(keys: KeyList, i: number): string {
  return keyToDecimal(keys[2 * i]!, keys[2 * i + 1]!);
}

/** A PodEntry field exactly as Go's encoding/json writes llm-d's struct. */
function goField(pod: string, tier: string, speculative = false, groupIdx: number | null = null): string {
  return (
    `{"PodIdentifier":${JSON.stringify(pod)},"DeviceTier":${JSON.stringify(tier)},` +
    `"Speculative":${speculative},"HasGroup":${groupIdx !== null},"GroupIdx":${groupIdx ?? 0}}`
  );
}

describe('RedisIndex in llm-d’s Redis layout', () => {
  let idx: RedisIndex;
  beforeEach(async () => {
    await admin.flushdb();
    await admin.script('FLUSH');
    idx = await RedisIndex.connect(server.url);
    return () => idx.close();
  });

  /** score() equals the reference scorer over lookup(); returns it sorted. */
  async function checkedScore(
    keys: KeyList,
    weights: TierWeights = DEFAULT_TIER_WEIGHTS,
    pods?: Set<string>,
  ) {
    const got = sorted(await idx.score(keys, weights, pods));
    expect(got).toEqual(sorted(scoreLookup(await idx.lookup(keys, pods), weights)));
    return got;
  }

  it('writes request keys as HASHes of Go-JSON PodEntry fields, engine keys as position-scored ZSETs', async () => {
    const e = keyRange(1000, 2);
    const r = keyRange(2000, 4);
    await idx.add(e, r, [gpu('10.0.0.5:8000'), group('10.0.0.6:8000', 3)]);
    await idx.add(null, one(r, 0), [spec('10.0.0.7:8000')]);
    expect(await admin.type(name(r, 0))).toBe('hash');
    expect(await admin.hgetall(name(r, 0))).toEqual({
      '{"PodIdentifier":"10.0.0.5:8000","DeviceTier":"gpu","Speculative":false,"HasGroup":false,"GroupIdx":0}':
        '',
      '{"PodIdentifier":"10.0.0.6:8000","DeviceTier":"gpu","Speculative":false,"HasGroup":true,"GroupIdx":3}':
        '',
      '{"PodIdentifier":"10.0.0.7:8000","DeviceTier":"","Speculative":true,"HasGroup":false,"GroupIdx":0}':
        '',
    });
    // E0 → [R0, R1], E1 → [R2, R3], scored by position: the highest is what getRequestKey returns.
    expect(await admin.zrange(`engine:${name(e, 0)}`, '0', '-1', 'WITHSCORES')).toEqual([
      name(r, 0),
      '0',
      name(r, 1),
      '1',
    ]);
    expect(await admin.zrange(`engine:${name(e, 1)}`, '0', '-1', 'WITHSCORES')).toEqual([
      name(r, 2),
      '0',
      name(r, 3),
      '1',
    ]);
    expect((await admin.keys('*')).sort()).toEqual(
      [...[0, 1, 2, 3].map((i) => name(r, i)), `engine:${name(e, 0)}`, `engine:${name(e, 1)}`].sort(),
    );
    // Evicting prunes the emptied hashes and, once all its keys are empty, the engine ZSET.
    await idx.evict(KeyType.Engine, one(e, 1), [gpu('10.0.0.5:8000'), group('10.0.0.6:8000', 3)]);
    expect(await admin.exists(name(r, 2), name(r, 3), `engine:${name(e, 1)}`)).toBe(0);
    expect(await admin.exists(`engine:${name(e, 0)}`)).toBe(1);
  });

  it('reads what a Go replica wrote: its fields, retrievalSpan, escapes, and its engine ZSETs', async () => {
    const e = keyRange(1000, 1);
    const r = keyRange(2000, 3);
    for (let i = 0; i < 3; i++) {
      await admin.hset(
        name(r, i),
        goField('10.0.0.1:8000', 'gpu'),
        '',
        // Go adds the span when one was recorded, and escapes HTML characters.
        '{"PodIdentifier":"10.0.0.2:8000","DeviceTier":"cpu","Speculative":false,"HasGroup":false,"GroupIdx":0,"retrievalSpan":4}',
        '',
        '{"PodIdentifier":"pod\\u003ca\\u0026b\\u003e","DeviceTier":"gpu","Speculative":false,"HasGroup":true,"GroupIdx":1}',
        '',
      );
    }
    await admin.zadd(`engine:${name(e, 0)}`, 0, name(r, 0), 1, name(r, 1), 2, name(r, 2));
    const want = [
      gpu('10.0.0.1:8000'),
      cpu('10.0.0.2:8000'),
      { pod: 'pod<a&b>', tier: 'gpu', speculative: false, groupIdx: 1 },
    ];
    expect(canon(await idx.lookup(r))).toEqual(canon([want, want, want]));
    // The escaped field is not in the form the score script parses: the client decoder scores it.
    expect(await checkedScore(r)).toEqual([
      ['10.0.0.1:8000', { score: 3, blocks: 3 }],
      ['10.0.0.2:8000', { score: 0.8 * 3, blocks: 3 }],
      ['pod<a&b>', { score: 3, blocks: 3 }],
    ]);
    expect(await idx.getRequestKey(...pair(e, 0))).toEqual(pair(r, 2));
    expect(await idx.countKeysByPod()).toEqual(
      new Map([
        ['10.0.0.1:8000', 3],
        ['10.0.0.2:8000', 3],
        ['pod<a&b>', 3],
      ]),
    );
    // Entries in Go's exact form, escapes included, are evicted by our encoding of them; the engine
    // ZSET stays while a key still holds a field (here the one with a span, written differently).
    await idx.evict(KeyType.Engine, e, [want[0]!, want[2]!]);
    expect(canon(await idx.lookup(r))).toEqual(canon([[want[1]!], [want[1]!], [want[1]!]]));
    expect(await idx.getRequestKey(...pair(e, 0))).toEqual(pair(r, 2));
  });

  it('skips fields that are not PodEntries (legacy pod@tier, garbage) and stops where none is left', async () => {
    const r = keyRange(2000, 3);
    await idx.add(null, r, [gpu('a')]);
    await admin.hset(name(r, 0), 'a@gpu', '', 'not json', '', '[1,2]', '');
    await admin.hdel(name(r, 1), goField('a', 'gpu'));
    await admin.hset(name(r, 1), 'b@gpu', '');
    expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')]]));
    expect(await checkedScore(r)).toEqual([['a', { score: 1, blocks: 1 }]]);
    expect(await idx.countKeysByPod()).toEqual(new Map([['a', 2]]));
  });

  it('round-trips pod names JSON must escape, through every operation', async () => {
    const pods = ['ä<&>"\\\u2028', 'tab\there', 'emoji 🚀', 'x'];
    const e = keyRange(1000, 2);
    const r = keyRange(2000, 2);
    await idx.add(
      e,
      r,
      pods.map((p) => gpu(p)),
    );
    expect(canon(await idx.lookup(r))).toEqual(canon([pods.map(gpu), pods.map(gpu)]));
    expect(await checkedScore(r, DEFAULT_TIER_WEIGHTS, new Set([pods[0]!, pods[2]!]))).toEqual(
      [pods[0]!, pods[2]!].map((p) => [p, { score: 2, blocks: 2 }]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
    );
    expect(await idx.countKeysByPod()).toEqual(new Map(pods.map((p) => [p, 2])));
    await idx.clear(pods[0]!);
    await idx.evict(KeyType.Engine, one(e, 1), [gpu(pods[1]!)]);
    expect(canon(await idx.lookup(r))).toEqual(
      canon([pods.slice(1).map(gpu), [gpu(pods[2]!), gpu(pods[3]!)]]),
    );
  });

  it('treats a key of another type as holding nothing, in every operation', async () => {
    const r = keyRange(2000, 3);
    await idx.add(null, r, [gpu('a')]);
    await admin.del(name(r, 1));
    await admin.set(name(r, 1), 'another application’s string');
    await admin.sadd('12345', 'a set named like a request key');
    expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')]]));
    expect(await checkedScore(r)).toEqual([['a', { score: 1, blocks: 1 }]]);
    expect(await idx.countKeysByPod()).toEqual(new Map([['a', 2]]));
    await idx.clear('a');
    expect(await idx.lookup(r)).toEqual([]);
    expect(await admin.get(name(r, 1))).toBe('another application’s string');
    // An engine key that is not a ZSET maps to nothing.
    const e = keyRange(1000, 1);
    await admin.set(`engine:${name(e, 0)}`, 'x');
    await idx.evict(KeyType.Engine, e, [gpu('a')]);
    expect(await idx.getRequestKey(...pair(e, 0))).toBeNull();
    // Adding where a name is taken stores what it can and skips that key.
    await idx.add(e, r, [gpu('b')]);
    expect(await admin.get(name(r, 1))).toBe('another application’s string');
    expect(await admin.get(`engine:${name(e, 0)}`)).toBe('x');
    expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('b')]]));
    expect(canon(await idx.lookup(r.subarray(4)))).toEqual(canon([[gpu('b')]]));
  });

  it('loads its scripts again after SCRIPT FLUSH, for every operation that uses one', async () => {
    const e = keyRange(1000, 3);
    const r = keyRange(2000, 3);
    await idx.add(e, r, [gpu('a'), gpu('b')]);
    await admin.script('FLUSH');
    expect(await checkedScore(r)).toEqual([
      ['a', { score: 3, blocks: 3 }],
      ['b', { score: 3, blocks: 3 }],
    ]);
    await admin.script('FLUSH');
    expect(await idx.countKeysByPod()).toEqual(
      new Map([
        ['a', 3],
        ['b', 3],
      ]),
    );
    await admin.script('FLUSH');
    await idx.evict(KeyType.Engine, one(e, 0), [gpu('a'), gpu('b')]);
    expect(await admin.exists(name(r, 0), `engine:${name(e, 0)}`)).toBe(0);
    await admin.script('FLUSH');
    await idx.evict(KeyType.Request, one(r, 1), [gpu('a'), gpu('b')]);
    expect(await admin.exists(name(r, 1))).toBe(0);
    await admin.script('FLUSH');
    await idx.clear('a');
    await idx.clear('b');
    // Clear leaves engine mappings (upstream's rule): stale ones resolve to empty keys.
    expect((await admin.keys('*')).sort()).toEqual([`engine:${name(e, 1)}`, `engine:${name(e, 2)}`].sort());
    expect(await idx.lookup(r)).toEqual([]);
  });

  it('scores with weights Lua cannot carry (NaN, ±Infinity) as the reference does', async () => {
    const r = keyRange(2000, 3);
    await idx.add(null, r, [gpu('a'), cpu('b')]);
    await idx.add(null, one(r, 0), [cpu('a')]);
    const weights: TierWeights[] = [
      { gpu: NaN },
      { cpu: Infinity },
      { gpu: -Infinity, cpu: 1 },
      { gpu: -0 },
      { gpu: 1e-300 },
    ];
    for (const w of weights) await checkedScore(r, w);
  });

  it('answers score and lookup for a long prompt held in runs by many servers', async () => {
    const r = keyRange(2000, 600);
    const pods = Array.from({ length: 40 }, (_, i) => `10.0.0.${i}:8000`);
    for (let p = 0; p < pods.length; p++) {
      await idx.add(null, r.subarray(0, 2 * (15 * (p + 1))), [p % 3 === 0 ? cpu(pods[p]!) : gpu(pods[p]!)]);
    }
    const got = await checkedScore(r);
    expect(got).toHaveLength(40);
    expect(got.find(([p]) => p === pods[38])![1]).toEqual({ score: 585, blocks: 585 });
    expect(got.find(([p]) => p === pods[39])![1]).toMatchObject({ blocks: 600 });
    expect(await checkedScore(r, { gpu: 2, cpu: 0.5 }, new Set([pods[0]!, pods[10]!, 'nobody']))).toEqual([
      [pods[0]!, { score: 7.5, blocks: 15 }],
      [pods[10]!, { score: 330, blocks: 165 }],
    ]);
  });
});

describe('RedisIndex addresses', () => {
  it('uses the database the address names', async () => {
    await admin.flushall();
    const idx = await RedisIndex.connect(`${server.url}/3`);
    const db3 = new Redis(`${server.url}/3`, { maxRetriesPerRequest: 0 });
    try {
      const r = keyRange(2000, 1);
      await idx.add(null, r, [gpu('a')]);
      expect(await admin.exists(name(r, 0))).toBe(0);
      expect(await db3.exists(name(r, 0))).toBe(1);
      expect(idx.address.display).toBe(`${server.url}/3`);
    } finally {
      db3.disconnect();
      await idx.close();
    }
  });

  it('authenticates with the address’s user and password, and never shows the password', async () => {
    await admin.call('ACL', 'SETUSER', 'llmd', 'on', '>s3cret', '~*', '&*', '+@all');
    try {
      const idx = await RedisIndex.connect(`redis://llmd:s3cret@127.0.0.1:${server.port}`);
      expect(idx.available).toBe(true);
      await idx.add(null, keyRange(1, 1), [gpu('a')]);
      await idx.close();
      const wrong = new RedisIndex({ address: `redis://llmd:wrong@127.0.0.1:${server.port}` });
      const err = await wrong.whenAvailable(300).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect(String((err as Error).message)).not.toContain('wrong');
      expect(wrong.address.display).not.toContain('wrong');
      await wrong.close();
    } finally {
      await admin.call('ACL', 'DELUSER', 'llmd');
    }
  });
});

describe('RedisIndex.countKeysByPod', () => {
  beforeEach(async () => {
    await admin.flushdb();
  });

  it('counts confirmed keys per pod, a pod once per key, as the memory index does', async () => {
    const idx = await RedisIndex.connect(server.url);
    const mem = new MemoryIndex({});
    try {
      const both = async (f: (i: RedisIndex | MemoryIndex) => unknown): Promise<void> => {
        await f(idx);
        await f(mem);
      };
      const rng = new Rng(424242);
      const pods = ['p0', 'p1', 'p2', 'p3', 'p4'];
      const entryOf = (): PodEntry => {
        const pod = pods[rng.int(0, pods.length - 1)]!;
        const roll = rng.next();
        return roll < 0.2
          ? spec(pod)
          : roll < 0.4
            ? cpu(pod)
            : roll < 0.5
              ? group(pod, rng.int(0, 2))
              : gpu(pod);
      };
      const engines: KeyList[] = [];
      for (let op = 0; op < 200; op++) {
        const base = rng.int(0, 40) * 10;
        const r = keyRange(10_000 + base, rng.int(1, 30));
        const entries = Array.from({ length: rng.int(1, 3) }, entryOf);
        const roll = rng.next();
        if (roll < 0.6) {
          const e = rng.next() < 0.5 ? null : keyRange(1_000_000 + op * 100, r.length >> 1);
          if (e !== null) engines.push(e);
          await both((i) => i.add(e, r, entries));
        } else if (roll < 0.75 && engines.length > 0) {
          const e = engines[rng.int(0, engines.length - 1)]!;
          await both((i) => i.evict(KeyType.Engine, e, entries));
        } else if (roll < 0.95) {
          await both((i) => i.evict(KeyType.Request, r, entries));
        } else {
          const pod = pods[rng.int(0, pods.length - 1)]!;
          await both((i) => i.clear(pod));
        }
      }
      const got = await idx.countKeysByPod();
      expect([...got].sort()).toEqual([...mem.countKeysByPod()].sort());
      expect(got.size).toBeGreaterThan(2);
    } finally {
      await idx.close();
    }
  });

  it('walks a keyspace of many SCAN steps, ignoring engine keys and other applications’ keys', async () => {
    const idx = await RedisIndex.connect(server.url);
    try {
      const n = 20_000;
      const r = keyRange(1, n);
      const e = keyRange(5_000_000, n);
      for (let i = 0; i < n; i += 2000) {
        const part = r.subarray(2 * i, 2 * (i + 2000));
        const pods = i % 4000 === 0 ? [gpu('a'), cpu('a'), gpu('b')] : [gpu('a'), spec('c')];
        await idx.add(e.subarray(2 * i, 2 * (i + 2000)), part, pods);
      }
      await idx.add(null, keyRange(9_000_000, 10), [spec('d')]);
      await admin.hset('model@123', 'a@gpu', '');
      await admin.hset('99999999999999999999999', goField('a', 'gpu'), ''); // > 2^64: not a key
      await admin.hset('0123', goField('a', 'gpu'), ''); // not canonical decimal
      await admin.set('42', 'a string');
      await admin.hset('43', goField('a', 'gpu'), '');
      expect(await idx.countKeysByPod()).toEqual(
        new Map([
          ['a', n + 1],
          ['b', n / 2],
        ]),
      );
    } finally {
      await idx.close();
    }
  });
});
