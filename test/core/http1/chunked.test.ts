import { describe, expect, it } from 'vitest';
import { ChunkedDecoder } from '../../../src/core/http1/chunked.js';
import { HeadError } from '../../../src/core/http1/head.js';
import { Rng } from '../../../src/core/rng.js';

function decode(parts: Buffer[]): { data: string; end: number; done: boolean } {
  let data = '';
  const d = new ChunkedDecoder((b) => (data += b.toString('latin1')));
  let end = -1;
  let offset = 0;
  for (const p of parts) {
    const e = d.feed(p);
    if (d.done && end < 0) end = offset + e;
    offset += p.length;
  }
  return { data, end, done: d.done };
}

const MESSAGE = '5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: yes\r\n\r\n';

describe('ChunkedDecoder', () => {
  it('decodes chunks, skipping extensions and trailers, and finds the end of the message', () => {
    const r = decode([Buffer.from(MESSAGE + 'NEXT')]);
    expect(r).toEqual({ data: 'hello, world', end: MESSAGE.length, done: true });
  });

  it('gives the same result however the bytes are split', () => {
    const bytes = Buffer.from(MESSAGE);
    for (let cut = 1; cut < bytes.length; cut++) {
      for (const cut2 of [cut + 1, bytes.length]) {
        const r = decode([bytes.subarray(0, cut), bytes.subarray(cut, cut2), bytes.subarray(cut2)]);
        expect(r.data).toBe('hello, world');
        expect(r.done).toBe(true);
      }
    }
  });

  it('hands out sub-arrays of its input, not copies', () => {
    const input = Buffer.from('4\r\nabcd\r\n0\r\n\r\n');
    let seen: Buffer | null = null;
    new ChunkedDecoder((b) => (seen = b)).feed(input);
    expect(seen!.buffer).toBe(input.buffer);
  });

  it.each([
    ['a non-hex size', 'z\r\n'],
    ['a missing size', '\r\n'],
    ['data without CRLF', '2\r\nabX'],
    ['a bare LF after the size', '2\nab\r\n'],
    ['a huge size', 'ffffffffffffff\r\n'],
  ])('rejects %s', (_what, text) => {
    expect(() => new ChunkedDecoder(() => undefined).feed(Buffer.from(text))).toThrow(HeadError);
  });

  it('bounds the trailer section', () => {
    const d = new ChunkedDecoder(() => undefined, 64);
    expect(() => d.feed(Buffer.from('0\r\n' + 'x'.repeat(100)))).toThrow(/trailer/);
  });

  it('throws nothing but HeadError on random input', () => {
    const rng = new Rng(9);
    const alphabet = '0123456789abcdefxyz;\r\n ';
    for (let i = 0; i < 5000; i++) {
      let s = '';
      for (let j = rng.int(0, 40); j > 0; j--) s += alphabet[rng.int(0, alphabet.length - 1)];
      try {
        new ChunkedDecoder(() => undefined).feed(Buffer.from(s));
      } catch (e) {
        expect(e).toBeInstanceOf(HeadError);
      }
    }
  });
});
