/**
 * The shared contract of the KV-block index (`src/kvcache/index/index.ts`, llm-d's `kvblock.Index`):
 * every backend runs this same suite (memory.test.ts, redis.test.ts), so they cannot drift apart.
 * It checks each rule of the interface, and `score` against the reference scorer
 * `scoreLookup(lookup(…))` on fixed cases and over seeded random operations.
 *
 * Cases keep at most 10 entries per key (the memory index's default `podCacheSize`) so that no LRU
 * bound is exercised here; backend-specific bounds are tested beside each backend.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import {
  DEFAULT_TIER_WEIGHTS,
  KeyType,
  scoreLookup,
  type KvBlockIndex,
  type PodEntry,
  type PrefixScore,
  type TierWeights,
} from '../../../src/kvcache/index/index.js';
import { bigIntToKey, keyToBigInt, type KeyList } from '../../../src/kvcache/keys.js';

export const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false, groupIdx: null });
export const cpu = (pod: string): PodEntry => ({ pod, tier: 'cpu', speculative: false, groupIdx: null });
export const spec = (pod: string): PodEntry => ({ pod, tier: '', speculative: true, groupIdx: null });
export const group = (pod: string, g: number): PodEntry => ({
  pod,
  tier: 'gpu',
  speculative: false,
  groupIdx: g,
});

/** A KeyList of the given 64-bit values. */
export function keyList(...values: bigint[]): KeyList {
  const out = new Uint32Array(2 * values.length);
  values.forEach((v, i) => {
    const [hi, lo] = bigIntToKey(v);
    out[2 * i] = hi;
    out[2 * i + 1] = lo;
  });
  return out;
}

/** `n` distinct keys from `base`: large ones (upper half set), as real hashes are. */
export function keyRange(base: number, n: number): KeyList {
  return keyList(...Array.from({ length: n }, (_, i) => 0x9e3779b97f4a7c15n * BigInt(base + i + 1)));
}

/** Key i of a list as a [hi, lo] pair, and the one-key list of it. */
export function pair(keys: KeyList, i: number): readonly [number, number] {
  return [keys[2 * i]!, keys[2 * i + 1]!];
}

export function one(keys: KeyList, i: number): KeyList {
  return keys.slice(2 * i, 2 * i + 2);
}

function entryId(e: PodEntry): string {
  return `${e.pod}|${e.tier}|${e.speculative}|${e.groupIdx}`;
}

/** A lookup result with each key's entries in a canonical order (backends may order them freely). */
export function canon(perKey: readonly (readonly PodEntry[])[]): string[][] {
  return perKey.map((es) => es.map(entryId).sort());
}

/** A score map as sorted entries, to compare exactly without depending on insertion order. */
export function sorted(m: ReadonlyMap<string, PrefixScore>): [string, PrefixScore][] {
  return [...m]
    .map(([k, v]): [string, PrefixScore] => [k, { score: v.score, blocks: v.blocks }])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export function describeIndexContract(
  name: string,
  make: () => Promise<KvBlockIndex>,
  cleanup: () => Promise<void> | void = () => {},
): void {
  describe(`${name}: the KvBlockIndex contract`, () => {
    const opened: KvBlockIndex[] = [];
    const fresh = async (): Promise<KvBlockIndex> => {
      const idx = await make();
      opened.push(idx);
      return idx;
    };
    afterAll(async () => {
      for (const idx of opened) await idx.close();
      await cleanup();
    });

    /** score() must equal the reference scorer over lookup(), and is returned for further checks. */
    async function checkedScore(
      idx: KvBlockIndex,
      keys: KeyList,
      weights: TierWeights = DEFAULT_TIER_WEIGHTS,
      pods?: ReadonlySet<string>,
    ): Promise<[string, PrefixScore][]> {
      const got = sorted(await idx.score(keys, weights, pods));
      expect(got).toEqual(sorted(scoreLookup(await idx.lookup(keys, pods), weights)));
      return got;
    }

    it('maps engine keys 1:1 to request keys and stores the entries on every request key', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 3);
      const r = keyRange(2000, 3);
      await idx.add(e, r, [gpu('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')], [gpu('a')], [gpu('a')]]));
      for (let i = 0; i < 3; i++) expect(await idx.getRequestKey(...pair(e, i))).toEqual(pair(r, i));
    });

    it('maps many engine keys to one request key by the ratio of the counts', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 4);
      const r = keyRange(2000, 2);
      await idx.add(e, r, [gpu('a')]);
      // n = 4: E0, E1 → R0; E2, E3 → R1.
      expect(await idx.getRequestKey(...pair(e, 0))).toEqual(pair(r, 0));
      expect(await idx.getRequestKey(...pair(e, 1))).toEqual(pair(r, 0));
      expect(await idx.getRequestKey(...pair(e, 2))).toEqual(pair(r, 1));
      expect(await idx.getRequestKey(...pair(e, 3))).toEqual(pair(r, 1));
      const e1 = keyRange(3000, 4);
      const r1 = keyRange(4000, 1);
      await idx.add(e1, r1, [gpu('a')]);
      for (let i = 0; i < 4; i++) expect(await idx.getRequestKey(...pair(e1, i))).toEqual(pair(r1, 0));
    });

    it('maps one engine key to many request keys, and getRequestKey returns the last', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 2);
      const r = keyRange(2000, 4);
      await idx.add(e, r, [gpu('a')]);
      // E0 → [R0, R1], E1 → [R2, R3].
      expect(await idx.getRequestKey(...pair(e, 0))).toEqual(pair(r, 1));
      expect(await idx.getRequestKey(...pair(e, 1))).toEqual(pair(r, 3));
      const e1 = keyRange(3000, 1);
      const r1 = keyRange(4000, 3);
      await idx.add(e1, r1, [gpu('b')]);
      expect(await idx.getRequestKey(...pair(e1, 0))).toEqual(pair(r1, 2));
    });

    it('knows no engine key it was not given: unknown keys and adds without engine keys', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 2);
      await idx.add(null, r, [spec('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[spec('a')], [spec('a')]]));
      expect(await idx.getRequestKey(...pair(keyRange(1000, 1), 0))).toBeNull();
      expect(await idx.getRequestKey(...pair(r, 0))).toBeNull();
    });

    it('evicts by engine key from every mapped request key, and prunes the mapping once all are empty', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 2);
      const r = keyRange(2000, 4);
      await idx.add(e, r, [gpu('a')]);
      await idx.evict(KeyType.Engine, one(e, 0), [gpu('a')]);
      expect(await idx.lookup(r)).toEqual([]);
      expect(canon(await idx.lookup(r.subarray(4)))).toEqual(canon([[gpu('a')], [gpu('a')]]));
      expect(await idx.getRequestKey(...pair(e, 0))).toBeNull();
      expect(await idx.getRequestKey(...pair(e, 1))).toEqual(pair(r, 3));
    });

    it('keeps an engine mapping while one of its request keys still holds entries', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 1);
      const r = keyRange(2000, 2);
      await idx.add(e, r, [gpu('a')]);
      // The CPU copy of R1 (a tier update: request keys only) outlives the GPU copy.
      await idx.add(null, one(r, 1), [cpu('a')]);
      await idx.evict(KeyType.Engine, e, [gpu('a')]);
      expect(await idx.lookup(one(r, 0))).toEqual([]);
      expect(canon(await idx.lookup(one(r, 1)))).toEqual(canon([[cpu('a')]]));
      expect(await idx.getRequestKey(...pair(e, 0))).toEqual(pair(r, 1));
      await idx.evict(KeyType.Engine, e, [cpu('a')]);
      expect(await idx.lookup(one(r, 1))).toEqual([]);
      expect(await idx.getRequestKey(...pair(e, 0))).toBeNull();
    });

    it('evicts several engine keys in one call, each on its own', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 3);
      const r = keyRange(2000, 3);
      await idx.add(e, r, [gpu('a'), gpu('b')]);
      await idx.evict(KeyType.Engine, e.subarray(0, 4), [gpu('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('b')], [gpu('b')], [gpu('a'), gpu('b')]]));
      expect(await idx.getRequestKey(...pair(e, 0))).toEqual(pair(r, 0));
    });

    it('treats evicting an unknown engine key, or an entry nobody holds, as a no-op', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 2);
      const r = keyRange(2000, 2);
      await idx.add(e, r, [gpu('a')]);
      await idx.evict(KeyType.Engine, keyRange(5000, 3), [gpu('a')]);
      await idx.evict(KeyType.Engine, e, [gpu('zz')]);
      await idx.evict(KeyType.Request, keyRange(6000, 2), [gpu('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')], [gpu('a')]]));
      expect(await idx.getRequestKey(...pair(e, 1))).toEqual(pair(r, 1));
    });

    it('evicts by request key (speculative entries) without touching other entries', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 3);
      await idx.add(null, r, [spec('a')]);
      await idx.add(keyRange(1000, 1), one(r, 0), [gpu('a')]);
      await idx.evict(KeyType.Request, r, [spec('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')]]));
      expect(await idx.getRequestKey(...pair(keyRange(1000, 1), 0))).toEqual(pair(r, 0));
    });

    it('keeps entries distinct per tier, speculative flag and group', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 1);
      const all = [gpu('a'), cpu('a'), spec('a'), group('a', 0), group('a', 1)];
      await idx.add(null, r, all);
      await idx.add(null, r, [gpu('a')]); // adding the same entry again changes nothing
      expect(canon(await idx.lookup(r))).toEqual(canon([all]));
      await idx.evict(KeyType.Request, r, [gpu('a'), group('a', 1)]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[cpu('a'), spec('a'), group('a', 0)]]));
    });

    it('stops a lookup before the first key that no entry holds', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 4);
      await idx.add(null, r.subarray(0, 4), [gpu('a')]);
      await idx.add(null, one(r, 3), [gpu('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')], [gpu('a')]]));
      expect(await idx.lookup(r.subarray(4))).toEqual([]);
      expect(await idx.lookup(new Uint32Array(0))).toEqual([]);
    });

    it('filters by pod, stopping where none of the given pods holds a key', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 3);
      await idx.add(null, r, [gpu('b')]);
      await idx.add(null, r.subarray(0, 4), [gpu('a'), cpu('a')]);
      expect(canon(await idx.lookup(r, new Set(['a'])))).toEqual(
        canon([
          [gpu('a'), cpu('a')],
          [gpu('a'), cpu('a')],
        ]),
      );
      expect(canon(await idx.lookup(r, new Set(['b', 'x'])))).toEqual(
        canon([[gpu('b')], [gpu('b')], [gpu('b')]]),
      );
      expect(await idx.lookup(r, new Set(['x']))).toEqual([]);
      expect(await idx.lookup(r, new Set())).toEqual([]);
      expect(await checkedScore(idx, r, DEFAULT_TIER_WEIGHTS, new Set(['a']))).toEqual([
        ['a', { score: 2, blocks: 2 }],
      ]);
      expect(await checkedScore(idx, r, DEFAULT_TIER_WEIGHTS, new Set())).toEqual([]);
    });

    it('scores the tier-weighted longest prefix per pod, its best tier per block', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 4);
      await idx.add(null, r, [gpu('a'), cpu('b')]);
      await idx.add(null, r.subarray(0, 4), [gpu('c')]);
      await idx.add(null, one(r, 2), [cpu('c')]);
      await idx.add(null, one(r, 0), [cpu('d'), gpu('d')]);
      await idx.add(null, r.subarray(0, 4), [spec('e')]);
      await idx.add(null, r, [{ pod: 'f', tier: 'nvme', speculative: false, groupIdx: null }]);
      const got = await checkedScore(idx, r);
      expect(got).toEqual([
        ['a', { score: 4, blocks: 4 }],
        ['b', { score: 0.8 + 0.8 + 0.8 + 0.8, blocks: 4 }],
        ['c', { score: 1 + 1 + 0.8, blocks: 3 }],
        ['d', { score: 1, blocks: 1 }],
        ['e', { score: 2, blocks: 2 }],
        ['f', { score: 4, blocks: 4 }],
      ]);
      // Other weights: unlisted tiers (and "") weigh 1, listed ones what they say.
      expect(await checkedScore(idx, r, { cpu: 0.25, nvme: 0.5, gpu: 2 })).toEqual([
        ['a', { score: 8, blocks: 4 }],
        ['b', { score: 1, blocks: 4 }],
        ['c', { score: 2 + 2 + 0.25, blocks: 3 }],
        ['d', { score: 2, blocks: 1 }],
        ['e', { score: 2, blocks: 2 }],
        ['f', { score: 2, blocks: 4 }],
      ]);
      expect(await checkedScore(idx, r, {})).toContainEqual(['b', { score: 4, blocks: 4 }]);
    });

    it('drops a pod at its first missing block, and scores nobody when block 0 is missing', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 3);
      await idx.add(null, r, [gpu('b')]);
      await idx.add(null, one(r, 0), [gpu('a')]);
      await idx.add(null, one(r, 2), [gpu('a')]);
      await idx.add(null, r.subarray(2), [gpu('c')]);
      expect(await checkedScore(idx, r)).toEqual([
        ['a', { score: 1, blocks: 1 }],
        ['b', { score: 3, blocks: 3 }],
      ]);
      expect(await checkedScore(idx, r.subarray(2))).toEqual([
        ['b', { score: 2, blocks: 2 }],
        ['c', { score: 2, blocks: 2 }],
      ]);
      expect(await checkedScore(idx, keyRange(7000, 3))).toEqual([]);
      expect((await idx.score(new Uint32Array(0), DEFAULT_TIER_WEIGHTS)).size).toBe(0);
    });

    it('clears every entry of one pod, every tier, and nothing of the others', async () => {
      const idx = await fresh();
      const e = keyRange(1000, 3);
      const r = keyRange(2000, 3);
      await idx.add(e, r, [gpu('a'), gpu('b')]);
      await idx.add(null, r, [cpu('a'), spec('a'), group('a', 2)]);
      await idx.clear('a');
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('b')], [gpu('b')], [gpu('b')]]));
      expect(await checkedScore(idx, r)).toEqual([['b', { score: 3, blocks: 3 }]]);
      await idx.clear('nobody');
      await idx.clear('b');
      expect(await idx.lookup(r)).toEqual([]);
      // Adding after a clear works as on a fresh index.
      await idx.add(e, r, [gpu('a')]);
      expect(await checkedScore(idx, r)).toEqual([['a', { score: 3, blocks: 3 }]]);
    });

    it('ignores adds and evictions with no keys or no entries', async () => {
      const idx = await fresh();
      const r = keyRange(2000, 2);
      await idx.add(null, r, []);
      await idx.add(keyRange(1000, 2), new Uint32Array(0), [gpu('a')]);
      expect(await idx.lookup(r)).toEqual([]);
      await idx.add(null, r, [gpu('a')]);
      await idx.evict(KeyType.Request, r, []);
      await idx.evict(KeyType.Engine, new Uint32Array(0), [gpu('a')]);
      expect(canon(await idx.lookup(r))).toEqual(canon([[gpu('a')], [gpu('a')]]));
    });

    it('scores exactly as scoreLookup(lookup) over seeded random operations', async () => {
      const idx = await fresh();
      const rng = new Rng(20260601);
      const pods = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
      const tiers = ['gpu', 'cpu', '', 'nvme'];
      const weightSets: TierWeights[] = [
        DEFAULT_TIER_WEIGHTS,
        { gpu: 1, cpu: 0.3, nvme: 0.7 },
        { cpu: 2 },
        {},
      ];
      // Prompts share prefixes, as real traffic does: each is a prefix of a longer chain or a branch.
      const prompts: KeyList[] = [];
      for (let p = 0; p < 12; p++) {
        const n = rng.int(4, 24);
        const k = new Uint32Array(2 * n);
        let shared = 0;
        if (p >= 4) {
          const base = prompts[rng.int(0, 3)]!;
          shared = Math.min(rng.int(0, 8), base.length >> 1, n);
          k.set(base.subarray(0, 2 * shared));
        }
        k.set(keyRange(10_000 * (p + 1), n - shared), 2 * shared);
        prompts.push(k);
      }
      const entryOf = (): PodEntry => {
        const pod = pods[rng.int(0, pods.length - 1)]!;
        const tier = tiers[rng.int(0, tiers.length - 1)]!;
        return { pod, tier, speculative: tier === '', groupIdx: rng.next() < 0.2 ? rng.int(0, 2) : null };
      };
      const engines: KeyList[] = [];
      let engineBase = 500_000;
      for (let op = 0; op < 300; op++) {
        const prompt = prompts[rng.int(0, prompts.length - 1)]!;
        const nKeys = prompt.length >> 1;
        const from = rng.next() < 0.7 ? 0 : rng.int(0, nKeys - 1);
        const to = rng.int(from + 1, nKeys);
        const part = prompt.subarray(2 * from, 2 * to);
        const roll = rng.next();
        if (roll < 0.55) {
          const count = rng.int(1, 2);
          const entries = Array.from({ length: count }, entryOf);
          if (rng.next() < 0.3) await idx.add(null, part, entries);
          else {
            // 1:1, many:1 or 1:many engine blocks.
            const ratio = [1, 2, 0.5][rng.int(0, 2)]!;
            const ne = Math.max(1, Math.floor((to - from) * ratio));
            const e = keyRange(engineBase, ne);
            engineBase += ne;
            engines.push(e);
            await idx.add(e, part, entries);
          }
        } else if (roll < 0.75 && engines.length > 0) {
          const e = engines[rng.int(0, engines.length - 1)]!;
          const k = rng.int(0, (e.length >> 1) - 1);
          await idx.evict(KeyType.Engine, e.subarray(2 * k, 2 * rng.int(k + 1, e.length >> 1)), [entryOf()]);
        } else if (roll < 0.9) {
          await idx.evict(KeyType.Request, part, [entryOf(), entryOf()]);
        } else if (roll < 0.93) {
          await idx.clear(pods[rng.int(0, pods.length - 1)]!);
        }
        if (op % 3 === 0) {
          const q = prompts[rng.int(0, prompts.length - 1)]!;
          const w = weightSets[rng.int(0, weightSets.length - 1)]!;
          const filter = rng.next() < 0.3 ? new Set(pods.filter(() => rng.next() < 0.5)) : undefined;
          await checkedScore(idx, q, w, filter);
        }
      }
      // The walk met real prefixes: some pod scored more than one block somewhere.
      let longest = 0;
      for (const q of prompts) {
        for (const s of (await idx.score(q, DEFAULT_TIER_WEIGHTS)).values())
          longest = Math.max(longest, s.blocks);
      }
      expect(longest).toBeGreaterThan(1);
    });

    it('round-trips keys across the whole 64-bit range', async () => {
      const idx = await fresh();
      const values = [1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 10n ** 19n, 2n ** 64n - 1n];
      const e = keyList(...values.map((v) => v ^ 0x5555n));
      const r = keyList(...values);
      await idx.add(e, r, [gpu('a')]);
      expect(await checkedScore(idx, r)).toEqual([['a', { score: values.length, blocks: values.length }]]);
      for (let i = 0; i < values.length; i++) {
        const got = await idx.getRequestKey(...pair(e, i));
        expect(got === null ? null : keyToBigInt(got[0], got[1])).toBe(values[i]);
      }
    });
  });
}
