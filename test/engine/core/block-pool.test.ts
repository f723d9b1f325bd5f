import { describe, expect, it } from 'vitest';
import {
  computeBlockHashes,
  computeNoneHash,
  externalBlockHash,
} from '../../../src/engine/core/block-hash.js';
import { BlockPool, type KvBlock } from '../../../src/engine/core/block-pool.js';

const noneHash = computeNoneHash('sha256_cbor', '0');
const hashParams = { algo: 'sha256_cbor' as const, noneHash, blockSize: 4 };

function ids(blocks: readonly KvBlock[]): number[] {
  return blocks.map((b) => b.blockId);
}

describe('BlockPool', () => {
  it('reserves block 0 as the null block and hands out the others in id order', () => {
    const pool = new BlockPool(6, true, false);
    expect(pool.nullBlock.blockId).toBe(0);
    expect(pool.numFreeBlocks).toBe(5);
    const out: KvBlock[] = [];
    pool.getNewBlocks(3, out);
    expect(ids(out)).toEqual([1, 2, 3]);
    expect(out.every((b) => b.refCnt === 1)).toBe(true);
    expect(pool.usage).toBeCloseTo(3 / 5);
    expect(() => pool.getNewBlocks(3, out)).toThrow();
  });

  it('puts freed blocks at the back, tail of a sequence first, and evicts least recently freed first', () => {
    const pool = new BlockPool(8, true, false);
    const x: KvBlock[] = [];
    const y: KvBlock[] = [];
    pool.getNewBlocks(3, x); // 1,2,3
    pool.getNewBlocks(2, y); // 4,5
    pool.freeBlocksReversed(x);
    pool.freeBlocksReversed(y);
    expect(ids(pool.freeBlocksInEvictionOrder())).toEqual([6, 7, 3, 2, 1, 5, 4]);
    const z: KvBlock[] = [];
    pool.getNewBlocks(4, z);
    expect(ids(z)).toEqual([6, 7, 3, 2]);
  });

  it('pulls a touched cached block out of the middle of the free queue', () => {
    const pool = new BlockPool(6, true, false);
    const x: KvBlock[] = [];
    pool.getNewBlocks(3, x);
    pool.freeBlocksReversed(x);
    pool.touch([x[1] as KvBlock], 1);
    expect(x[1]?.refCnt).toBe(1);
    expect(ids(pool.freeBlocksInEvictionOrder())).toEqual([4, 5, 3, 1]);
    expect(pool.numFreeBlocks).toBe(4);
  });

  it('reports cached blocks as BlockStored with their parent, and evicted ones as BlockRemoved', () => {
    const pool = new BlockPool(4, true, true);
    const toks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const hashes = computeBlockHashes(hashParams, toks);
    const blocks: KvBlock[] = [];
    pool.getNewBlocks(3, blocks);
    pool.cacheFullBlocks(blocks, hashes, 0, 2, 4, toks, undefined);
    pool.cacheFullBlocks(blocks, hashes, 2, 3, 4, toks, 'lora-a');
    const ext = hashes.map((h) => externalBlockHash(h.digest));
    expect(pool.drainEvents()).toEqual([
      {
        type: 'BlockStored',
        blockHashes: [ext[0], ext[1]],
        parentBlockHash: null,
        tokenIds: toks.slice(0, 8),
        blockSize: 4,
        loraName: null,
        medium: 'GPU',
        extraKeys: null,
      },
      {
        type: 'BlockStored',
        blockHashes: [ext[2]],
        parentBlockHash: ext[1],
        tokenIds: toks.slice(8, 12),
        blockSize: 4,
        loraName: 'lora-a',
        medium: 'GPU',
        extraKeys: [['lora-a']],
      },
    ]);
    expect(pool.drainEvents()).toEqual([]);
    expect(pool.getCachedBlock(hashes[1]!)).toBe(blocks[1]);

    pool.freeBlocksReversed(blocks);
    const again: KvBlock[] = [];
    pool.getNewBlocks(1, again);
    expect(again[0]).toBe(blocks[2]);
    expect(pool.drainEvents()).toEqual([{ type: 'BlockRemoved', blockHashes: [ext[2]], medium: 'GPU' }]);
    expect(pool.getCachedBlock(hashes[2]!)).toBeUndefined();
    expect(pool.getCachedBlock(hashes[0]!)).toBe(blocks[0]);
  });

  it('keeps a second block with the same hash and falls back to it when the first is evicted', () => {
    const pool = new BlockPool(4, true, false);
    const toks = [1, 2, 3, 4];
    const hashes = computeBlockHashes(hashParams, toks);
    const a: KvBlock[] = [];
    const b: KvBlock[] = [];
    pool.getNewBlocks(1, a);
    pool.getNewBlocks(1, b);
    pool.cacheFullBlocks(a, hashes, 0, 1, 4, toks, undefined);
    pool.cacheFullBlocks(b, hashes, 0, 1, 4, toks, undefined);
    expect(pool.numCachedBlocks).toBe(2);
    pool.freeBlocksReversed(a);
    const c: KvBlock[] = [];
    pool.getNewBlocks(2, c); // block 3, then a's block
    expect(c[1]).toBe(a[0]);
    expect(pool.getCachedBlock(hashes[0]!)).toBe(b[0]);
    expect(pool.numCachedBlocks).toBe(1);
  });

  it('collects no events unless they are enabled', () => {
    const pool = new BlockPool(4, true, false);
    const toks = [1, 2, 3, 4];
    const blocks: KvBlock[] = [];
    pool.getNewBlocks(1, blocks);
    pool.cacheFullBlocks(blocks, computeBlockHashes(hashParams, toks), 0, 1, 4, toks, undefined);
    expect(pool.drainEvents()).toEqual([]);
  });

  it('refuses to reset the prefix cache while blocks are in use, and clears it when idle', () => {
    const pool = new BlockPool(4, true, true);
    const toks = [1, 2, 3, 4];
    const hashes = computeBlockHashes(hashParams, toks);
    const blocks: KvBlock[] = [];
    pool.getNewBlocks(1, blocks);
    pool.cacheFullBlocks(blocks, hashes, 0, 1, 4, toks, undefined);
    pool.drainEvents();
    expect(pool.resetPrefixCache()).toBe(false);
    pool.freeBlocksReversed(blocks);
    expect(pool.resetPrefixCache()).toBe(true);
    expect(pool.getCachedBlock(hashes[0]!)).toBeUndefined();
    expect(pool.drainEvents()).toEqual([{ type: 'AllBlocksCleared' }]);
  });
});
