/**
 * The KV-event decoder on malformed, truncated, oversized and hostile input: a bad event is skipped
 * with its reason while the events around it are kept; a payload that is not a well-formed batch is
 * rejected whole with a `KvEventDecodeError` of the right reason, cheaply; and nothing else ever
 * escapes (a seeded fuzz loop over random and mutated bytes checks the last part).
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { encodeKvEventBatch } from '../../../src/engine/kv-events/encode.js';
import {
  KvEventDecodeError,
  decodeKvEventBatch,
  decodeKvEventMessage,
  decodePackedBatch,
  parseTopic,
  type KvEventDecodeReason,
} from '../../../src/kvcache/events/decode.js';
import { randomEvents } from '../../engine/kv-events/helpers.js';

/** A tiny msgpack writer for hand-made (often invalid) payloads. */
function mp(v: unknown): Buffer {
  if (v === null) return Buffer.from([0xc0]);
  if (v === true) return Buffer.from([0xc3]);
  if (v === false) return Buffer.from([0xc2]);
  if (typeof v === 'bigint') {
    const b = Buffer.alloc(9);
    if (v < 0n) {
      b[0] = 0xd3;
      b.writeBigInt64BE(v, 1);
    } else {
      b[0] = 0xcf;
      b.writeBigUInt64BE(v, 1);
    }
    return b;
  }
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= 0 && v < 128) return Buffer.from([v]);
    if (Number.isInteger(v) && v < 0 && v >= -32) return Buffer.from([v & 0xff]);
    if (Number.isInteger(v) && Math.abs(v) < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0xd2;
      b.writeInt32BE(v, 1);
      return b;
    }
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(v, 1);
    return b;
  }
  if (typeof v === 'string') {
    const body = Buffer.from(v, 'utf8');
    return Buffer.concat([Buffer.from([0xd9, body.length]), body]);
  }
  if (v instanceof Uint8Array) return Buffer.concat([Buffer.from([0xc4, v.length]), v]);
  if (Array.isArray(v)) {
    const head = Buffer.alloc(5);
    head[0] = 0xdd;
    head.writeUInt32BE(v.length, 1);
    return Buffer.concat([head, ...v.map(mp)]);
  }
  const entries = Object.entries(v as Record<string, unknown>);
  const head = Buffer.alloc(5);
  head[0] = 0xdf;
  head.writeUInt32BE(entries.length, 1);
  return Buffer.concat([head, ...entries.flatMap(([k, x]) => [mp(k), mp(x)])]);
}

const stored = (over: Record<number, unknown> = {}): unknown[] => {
  const e: unknown[] = ['BlockStored', [1, 2], null, [1, 2, 3, 4], 2, null, 'GPU', null];
  for (const [i, v] of Object.entries(over)) e[Number(i)] = v;
  return e;
};

function reasonOf(f: () => unknown): KvEventDecodeReason | 'ok' {
  try {
    f();
    return 'ok';
  } catch (err) {
    if (err instanceof KvEventDecodeError) return err.reason;
    throw err;
  }
}

const batchReason = (events: unknown[], extra: Parameters<typeof decodeKvEventBatch>[1] = {}): string =>
  reasonOf(() => decodeKvEventBatch(mp([1.5, events, 0]), extra));

/** The reasons of the events a batch skipped (it must decode). */
const skippedReasons = (events: unknown[], extra: Parameters<typeof decodeKvEventBatch>[1] = {}): string[] =>
  decodeKvEventBatch(mp([1.5, events, 0]), extra).skipped.map((s) => s.reason);

const seq0 = Buffer.alloc(8);

describe('decoding the frames', () => {
  it('decodes topic, seq and batch from three frames', () => {
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(0xffff_ffff_ffff_fffen);
    const m = decodeKvEventMessage([Buffer.from('kv@p@m'), seq, mp([1.5, [['AllBlocksCleared']], null])]);
    expect(m).toEqual({
      topic: 'kv@p@m',
      seq: 0xffff_ffff_ffff_fffen,
      batch: { ts: 1.5, events: [{ type: 'AllBlocksCleared' }], dataParallelRank: null, skipped: [] },
    });
  });

  it('rejects a wrong frame count or a sequence frame that is not 8 bytes', () => {
    const ok = mp([1, [], 0]);
    expect(reasonOf(() => decodeKvEventMessage([Buffer.from(''), seq0]))).toBe('frames');
    expect(reasonOf(() => decodeKvEventMessage([Buffer.from(''), seq0, ok, ok]))).toBe('frames');
    expect(reasonOf(() => decodeKvEventMessage([Buffer.from(''), Buffer.alloc(7), ok]))).toBe('frames');
    expect(reasonOf(() => decodeKvEventMessage([]))).toBe('frames');
    expect(reasonOf(() => decodeKvEventMessage('nope' as unknown as Uint8Array[]))).toBe('frames');
    expect(reasonOf(() => decodeKvEventMessage([Buffer.from(''), seq0, 'x' as unknown as Uint8Array]))).toBe(
      'frames',
    );
  });
});

describe("llm-d's topic convention", () => {
  it('reads kv@<pod>@<model>, and takes any other shape as a bare pod id', () => {
    expect(parseTopic('kv@10.0.3.7:8000@Qwen/Qwen3-32B')).toEqual({
      pod: '10.0.3.7:8000',
      model: 'Qwen/Qwen3-32B',
    });
    expect(parseTopic('kv@10.0.3.7@')).toEqual({ pod: '10.0.3.7', model: '' });
    expect(parseTopic('kv-events')).toEqual({ pod: 'kv-events', model: '' });
    expect(parseTopic('kv@pod@org@model')).toEqual({ pod: 'kv@pod@org@model', model: '' });
    expect(parseTopic('')).toEqual({ pod: '', model: '' });
  });
});

describe('tolerance', () => {
  it('accepts any integer width for hashes and reads negative int64 as two’s complement', () => {
    const b = decodeKvEventBatch(
      mp([1, [['BlockRemoved', [0, 255, -1n, -(2n ** 63n), 2n ** 64n - 1n, -7], null]], 0]),
    );
    expect(b.events[0]).toEqual({
      type: 'BlockRemoved',
      blockHashes: [0n, 255n, 2n ** 64n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 7n],
      medium: null,
      groupIdx: null,
    });
  });

  it('reads bytes hashes by their last 8 bytes, left-padding shorter ones', () => {
    const digest = Uint8Array.from({ length: 32 }, (_, i) => i);
    const b = decodeKvEventBatch(
      mp([1, [['BlockRemoved', [digest, Uint8Array.of(1, 0), Uint8Array.of(0xff)], 'GPU']], 0]),
    );
    expect(b.events[0]).toEqual(
      expect.objectContaining({ blockHashes: [0x18191a1b1c1d1e1fn, 0x100n, 0xffn] }),
    );
  });

  it('accepts an absent rank, a float32 ts, trailing batch elements and a map batch with SGLang’s rank name', () => {
    expect(decodeKvEventBatch(mp([1, []])).dataParallelRank).toBeNull();
    const f32 = Buffer.from([0x93, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0x90, 0x01]);
    expect(decodeKvEventBatch(f32)).toEqual({ ts: 1.5, events: [], dataParallelRank: 1, skipped: [] });
    expect(decodeKvEventBatch(mp([1, [], 2, 'future', {}])).dataParallelRank).toBe(2);
    expect(decodeKvEventBatch(mp({ ts: 3, attn_dp_rank: 4, events: [], other: [1] }))).toEqual({
      ts: 3,
      events: [],
      dataParallelRank: 4,
      skipped: [],
    });
  });

  it('ignores unknown map keys and extra positional fields; missing optional ones are null', () => {
    const b = decodeKvEventBatch(
      mp([
        1,
        [
          { block_hashes: [1], type: 'BlockRemoved', unknown: { deep: [1, 2] }, medium: 'CPU' },
          ['BlockStored', [1], null, [5], 1],
          [...stored(), null, 0, 'full_attention', null, 'local', 'owner', 'session', [1, 2, 3]],
        ],
        0,
      ]),
    );
    expect(b.events[0]).toEqual({ type: 'BlockRemoved', blockHashes: [1n], medium: 'CPU', groupIdx: null });
    expect(b.events[1]).toEqual(
      expect.objectContaining({
        blockHashes: [1n],
        tokenIds: [5],
        loraId: null,
        medium: null,
        loraName: null,
      }),
    );
    expect(b.events[2]).toEqual(expect.objectContaining({ groupIdx: 0, kvCacheSpecKind: 'full_attention' }));
  });

  it('keeps extra keys, turning maps inside them into null', () => {
    const b = decodeKvEventBatch(
      mp([1, [stored({ 8: [['lora', ['mm-1', 0], Uint8Array.of(1), { a: 1 }], null] })], 0]),
    );
    expect(b.events[0]).toEqual(
      expect.objectContaining({ extraKeys: [['lora', ['mm-1', 0], Uint8Array.of(1), null], null] }),
    );
  });
});

describe('per-event tolerance', () => {
  it('skips an event with an unknown tag and keeps the events around it (llm-d drops the batch)', () => {
    const b = decodeKvEventBatch(
      mp([1.5, [['AllBlocksCleared'], ['BlockMigrated', [1]], ['BlockRemoved', [7], 'GPU']], 0]),
    );
    expect(b.events).toEqual([
      { type: 'AllBlocksCleared' },
      { type: 'BlockRemoved', blockHashes: [7n], medium: 'GPU', groupIdx: null },
    ]);
    expect(b.skipped).toEqual([
      { index: 1, reason: 'unknown-tag', message: 'unknown event tag "BlockMigrated"' },
    ]);
    expect(skippedReasons([{ type: 'Nope' }])).toEqual(['unknown-tag']);
    expect(batchReason([['AllBlocksCleared'], ['BlockMigrated', [1]]])).toBe('ok');
  });

  it('skips each event with a wrong type in a field it uses, keeping its neighbours', () => {
    const cases: unknown[][] = [
      [stored({ 1: 'not a list' })],
      [stored({ 1: [1.5] })],
      [stored({ 1: [true] })],
      [stored({ 1: [Uint8Array.of()] })],
      [stored({ 2: 'parent' })],
      [stored({ 3: [1, -2] })],
      [stored({ 3: [1, 2n ** 60n] })],
      [stored({ 3: null })],
      [stored({ 4: 0 })],
      [stored({ 4: '16' })],
      [stored({ 5: 'lora' })],
      [stored({ 6: 7 })],
      [stored({ 7: 7 })],
      [stored({ 8: 'keys' })],
      [stored({ 8: ['keys'] })],
      [[...stored(), null, -1]],
      [['BlockStored', [1], null, [1]]],
      [['BlockRemoved']],
      [[7, [1]]],
      [{ block_hashes: [1] }],
      ['BlockStored'],
      [null],
    ];
    const before = ['BlockRemoved', [1], 'GPU'];
    const after = ['AllBlocksCleared'];
    for (const events of cases) {
      const what = JSON.stringify(events, (_k, v) => String(v));
      const b = decodeKvEventBatch(mp([1.5, [before, ...events, after], 0]));
      expect(
        b.skipped.map((s) => [s.index, s.reason]),
        what,
      ).toEqual([[1, 'schema']]);
      expect(
        b.events.map((e) => e.type),
        what,
      ).toEqual(['BlockRemoved', 'AllBlocksCleared']);
      // The packed form skips the same events.
      expect(
        decodePackedBatch(mp([1.5, events, 0])).skipped.map((s) => s.reason),
        what,
      ).toEqual(['schema']);
    }
    // Many bad events in a row are each counted, in order.
    const many = decodeKvEventBatch(mp([1, [...cases.map((c) => c[0]), after], 0]));
    expect(many.skipped.map((s) => s.index)).toEqual(cases.map((_c, i) => i));
    expect(many.events).toEqual([{ type: 'AllBlocksCleared' }]);
  });

  it('skips an event whose string is not UTF-8, whatever field it is in', () => {
    // [1, [["\xc3("]]]: the tag is not UTF-8, so not a known tag.
    const badTag = decodeKvEventBatch(Buffer.from([0x92, 0x01, 0x91, 0x91, 0xa2, 0xc3, 0x28]));
    expect(badTag.events).toEqual([]);
    expect(badTag.skipped.map((s) => s.reason)).toEqual(['unknown-tag']);
    const lora = Buffer.from(mp([1, [stored({ 7: 'LORA' }), ['AllBlocksCleared']], 0]));
    const at = lora.indexOf('LORA');
    lora[at] = 0xc3;
    lora[at + 1] = 0x28;
    const b = decodeKvEventBatch(lora);
    expect(b.skipped.map((s) => s.reason)).toEqual(['msgpack']);
    expect(b.events).toEqual([{ type: 'AllBlocksCleared' }]);
  });
});

describe('rejection', () => {
  it('rejects a batch that is not shaped as one', () => {
    expect(reasonOf(() => decodeKvEventBatch(mp(['ts', [], 0])))).toBe('schema');
    expect(reasonOf(() => decodeKvEventBatch(mp([1, {}, 0])))).toBe('schema');
    expect(reasonOf(() => decodeKvEventBatch(mp([1])))).toBe('schema');
    expect(reasonOf(() => decodeKvEventBatch(mp([1, [], 1.5])))).toBe('schema');
    expect(reasonOf(() => decodeKvEventBatch(mp('batch')))).toBe('schema');
  });

  it('rejects every truncation of a valid payload, and trailing bytes', () => {
    const payload = encodeKvEventBatch(1.25, randomEvents(new Rng(3), 6));
    for (let n = 0; n < payload.length; n++) {
      expect(reasonOf(() => decodeKvEventBatch(payload.subarray(0, n)))).toBe('msgpack');
    }
    expect(reasonOf(() => decodeKvEventBatch(Buffer.concat([payload, Buffer.from([0xc0])])))).toBe('msgpack');
  });

  it('rejects containers whose declared length the bytes cannot hold, before allocating', () => {
    // An array of 4 294 967 295 elements in five bytes, and a map of 65 535 entries in three.
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0x93, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff])))).toBe(
      'msgpack',
    );
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0xde, 0xff, 0xff])))).toBe('msgpack');
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x41])))).toBe(
      'msgpack',
    );
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff])))).toBe('msgpack');
  });

  it('rejects oversized payloads and containers over the entry limit', () => {
    const payload = mp([1, [stored({ 3: Array.from({ length: 1000 }, (_, i) => i) })], 0]);
    expect(reasonOf(() => decodeKvEventBatch(payload, { maxItems: 999 }))).toBe('too-large');
    expect(reasonOf(() => decodeKvEventBatch(payload, { maxItems: 1000 }))).toBe('ok');
    expect(reasonOf(() => decodeKvEventBatch(payload, { maxPayloadBytes: payload.length - 1 }))).toBe(
      'too-large',
    );
  });

  it('rejects deep nesting without recursing into it', () => {
    const deep = Buffer.concat([Buffer.alloc(1_000_000, 0x91), Buffer.from([0xc0])]);
    expect(reasonOf(() => decodeKvEventBatch(deep))).toBe('too-large');
    const nestedExtra = mp([1, [stored({ 8: [[[[[[[[[[[[[[[[[['x']]]]]]]]]]]]]]]]]] })], 0]);
    expect(reasonOf(() => decodeKvEventBatch(nestedExtra))).toBe('too-large');
    expect(reasonOf(() => decodeKvEventBatch(nestedExtra, { maxDepth: 64 }))).toBe('ok');
  });

  it('rejects the reserved byte 0xc1, inside an event too: the events after it cannot be found', () => {
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0x93, 0xc1, 0x90, 0xc0])))).toBe('msgpack');
    // [1, [["AllBlocksCleared"], [0xc1]]]
    const inEvent = Buffer.concat([
      Buffer.from([0x92, 0x01, 0x92]),
      mp(['AllBlocksCleared']),
      Buffer.from([0x91, 0xc1]),
    ]);
    expect(reasonOf(() => decodeKvEventBatch(inEvent))).toBe('msgpack');
  });

  it('rejects a batch-level shape error only after checking the structure: damage outranks shape', () => {
    // A root array of one element (a shape error) whose element is truncated.
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0x91, 0x92, 0x01])))).toBe('msgpack');
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0x91, 0x01])))).toBe('schema');
    expect(reasonOf(() => decodeKvEventBatch(Buffer.from([0xa1, 0x41, 0x00])))).toBe('msgpack');
  });

  it('never throws anything but a KvEventDecodeError on random or mutated bytes (seeded fuzz)', () => {
    const rng = new Rng(20_240_611);
    const valid = [
      encodeKvEventBatch(1.5, randomEvents(rng, 8)),
      encodeKvEventBatch(2.5, randomEvents(rng, 8), { mapFormat: true }),
      mp({ ts: 1, events: [stored(), { type: 'BlockRemoved', block_hashes: [Uint8Array.of(1, 2)] }] }),
    ];
    const outcomes = { ok: 0, rejected: 0 };
    const run = (bytes: Uint8Array, dialect: 'vllm' | 'sglang'): void => {
      try {
        decodeKvEventBatch(bytes, { dialect });
        outcomes.ok++;
      } catch (err) {
        if (!(err instanceof KvEventDecodeError)) throw err;
        outcomes.rejected++;
      }
      try {
        decodeKvEventMessage([bytes.subarray(0, 4), seq0, bytes], { dialect });
      } catch (err) {
        if (!(err instanceof KvEventDecodeError)) throw err;
      }
    };
    for (let i = 0; i < 6000; i++) {
      const random = Buffer.alloc(rng.int(0, 96));
      for (let j = 0; j < random.length; j++) {
        // Bias towards container and integer headers so the fuzz gets past the first byte often.
        random[j] =
          rng.int(0, 3) === 0
            ? [0x90, 0x91, 0x93, 0xdc, 0xdd, 0x81, 0xcf, 0xd3, 0xc4][rng.int(0, 8)]!
            : rng.int(0, 255);
      }
      run(random, i % 2 === 0 ? 'vllm' : 'sglang');
      const base = valid[i % valid.length]!;
      const mutated = Buffer.from(base);
      for (let k = rng.int(1, 4); k > 0; k--) {
        const at = rng.int(0, mutated.length - 1);
        mutated[at] = rng.int(0, 2) === 0 ? mutated[at]! ^ (1 << rng.int(0, 7)) : rng.int(0, 255);
      }
      run(rng.int(0, 4) === 0 ? mutated.subarray(0, rng.int(0, mutated.length)) : mutated, 'vllm');
    }
    expect(outcomes.rejected).toBeGreaterThan(1000);
    expect(outcomes.ok).toBeGreaterThan(100);
  });
});
