/**
 * The hand-built RESP frame of the score path's EVALSHA: well-formed RESP arrays of bulk strings,
 * keys spelled exactly as `decimalKey` spells them, byte lengths of UTF-8 arguments, growth past the
 * initial buffer, and frames that stay intact when the writer is reused.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import { FrameWriter } from '../../../src/kvcache/index/redis-frame.js';
import { decimalKey } from '../../../src/kvcache/index/redis-layout.js';

/** A RESP array of bulk strings back into its arguments; throws on any malformed byte. */
function parseFrame(frame: Buffer): string[] {
  let p = 0;
  const line = (): string => {
    const end = frame.indexOf('\r\n', p, 'latin1');
    if (end < 0) throw new Error(`no CRLF after byte ${p}`);
    const s = frame.toString('latin1', p, end);
    p = end + 2;
    return s;
  };
  const head = line();
  if (!/^\*[0-9]+$/.test(head)) throw new Error(`bad array header ${head}`);
  const n = Number(head.slice(1));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = line();
    if (!/^\$[0-9]+$/.test(len)) throw new Error(`bad bulk header ${len}`);
    const size = Number(len.slice(1));
    out.push(frame.toString('utf8', p, p + size));
    p += size;
    if (frame.toString('latin1', p, p + 2) !== '\r\n') throw new Error(`no CRLF after argument ${i}`);
    p += 2;
  }
  if (p !== frame.length) throw new Error(`${frame.length - p} trailing bytes`);
  return out;
}

describe('FrameWriter', () => {
  it('writes a RESP array of bulk strings: plain, empty and UTF-8 arguments', () => {
    const f = new FrameWriter();
    const frame = f.begin(5).arg('EVALSHA').arg('').arg('é🚀').arg('10.0.0.1:8000').arg('0').finish();
    expect(frame.toString('utf8')).toBe(
      '*5\r\n$7\r\nEVALSHA\r\n$0\r\n\r\n$6\r\né🚀\r\n$13\r\n10.0.0.1:8000\r\n$1\r\n0\r\n',
    );
  });

  it('spells keys as decimalKey does, across the 64-bit range', () => {
    const rng = new Rng(11);
    const keys: [number, number][] = [
      [0, 0],
      [0, 9],
      [0, 999_999],
      [0, 1_000_000],
      [0, 0xffffffff],
      [1, 0],
      [0xffffffff, 0xffffffff],
      [4294, 967295],
      [4294, 967296],
    ];
    for (let i = 0; i < 5000; i++) keys.push([rng.nextU32(), rng.nextU32()]);
    for (let i = 0; i < 500; i++) keys.push([rng.int(0, 3), rng.nextU32()]);
    const f = new FrameWriter().begin(keys.length);
    for (const [hi, lo] of keys) f.key(hi, lo);
    expect(parseFrame(f.finish())).toEqual(keys.map(([hi, lo]) => decimalKey(hi, lo)));
  });

  it('grows past its initial buffer, and a finished frame survives the next', () => {
    const f = new FrameWriter();
    const n = 4000; // ~100 KB: several doublings of the 16 KB buffer
    f.begin(n + 2)
      .arg('EVALSHA')
      .arg('x'.repeat(20_000));
    for (let i = 0; i < n; i++) f.key(0x9e3779b9, i);
    const big = f.finish();
    const args = parseFrame(big);
    expect(args).toHaveLength(n + 2);
    expect(args[1]).toHaveLength(20_000);
    expect(args[n + 1]).toBe(decimalKey(0x9e3779b9, n - 1));
    const copy = Buffer.from(big);
    const small = f.begin(1).arg('PING').finish();
    expect(parseFrame(small)).toEqual(['PING']);
    expect(big.equals(copy)).toBe(true);
  });
});
