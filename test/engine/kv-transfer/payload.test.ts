import { describe, expect, it } from 'vitest';
import {
  StreamingVerifier,
  TEMPLATE_BYTES,
  blockSeeds,
  fillPayload,
  patternTemplate,
} from '../../../src/engine/kv-transfer/payload.js';
import {
  FrameReader,
  FrameType,
  ProtocolError,
  StreamingFrameReader,
  blockFrameHead,
  controlFrame,
} from '../../../src/engine/kv-transfer/protocol.js';
import { Rng } from '../../../src/core/rng.js';

describe('block payloads', () => {
  it('derive each block from its tokens and all before them, not from anything else', () => {
    const a = blockSeeds('m', [1, 2, 3, 4, 5, 6, 7, 8, 9], 4);
    expect(a).toHaveLength(3);
    expect(blockSeeds('m', [1, 2, 3, 4, 5, 6, 7, 8, 9], 4)).toEqual(a);
    // A different earlier token changes every later block; a different model changes all.
    const b = blockSeeds('m', [1, 2, 3, 0, 5, 6, 7, 8, 9], 4);
    expect(b[0]).not.toBe(a[0]);
    expect(b[1]).not.toBe(a[1]);
    expect(blockSeeds('other', [1, 2, 3, 4], 4)[0]).not.toBe(a[0]);
    // The partial last block counts its own tokens only.
    expect(blockSeeds('m', [1, 2, 3, 4, 5], 4)[1]).not.toBe(blockSeeds('m', [1, 2, 3, 4, 5, 6], 4)[1]);
  });

  it('are the seed and then the template repeated, whatever the length', () => {
    const seed = blockSeeds('m', [1, 2, 3], 4)[0]!;
    const len = 8 + 2 * TEMPLATE_BYTES + 100;
    const full = Buffer.alloc(len);
    fillPayload(seed, full);
    const t = patternTemplate(seed);
    const seedBytes = Buffer.alloc(8);
    seedBytes.writeBigUInt64BE(seed);
    expect(Buffer.concat([seedBytes, t, t, t.subarray(0, 100)]).equals(full)).toBe(true);
  });

  it('verify exactly, fed in pieces of any size: one flipped byte anywhere fails', () => {
    const seed = blockSeeds('m', [9, 9, 9], 4)[0]!;
    const len = 8 + TEMPLATE_BYTES + 500;
    const block = Buffer.alloc(len);
    fillPayload(seed, block);
    const v = new StreamingVerifier();
    const check = (b: Buffer, s: bigint, piece: number, length = len): boolean => {
      v.begin(s, length);
      for (let i = 0; i < b.length; i += piece) v.feed(b.subarray(i, i + piece));
      return v.end();
    };
    for (const piece of [1, 3, 7, 64, 1000, len]) expect(check(block, seed, piece)).toBe(true);
    expect(check(block, seed + 1n, 1000)).toBe(false);
    for (const at of [0, 7, 8, 63, 64, TEMPLATE_BYTES + 7, len - 1]) {
      const bad = Buffer.from(block);
      bad[at]! ^= 1;
      expect(check(bad, seed, 4096)).toBe(false);
    }
    expect(check(block.subarray(0, len - 1), seed, 4096)).toBe(false);
    expect(check(block, seed, 4096, len - 1)).toBe(false);
  });
});

describe('side-channel frames', () => {
  it('reassemble however the bytes are split, handing out control and block frames', () => {
    const frames = Buffer.concat([
      controlFrame(FrameType.Hello, { a: 1 }),
      blockFrameHead(7, 42, 5),
      Buffer.from('abcde'),
      controlFrame(FrameType.Done, { xfer_id: 7 }),
    ]);
    for (let cut = 1; cut < frames.length; cut++) {
      const got: { type: number; text: string }[] = [];
      const r = new FrameReader((f) => got.push({ type: f.type, text: f.payload.toString('latin1') }));
      r.push(frames.subarray(0, cut));
      r.push(frames.subarray(cut));
      expect(got.map((g) => g.type)).toEqual([FrameType.Hello, FrameType.Block, FrameType.Done]);
      expect(got[1]!.text.slice(8)).toBe('abcde');
    }
  });

  it('stream block payloads in pieces while assembling control frames, however the bytes are split', () => {
    const frames = Buffer.concat([
      controlFrame(FrameType.Meta, { a: 1 }),
      blockFrameHead(3, 9, 6),
      Buffer.from('uvwxyz'),
      blockFrameHead(3, 10, 0),
      controlFrame(FrameType.Done, {}),
    ]);
    for (let cut = 1; cut < frames.length; cut++) {
      const log: string[] = [];
      const r = new StreamingFrameReader({
        control: (t, p) => log.push(`c${t}:${p.toString()}`),
        blockStart: (x, b, n) => log.push(`s${x}/${b}/${n}`),
        blockData: (p) => log.push(`d${p.toString()}`),
        blockEnd: () => log.push('e'),
      });
      r.push(frames.subarray(0, cut));
      r.push(frames.subarray(cut));
      const joined = log.join(' ').replace(/ d/g, '');
      expect(joined).toBe('c2:{"a":1} s3/9/6uvwxyz e s3/10/0 e c5:{}');
    }
  });

  it('reject unknown types, oversized control frames and truncated block frames', () => {
    const r = () => new FrameReader(() => undefined);
    expect(() => r().push(Buffer.from([99, 0, 0, 0, 0]))).toThrow(ProtocolError);
    expect(() => r().push(Buffer.from([FrameType.Hello, 0x7f, 0, 0, 0]))).toThrow(/too large/);
    expect(() => r().push(Buffer.from([FrameType.Block, 0, 0, 0, 4, 1, 2, 3, 4]))).toThrow(/truncated/);
  });

  it('throws nothing but ProtocolError on random bytes', () => {
    const rng = new Rng(3);
    const sink = {
      control: () => undefined,
      blockStart: () => undefined,
      blockData: () => undefined,
      blockEnd: () => undefined,
    };
    for (let i = 0; i < 3000; i++) {
      const n = rng.int(0, 40);
      const b = Buffer.alloc(n);
      for (let j = 0; j < n; j++) b[j] = rng.int(0, 8);
      for (const reader of [new FrameReader(() => undefined), new StreamingFrameReader(sink)]) {
        try {
          reader.push(b);
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }
    }
  });
});
