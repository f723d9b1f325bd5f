import { describe, expect, it } from 'vitest';
import { CborWriter, encodeCanonical } from '../../src/core/cbor.js';

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

describe('canonical CBOR', () => {
  it('encodes unsigned integers in their shortest form (RFC 8949 appendix A)', () => {
    expect(hex(encodeCanonical(0))).toBe('00');
    expect(hex(encodeCanonical(23))).toBe('17');
    expect(hex(encodeCanonical(24))).toBe('1818');
    expect(hex(encodeCanonical(255))).toBe('18ff');
    expect(hex(encodeCanonical(256))).toBe('190100');
    expect(hex(encodeCanonical(65535))).toBe('19ffff');
    expect(hex(encodeCanonical(65536))).toBe('1a00010000');
    expect(hex(encodeCanonical(4294967295))).toBe('1affffffff');
    expect(hex(encodeCanonical(4294967296))).toBe('1b0000000100000000');
    expect(hex(encodeCanonical(1000000000000))).toBe('1b000000e8d4a51000');
    expect(hex(encodeCanonical(18446744073709551615n))).toBe('1bffffffffffffffff');
  });

  it('encodes negative integers as major type 1', () => {
    expect(hex(encodeCanonical(-1))).toBe('20');
    expect(hex(encodeCanonical(-10))).toBe('29');
    expect(hex(encodeCanonical(-100))).toBe('3863');
    expect(hex(encodeCanonical(-1000))).toBe('3903e7');
    expect(hex(encodeCanonical(-18446744073709551616n))).toBe('3bffffffffffffffff');
  });

  it('encodes byte strings, text strings, null and nested arrays', () => {
    expect(hex(encodeCanonical(new Uint8Array([1, 2, 3, 4])))).toBe('4401020304');
    expect(hex(encodeCanonical(''))).toBe('60');
    expect(hex(encodeCanonical('a'))).toBe('6161');
    expect(hex(encodeCanonical('IETF'))).toBe('6449455446');
    expect(hex(encodeCanonical('\u00fc'))).toBe('62c3bc');
    expect(hex(encodeCanonical('\u6c34'))).toBe('63e6b0b4');
    expect(hex(encodeCanonical(null))).toBe('f6');
    expect(hex(encodeCanonical([]))).toBe('80');
    expect(hex(encodeCanonical([1, [2, 3], [4, 5]]))).toBe('8301820203820405');
    const xs = Array.from({ length: 25 }, (_, i) => i + 1);
    expect(hex(encodeCanonical(xs))).toBe('98190102030405060708090a0b0c0d0e0f101112131415161718181819');
  });

  it('uses the long length forms for long strings', () => {
    const s = 'x'.repeat(300);
    const out = encodeCanonical(s);
    expect(hex(out.subarray(0, 3))).toBe('79012c');
    expect(out.length).toBe(303);
  });

  it('rejects values it cannot encode canonically', () => {
    expect(() => encodeCanonical(1.5)).toThrow(RangeError);
    expect(() => encodeCanonical(2 ** 60)).toThrow(RangeError);
    expect(() => encodeCanonical(1n << 64n)).toThrow(RangeError);
  });

  it('grows its buffer and can be reset and reused', () => {
    const w = new CborWriter(16);
    w.arrayHeader(1000);
    for (let i = 0; i < 1000; i++) w.uint(i * 1000);
    const first = w.toBytes();
    expect(first).toEqual(encodeCanonical(Array.from({ length: 1000 }, (_, i) => i * 1000)));
    w.reset().uint(1);
    expect(hex(w.bytes())).toBe('01');
  });
});
