/**
 * The batch encoder: both layouts decode back to the events they were made from, integers take
 * msgspec's smallest widths, `ts` is always a float64, and 64-bit hashes survive exactly.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import type { KvEvent } from '../../../src/engine/core/types.js';
import { KvEventEncoder, encodeKvEventBatch } from '../../../src/engine/kv-events/encode.js';
import { decodeKvEventBatch } from '../../../src/kvcache/events/decode.js';
import { expectedDecoded, randomEvents } from './helpers.js';

const U64_MAX = (1n << 64n) - 1n;

describe('the KV event encoder', () => {
  for (const mapFormat of [false, true]) {
    it(`round-trips random batches through the decoder (${mapFormat ? 'maps' : 'arrays'})`, () => {
      const rng = new Rng(mapFormat ? 2 : 1);
      const enc = new KvEventEncoder({ mapFormat, dataParallelRank: 0 });
      for (let i = 0; i < 300; i++) {
        const events = randomEvents(rng, rng.int(1, 12));
        const ts = 1_700_000_000 + rng.next() * 1e6;
        const batch = decodeKvEventBatch(enc.encode(ts, events));
        expect(batch.ts).toBe(ts);
        expect(batch.dataParallelRank).toBe(0);
        expect(batch.events).toEqual(events.map((e) => expectedDecoded(e)));
      }
    });
  }

  it('keeps 64-bit hashes exact, as uint64 from 2^32 up', () => {
    const hashes = [
      0n,
      1n,
      127n,
      128n,
      0xffffffffn,
      0x1_0000_0000n,
      (1n << 53n) + 1n,
      (1n << 63n) + 5n,
      U64_MAX,
    ];
    const events: KvEvent[] = [{ type: 'BlockRemoved', blockHashes: hashes, medium: 'GPU' }];
    const bytes = encodeKvEventBatch(1, events);
    expect(decodeKvEventBatch(bytes).events[0]).toEqual(expect.objectContaining({ blockHashes: hashes }));
    const hex = bytes.toString('hex');
    expect(hex).toContain('cfffffffffffffffff'); // U64_MAX as uint64
    expect(hex).toContain('cf8000000000000005');
    expect(hex).toContain('ceffffffff'); // below 2^32: the smallest width, as msgspec writes it
  });

  it('writes ts as a float64 even when it is integral', () => {
    const bytes = encodeKvEventBatch(1_700_000_000, [{ type: 'AllBlocksCleared' }]);
    expect(bytes[0]).toBe(0x93);
    expect(bytes[1]).toBe(0xcb);
    expect(bytes.readDoubleBE(2)).toBe(1_700_000_000);
  });

  it('writes the positional layout with every field, and the map layout without defaulted ones', () => {
    const e: KvEvent = {
      type: 'BlockStored',
      blockHashes: [1n],
      parentBlockHash: null,
      tokenIds: [1],
      blockSize: 1,
      loraName: null,
      medium: 'GPU',
      extraKeys: null,
    };
    const arr = encodeKvEventBatch(0, [e]);
    expect(arr[11]).toBe(0x9c); // [tag + 11 fields]
    const map = encodeKvEventBatch(0, [e], { mapFormat: true });
    expect(map[11]).toBe(0x89); // type + 8 fields: extra_keys and the spec fields are at their defaults
    expect(map.includes(Buffer.from('extra_keys'))).toBe(false);
    expect(map.includes(Buffer.from('lora_name'))).toBe(true); // required, so present though nil
  });

  it('writes nil for the rank when it has none, and grows past its scratch buffer', () => {
    const bytes = encodeKvEventBatch(0, [{ type: 'AllBlocksCleared' }], { dataParallelRank: null });
    expect(bytes.at(-1)).toBe(0xc0);
    expect(decodeKvEventBatch(bytes).dataParallelRank).toBeNull();
    const big: KvEvent = {
      type: 'BlockStored',
      blockHashes: Array.from({ length: 4096 }, (_, i) => BigInt(i) << 40n),
      parentBlockHash: null,
      tokenIds: Array.from({ length: 4096 * 16 }, (_, i) => i),
      blockSize: 16,
      loraName: null,
      medium: 'GPU',
      extraKeys: null,
    };
    const enc = new KvEventEncoder();
    const out = enc.encode(0, [big]);
    expect(decodeKvEventBatch(out).events[0]).toEqual(expectedDecoded(big));
    // The encoder is reusable, and earlier outputs are not overwritten by later ones.
    const small = enc.encode(0, [{ type: 'AllBlocksCleared' }]);
    expect(decodeKvEventBatch(out).events[0]).toEqual(expectedDecoded(big));
    expect(decodeKvEventBatch(small).events).toEqual([{ type: 'AllBlocksCleared' }]);
  });

  it('refuses hashes outside 64 bits instead of writing something else', () => {
    const enc = new KvEventEncoder();
    expect(() => enc.encode(0, [{ type: 'BlockRemoved', blockHashes: [1n << 64n], medium: 'GPU' }])).toThrow(
      RangeError,
    );
    expect(() => enc.encode(0, [{ type: 'BlockRemoved', blockHashes: [-1n], medium: 'GPU' }])).toThrow(
      RangeError,
    );
    // …and is still usable afterwards.
    expect(decodeKvEventBatch(enc.encode(0, [{ type: 'AllBlocksCleared' }])).events).toHaveLength(1);
  });
});
