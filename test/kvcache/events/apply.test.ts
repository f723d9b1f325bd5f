import { describe, expect, it } from 'vitest';
import { EventApplier, type ServerIndexState } from '../../../src/kvcache/events/apply.js';
import type {
  PackedBlockRemoved,
  PackedBlockStored,
  PackedKvEvent,
} from '../../../src/kvcache/events/decode.js';
import { IngestCounters } from '../../../src/kvcache/events/stats.js';
import {
  DEFAULT_TIER_WEIGHTS,
  KeyType,
  type KvBlockIndex,
  type PodEntry,
} from '../../../src/kvcache/index/index.js';
import { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { bigIntToKey, keysToBigInts, TokenProcessor, type KeyList } from '../../../src/kvcache/keys.js';
import { entry, expectIndex, ExpectedIndex } from './index-state.js';

const MODEL = 'm';
const POD = 'a:8000';
const OTHER = 'b:8000';

function keyList(hashes: readonly bigint[]): KeyList {
  const out = new Uint32Array(2 * hashes.length);
  hashes.forEach((h, i) => out.set(bigIntToKey(h), 2 * i));
  return out;
}

function tokens(n: number, start = 1): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

function stored(
  hashes: readonly bigint[],
  parent: bigint | null,
  toks: readonly number[],
  over: Partial<PackedBlockStored> = {},
): PackedBlockStored {
  return {
    type: 'BlockStored',
    blockHashes: keyList(hashes),
    parentBlockHash: parent === null ? null : bigIntToKey(parent),
    tokenIds: Uint32Array.from(toks),
    blockSize: hashes.length === 0 ? 16 : Math.max(1, toks.length / hashes.length),
    loraId: null,
    medium: 'GPU',
    loraName: null,
    extraKeys: null,
    groupIdx: null,
    kvCacheSpecKind: null,
    kvCacheSpecSlidingWindow: null,
    cacheSalt: null,
    ...over,
  };
}

function removed(hashes: readonly bigint[], over: Partial<PackedBlockRemoved> = {}): PackedBlockRemoved {
  return { type: 'BlockRemoved', blockHashes: keyList(hashes), medium: 'GPU', groupIdx: null, ...over };
}

const CLEARED: PackedKvEvent = { type: 'AllBlocksCleared' };

function setup(
  blockSize = 4,
  opts: { strictHma?: boolean; index?: KvBlockIndex } = {},
): {
  index: MemoryIndex;
  tp: TokenProcessor;
  counters: IngestCounters;
  applier: EventApplier;
  server: (pod?: string) => ServerIndexState;
  apply: (s: ServerIndexState, ...events: PackedKvEvent[]) => void;
} {
  const index = new MemoryIndex();
  const tp = new TokenProcessor({ blockSizeTokens: blockSize });
  const counters = new IngestCounters();
  const applier = new EventApplier(opts.index ?? index, tp, counters, { strictHma: opts.strictHma });
  return {
    index,
    tp,
    counters,
    applier,
    server: (pod = POD) => applier.server(pod),
    apply: (s, ...events) => {
      expect(applier.applyBatch(s, MODEL, events)).toBeUndefined();
    },
  };
}

const weights = DEFAULT_TIER_WEIGHTS;

describe('EventApplier: BlockStored, BlockRemoved, AllBlocksCleared', () => {
  it('stores a sequence under the request keys of its tokens, and maps each engine hash to its key', () => {
    const { index, tp, counters, server, apply } = setup();
    const s = server();
    apply(s, stored([11n, 12n, 13n], null, tokens(12)));
    const keys = tp.keys(tokens(12), MODEL);
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD)));
    const k = keysToBigInts(keys);
    expect(index.getRequestKey(...bigIntToKey(12n))).toEqual(bigIntToKey(k[1]!));
    expect(counters).toMatchObject({ eventsStored: 1, blocksStored: 3 });
  });

  it('continues a chain through the parent hash: keys equal those of the whole prompt', () => {
    const { index, tp, server, apply } = setup();
    const s = server();
    apply(s, stored([11n, 12n], null, tokens(8)), stored([13n, 14n], 12n, tokens(8, 9)));
    const all = tp.keys(tokens(16), MODEL);
    expectIndex(index, new ExpectedIndex().hold(all, entry(POD)));
    expect(index.score(all, weights).get(POD)).toEqual({ score: 4, blocks: 4 });
  });

  it('skips a store whose parent is unknown, and treats a parent of 0 as none', () => {
    const { index, tp, counters, server, apply } = setup();
    const s = server();
    apply(s, stored([21n], 999n, tokens(4)));
    expect(index.stats().requestKeys).toBe(0);
    expect(counters.storesSkipped.parent_unknown).toBe(1);
    apply(s, stored([22n], 0n, tokens(4)));
    expectIndex(index, new ExpectedIndex().hold(tp.keys(tokens(4), MODEL), entry(POD)));
  });

  it('removes the blocks named, for the tier named, leaving the rest of the chain', () => {
    const { index, tp, counters, server, apply } = setup();
    const s = server();
    apply(s, stored([1n, 2n, 3n], null, tokens(12)));
    apply(s, removed([3n]));
    const keys = tp.keys(tokens(12), MODEL);
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD), 0, 2));
    expect(index.getRequestKey(...bigIntToKey(3n))).toBeNull();
    // Another tier's removal does not touch the GPU copies.
    apply(s, removed([1n, 2n], { medium: 'CPU' }));
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD), 0, 2));
    expect(counters).toMatchObject({ eventsRemoved: 2, blocksRemoved: 3 });
  });

  it("AllBlocksCleared removes every entry of the server, on every tier, and no other server's", () => {
    const { index, tp, counters, server, apply } = setup();
    const a = server();
    const b = server(OTHER);
    apply(
      a,
      stored([1n, 2n], null, tokens(8)),
      stored([], null, [], { blockHashes: keyList([1n]), medium: 'CPU' }),
    );
    apply(b, stored([7n, 8n], null, tokens(8)));
    apply(a, CLEARED);
    expectIndex(index, new ExpectedIndex().hold(tp.keys(tokens(8), MODEL), entry(OTHER)));
    expect(counters.eventsCleared).toBe(1);
    // The dedup counts went too: one removal after a second store forwards at once.
    apply(a, stored([1n, 2n], null, tokens(8)));
    apply(a, removed([1n, 2n]));
    expectIndex(index, new ExpectedIndex().hold(tp.keys(tokens(8), MODEL), entry(OTHER)));
  });
});

describe('EventApplier: engine and indexer block sizes', () => {
  it('many engine blocks to one request key (engine 4 tokens, indexer 16)', () => {
    const { index, tp, counters, server, apply } = setup(16);
    const s = server();
    const h = [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n];
    apply(s, stored(h, null, tokens(32)));
    const keys = keysToBigInts(tp.keys(tokens(48), MODEL));
    expect(index.getRequestKey(...bigIntToKey(3n))).toEqual(bigIntToKey(keys[0]!));
    expect(index.getRequestKey(...bigIntToKey(4n))).toEqual(bigIntToKey(keys[0]!));
    expect(index.getRequestKey(...bigIntToKey(8n))).toEqual(bigIntToKey(keys[1]!));
    // The next event chains to engine block 8, i.e. after request key 1.
    apply(s, stored([9n, 10n, 11n, 12n], 8n, tokens(16, 33)));
    const all = tp.keys(tokens(48), MODEL);
    expectIndex(index, new ExpectedIndex().hold(all, entry(POD)));
    // Removing one of the four engine blocks of a request key removes that key.
    apply(s, removed([10n]));
    expectIndex(index, new ExpectedIndex().hold(all, entry(POD), 0, 2));
    // Fewer engine blocks than one indexer block: nothing to key.
    apply(s, stored([20n, 21n], null, tokens(8, 100)));
    expect(counters.storesSkipped.no_full_block).toBe(1);
  });

  it('one engine block to many request keys (engine 32 tokens, indexer 16)', () => {
    const { index, tp, server, apply } = setup(16);
    const s = server();
    apply(s, stored([1n, 2n], null, tokens(64)));
    const keys = keysToBigInts(tp.keys(tokens(96), MODEL));
    // The last key of an engine block is its parent for what follows.
    expect(index.getRequestKey(...bigIntToKey(1n))).toEqual(bigIntToKey(keys[1]!));
    expect(index.getRequestKey(...bigIntToKey(2n))).toEqual(bigIntToKey(keys[3]!));
    apply(s, stored([3n], 2n, tokens(32, 65)));
    const all = tp.keys(tokens(96), MODEL);
    expectIndex(index, new ExpectedIndex().hold(all, entry(POD)));
    // Removing engine block 2 removes both its request keys.
    apply(s, removed([2n]));
    expectIndex(index, new ExpectedIndex().hold(all, entry(POD), 0, 2).hold(all, entry(POD), 4, 6));
  });
});

describe('EventApplier: tiers, LoRA, extra keys', () => {
  it('takes the tier from the medium (gpu when absent, lower-cased) and scores it by its weight', () => {
    const { index, tp, server, apply } = setup();
    const s = server();
    apply(s, stored([1n], null, tokens(4), { medium: 'CPU' }));
    apply(s, stored([2n], null, tokens(4, 50), { medium: null }));
    apply(s, stored([3n], null, tokens(4, 90), { medium: 'Disk' }));
    expectIndex(
      index,
      new ExpectedIndex()
        .hold(tp.keys(tokens(4), MODEL), entry(POD, 'cpu'))
        .hold(tp.keys(tokens(4, 50), MODEL), entry(POD, 'gpu'))
        .hold(tp.keys(tokens(4, 90), MODEL), entry(POD, 'disk')),
    );
    expect(index.score(tp.keys(tokens(4), MODEL), weights).get(POD)?.score).toBeCloseTo(0.8);
  });

  it('a tokenless store is a tier update of the blocks its hashes map to; unknown hashes are ignored', () => {
    const { index, tp, counters, server, apply } = setup();
    const s = server();
    apply(s, stored([1n, 2n, 3n], null, tokens(12)));
    apply(s, stored([], null, [], { blockHashes: keyList([1n, 2n, 99n]), medium: 'CPU', blockSize: 4 }));
    const keys = tp.keys(tokens(12), MODEL);
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD)).hold(keys, entry(POD, 'cpu'), 0, 2));
    expect(counters.tierUpdates).toBe(1);
    // The GPU copies go; the CPU ones stay and score at their weight.
    apply(s, removed([1n, 2n, 3n]));
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD, 'cpu'), 0, 2));
    expect(index.score(keys, weights).get(POD)).toEqual({ score: 1.6, blocks: 2 });
    // Then the CPU copies go too.
    apply(s, removed([1n, 2n], { medium: 'CPU' }));
    expectIndex(index, new ExpectedIndex());
    apply(s, stored([], null, [], { blockHashes: keyList([77n]), medium: 'CPU' }));
    expect(counters.storesSkipped.unknown_engine_keys).toBe(1);
  });

  it("keys a LoRA adapter's blocks under the adapter, without its name among the extra keys", () => {
    const { index, tp, server, apply } = setup();
    const s = server();
    apply(
      s,
      stored([1n, 2n], null, tokens(8), {
        loraName: 'sql',
        extraKeys: [['sql', 'img-1'], ['sql']],
      }),
    );
    const want = tp.keys(tokens(8), 'sql', null, [['img-1'], null]);
    expectIndex(index, new ExpectedIndex().hold(want, entry(POD)));
    expect(index.lookup(tp.keys(tokens(8), MODEL))).toEqual([]);
  });

  it('realigns extra keys to the indexer blocks, and folds an SGLang cache salt into block 0', () => {
    const { index, tp, server, apply } = setup(8);
    const s = server();
    // Four engine blocks of 4 tokens → two indexer blocks; an image spans engine blocks 1 and 2.
    apply(s, stored([1n, 2n, 3n, 4n], null, tokens(16), { extraKeys: [null, [['img', 0]], ['img'], null] }));
    apply(s, stored([5n], null, tokens(8, 40), { cacheSalt: 'tenant' }));
    expectIndex(
      index,
      new ExpectedIndex()
        .hold(tp.keys(tokens(16), MODEL, null, [['img'], ['img']]), entry(POD))
        .hold(tp.keys(tokens(8, 40), MODEL, null, [['tenant']]), entry(POD)),
    );
  });
});

describe('EventApplier: HMA groups', () => {
  it('indexes prefix-indexable groups only, with tokens spanning exactly the blocks', () => {
    const { index, tp, counters, server, apply } = setup();
    const s = server();
    apply(s, stored([1n], null, tokens(4), { groupIdx: 1, kvCacheSpecKind: 'sliding_window' }));
    expect(counters.storesSkipped.unsupported_cache_kind).toBe(1);
    apply(
      s,
      stored([2n, 3n], null, tokens(6), { groupIdx: 0, kvCacheSpecKind: 'full_attention', blockSize: 4 }),
    );
    expect(counters.storesSkipped.non_dense_block_span).toBe(1);
    apply(s, stored([2n], null, tokens(4), { groupIdx: 0, kvCacheSpecKind: 'full_attention' }));
    // A later store of the group without its kind keeps the one learned.
    apply(s, stored([4n], 2n, tokens(4, 5), { groupIdx: 0 }));
    const keys = tp.keys(tokens(8), MODEL);
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD, 'gpu', 0)));
    // Removals name the group; one for the sliding-window group is not applied.
    apply(s, removed([1n], { groupIdx: 1 }), removed([4n], { groupIdx: 0 }));
    expect(counters.removalsSkipped.unsupported_cache_kind).toBe(1);
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD, 'gpu', 0), 0, 1));
  });

  it('strictHma: a group whose kind was never learned is neither indexed nor removed from', () => {
    const { index, tp, counters, server, apply } = setup(4, { strictHma: true });
    const s = server();
    apply(s, stored([1n], null, tokens(4), { groupIdx: 2 }));
    expect(counters.storesSkipped.unsupported_cache_kind).toBe(1);
    apply(s, removed([1n], { groupIdx: 2 }));
    expect(counters.removalsSkipped.unknown_group).toBe(1);
    // Lenient (the default), the same store is full attention.
    const lenient = setup();
    lenient.apply(lenient.server(), stored([1n], null, tokens(4), { groupIdx: 2 }));
    expectIndex(lenient.index, new ExpectedIndex().hold(tp.keys(tokens(4), MODEL), entry(POD, 'gpu', 2)));
    expect(index.stats().requestKeys).toBe(0);
  });
});

describe('EventApplier: duplicate announcements', () => {
  it('removes a block announced twice only at its second removal', () => {
    const { index, tp, counters, server, apply } = setup();
    const s = server();
    apply(s, stored([1n], null, tokens(4)), stored([1n], null, tokens(4)));
    const keys = tp.keys(tokens(4), MODEL);
    apply(s, removed([1n]));
    expectIndex(index, new ExpectedIndex().hold(keys, entry(POD)));
    expect(counters.dedupSuppressed).toBe(1);
    apply(s, removed([1n]));
    expectIndex(index, new ExpectedIndex());
    expect(counters.dedupForwarded).toBe(1);
  });
});

/** A memory index answering with promises (as Redis does), optionally failing its `add` calls. */
class AsyncIndex implements KvBlockIndex {
  readonly backend = 'redis' as const;
  failAdds = 0;
  readonly calls: string[] = [];
  constructor(readonly inner: MemoryIndex) {}
  lookup(keys: KeyList): Promise<PodEntry[][]> {
    return Promise.resolve(this.inner.lookup(keys));
  }
  score(keys: KeyList): Promise<Map<string, { score: number; blocks: number }>> {
    return Promise.resolve(this.inner.score(keys, weights));
  }
  async add(e: KeyList | null, r: KeyList, entries: readonly PodEntry[]): Promise<void> {
    await Promise.resolve();
    this.calls.push('add');
    if (this.failAdds > 0) {
      this.failAdds--;
      throw new Error('add failed');
    }
    this.inner.add(e, r, entries);
  }
  async evict(t: KeyType, keys: KeyList, entries: readonly PodEntry[]): Promise<void> {
    await Promise.resolve();
    this.calls.push('evict');
    this.inner.evict(t, keys, entries);
  }
  async getRequestKey(hi: number, lo: number): Promise<readonly [number, number] | null> {
    await Promise.resolve();
    this.calls.push('get');
    return this.inner.getRequestKey(hi, lo);
  }
  async clear(pod: string): Promise<void> {
    await Promise.resolve();
    this.calls.push('clear');
    this.inner.clear(pod);
  }
  close(): void {}
}

describe('EventApplier over an index that answers with promises', () => {
  it('applies a batch in order and resolves when done; a failed call skips only its event', async () => {
    const inner = new MemoryIndex();
    const async = new AsyncIndex(inner);
    const { tp, counters, applier } = setup(4, { index: async });
    const s = applier.server(POD);
    async.failAdds = 1;
    const step = applier.applyBatch(s, MODEL, [
      stored([9n], null, tokens(4, 500)), // fails
      stored([1n, 2n], null, tokens(8)),
      stored([3n], 2n, tokens(4, 9)),
      stored([], null, [], { blockHashes: keyList([3n]), medium: 'CPU' }),
      removed([1n]),
      CLEARED,
      stored([5n], null, tokens(4, 70)),
    ]);
    expect(step).toBeInstanceOf(Promise);
    await step;
    expect(counters.applyErrors).toBe(1);
    expect(async.calls).toEqual(['add', 'add', 'get', 'add', 'get', 'add', 'evict', 'clear', 'add']);
    expectIndex(inner, new ExpectedIndex().hold(tp.keys(tokens(4, 70), MODEL), entry(POD)));
  });
});
