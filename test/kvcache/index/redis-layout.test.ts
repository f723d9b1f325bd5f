/**
 * llm-d's Redis key layout without Redis: key names in decimal (fast path against bigint), hash
 * fields as Go's encoding/json writes a PodEntry, and decoding them the way `json.Unmarshal` does.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import type { PodEntry } from '../../../src/kvcache/index/index.js';
import {
  decimalKey,
  decodePodField,
  encodePodField,
  engineKeyName,
  parseDecimalKey,
} from '../../../src/kvcache/index/redis-layout.js';

/** Key halves worth checking: digit-count and carry boundaries of the fast decimal path. */
const EDGES = [0, 1, 9, 10, 4294, 967295, 967296, 999_999, 1_000_000, 0x7fffffff, 0x80000000, 0xffffffff];

function* halves(): Generator<[number, number]> {
  for (const hi of EDGES) for (const lo of EDGES) yield [hi, lo];
  const rng = new Rng(99);
  for (let i = 0; i < 20_000; i++) yield [rng.nextU32(), rng.nextU32()];
  for (let i = 0; i < 2_000; i++) yield [rng.int(0, 15), rng.nextU32()];
}

describe('decimal key names', () => {
  it('spells every 64-bit key as its decimal uint64, and parses it back', () => {
    for (const [hi, lo] of halves()) {
      const want = ((BigInt(hi) << 32n) | BigInt(lo)).toString();
      expect(decimalKey(hi, lo)).toBe(want);
      expect(parseDecimalKey(want)).toEqual([hi, lo]);
    }
    expect(decimalKey(0xffffffff, 0xffffffff)).toBe('18446744073709551615');
    expect(engineKeyName(0, 42)).toBe('engine:42');
  });

  it('parses only canonical decimal uint64s', () => {
    expect(parseDecimalKey('0')).toEqual([0, 0]);
    expect(parseDecimalKey('18446744073709551615')).toEqual([0xffffffff, 0xffffffff]);
    for (const s of [
      '',
      '00',
      '01',
      '-1',
      '+1',
      '1.0',
      '1e3',
      ' 1',
      '1 ',
      '0x10',
      'engine:1',
      '18446744073709551616',
      '99999999999999999999',
      '100000000000000000000',
      '１２',
    ]) {
      expect(parseDecimalKey(s), s).toBeNull();
    }
  });
});

const entry = (pod: string, tier = 'gpu', speculative = false, groupIdx: number | null = null): PodEntry => ({
  pod,
  tier,
  speculative,
  groupIdx,
});

describe('PodEntry hash fields', () => {
  it('are the Go struct’s JSON, members in declaration order', () => {
    expect(encodePodField(entry('10.0.0.5:8000'))).toBe(
      '{"PodIdentifier":"10.0.0.5:8000","DeviceTier":"gpu","Speculative":false,"HasGroup":false,"GroupIdx":0}',
    );
    expect(encodePodField(entry('p', '', true))).toBe(
      '{"PodIdentifier":"p","DeviceTier":"","Speculative":true,"HasGroup":false,"GroupIdx":0}',
    );
    expect(encodePodField(entry('p', 'cpu', false, 3))).toBe(
      '{"PodIdentifier":"p","DeviceTier":"cpu","Speculative":false,"HasGroup":true,"GroupIdx":3}',
    );
    expect(encodePodField(entry('p', 'gpu', false, 0))).toContain('"HasGroup":true,"GroupIdx":0}');
  });

  it('escape strings as Go does: HTML characters, line separators, control characters, lone surrogates', () => {
    const field = (pod: string): string =>
      JSON.stringify(JSON.parse(encodePodField(entry(pod))).PodIdentifier);
    expect(encodePodField(entry('<a&b>'))).toContain('"PodIdentifier":"\\u003ca\\u0026b\\u003e"');
    expect(encodePodField(entry('x\u2028y\u2029'))).toContain('"x\\u2028y\\u2029"');
    expect(encodePodField(entry('q"\\/'))).toContain('"q\\"\\\\/"');
    expect(encodePodField(entry('\b\f\n\r\t\u0001'))).toContain('"\\b\\f\\n\\r\\t\\u0001"');
    expect(encodePodField(entry('é🚀'))).toContain('"é🚀"');
    // A lone surrogate cannot be UTF-8: Go writes U+FFFD in its place.
    expect(encodePodField(entry('a\ud800b'))).toContain('"a\ufffdb"');
    expect(encodePodField(entry('\udc00'))).toContain('"\ufffd"');
    expect(field('\ud83d\ude80')).toBe('"🚀"');
  });

  it('decode back to the entry they encode', () => {
    const rng = new Rng(5);
    const chars = ['a', 'Z', '0', ':', '.', '<', '&', '"', '\\', '\n', 'é', '🚀', '\u2028', ' '];
    for (let i = 0; i < 2000; i++) {
      const s = (): string =>
        Array.from({ length: rng.int(0, 12) }, () => chars[rng.int(0, chars.length - 1)]).join('');
      const e = entry(s(), s(), rng.next() < 0.5, rng.next() < 0.5 ? null : rng.int(-3, 1_000_000));
      expect(decodePodField(encodePodField(e))).toEqual(e);
    }
  });

  it('decode what other writers wrote, as json.Unmarshal would', () => {
    // Missing or null members take Go's zero values; unknown members are ignored.
    expect(decodePodField('{"PodIdentifier":"p"}')).toEqual(entry('p', ''));
    expect(
      decodePodField('{"PodIdentifier":"p","DeviceTier":null,"Speculative":null,"GroupIdx":null}'),
    ).toEqual(entry('p', ''));
    expect(
      decodePodField(
        '{"PodIdentifier":"p","DeviceTier":"gpu","Speculative":false,"HasGroup":true,"GroupIdx":2,"retrievalSpan":4}',
      ),
    ).toEqual(entry('p', 'gpu', false, 2));
    expect(decodePodField('{"GroupIdx":1,"HasGroup":true,"DeviceTier":"cpu","PodIdentifier":"p"}')).toEqual(
      entry('p', 'cpu', false, 1),
    );
    // Key matching falls back to ASCII case-insensitivity, exact names first.
    expect(decodePodField('{"podidentifier":"p","DEVICETIER":"cpu","speculative":true}')).toEqual(
      entry('p', 'cpu', true),
    );
    expect(decodePodField('{"PodIdentifier":"exact","podidentifier":"folded"}')).toEqual(entry('exact', ''));
    // No group unless HasGroup, whatever GroupIdx says.
    expect(decodePodField('{"PodIdentifier":"p","HasGroup":false,"GroupIdx":5}')).toEqual(entry('p', ''));
    // Escapes as Go writes them.
    expect(decodePodField('{"PodIdentifier":"\\u003cp\\u003e","DeviceTier":"gpu"}')).toEqual(entry('<p>'));
  });

  it('are undecodable (null) when they are not such an object', () => {
    for (const f of [
      '',
      'p@gpu', // the legacy layout's field
      'not json',
      '[]',
      '["PodIdentifier"]',
      'null',
      '"p"',
      '42',
      '{"PodIdentifier":1}',
      '{"PodIdentifier":"p","DeviceTier":false}',
      '{"PodIdentifier":"p","Speculative":"true"}',
      '{"PodIdentifier":"p","HasGroup":1}',
      '{"PodIdentifier":"p","HasGroup":true,"GroupIdx":1.5}',
      '{"PodIdentifier":"p","HasGroup":true,"GroupIdx":"1"}',
      '{"PodIdentifier":"p","HasGroup":true,"GroupIdx":1e300}',
      // Two case-variants of one member and no exact one: ambiguous.
      '{"podidentifier":"a","PODIDENTIFIER":"b"}',
      '{"PodIdentifier":"p"',
    ]) {
      expect(decodePodField(f), f).toBeNull();
    }
  });
});
