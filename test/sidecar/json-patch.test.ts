import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/core/rng.js';
import { JsonPatchError, REMOVE, isJsonValue, scanObject } from '../../src/sidecar/json-patch.js';

function patched(text: string, edits: [string, string | typeof REMOVE][]): string {
  return scanObject(text).patch(edits).toString('utf8');
}

describe('the JSON object patcher', () => {
  it('finds the top-level members and their kinds', () => {
    const o = scanObject(' {"a": 1, "b" :{"c":[1,2,{"d":null}]}, "e":"x\\"y", "f":true, "g":null, "h":[]} ');
    expect(o.members.map((m) => [m.key, m.kind])).toEqual([
      ['a', 'number'],
      ['b', 'object'],
      ['e', 'string'],
      ['f', 'boolean'],
      ['g', 'null'],
      ['h', 'array'],
    ]);
    expect(o.raw('b')!.toString()).toBe('{"c":[1,2,{"d":null}]}');
    expect(o.value('e')).toBe('x"y');
    expect(o.has('zz')).toBe(false);
    expect(o.object('b')!.raw('c')!.toString()).toBe('[1,2,{"d":null}]');
    expect(o.object('a')).toBeUndefined();
  });

  it('keeps numbers exactly as written, however large or precise', () => {
    const text =
      '{"seed":1152921504606846976,"big":123456789012345678901234567890,"f":1.000000000000000000001e-400,"neg":-0}';
    const out = patched(text, [['stream', 'false']]);
    expect(out).toBe(text.slice(0, -1) + ',"stream":false}');
    expect(out).toContain('"seed":1152921504606846976');
    // What the naive approach would have sent:
    expect(JSON.stringify(JSON.parse(text))).not.toContain('1152921504606846976');
  });

  it('replaces in place, removes, and appends; untouched members keep their bytes and spacing', () => {
    const text =
      '{ "model" : "m",\n  "stream": true,\n  "stream_options": {"include_usage": true},\n  "n": 2 }';
    const out = patched(text, [
      ['stream', 'false'],
      ['stream_options', REMOVE],
      ['max_tokens', '1'],
    ]);
    expect(out).toBe('{ "model" : "m",\n  "stream": false,\n  "n": 2 ,"max_tokens":1}');
    expect(JSON.parse(out)).toEqual({ model: 'm', stream: false, n: 2, max_tokens: 1 });
  });

  it('returns the very same bytes when nothing changes', () => {
    const buf = Buffer.from('{"a":1}');
    expect(scanObject(buf).patch([])).toBe(buf);
    expect(patched('{"a":1}', [['zz', REMOVE]])).toBe('{"a":1}');
  });

  it('handles empty objects and removing every member', () => {
    expect(patched('{}', [['a', '1']])).toBe('{"a":1}');
    expect(patched('{ }', [['a', '1']])).toBe('{"a":1}');
    expect(
      JSON.parse(
        patched('{"a":1,"b":2}', [
          ['a', REMOVE],
          ['b', REMOVE],
        ]),
      ),
    ).toEqual({});
    expect(
      JSON.parse(
        patched('{"a":1,"b":2}', [
          ['a', REMOVE],
          ['c', '3'],
        ]),
      ),
    ).toEqual({ b: 2, c: 3 });
  });

  it('treats escaped keys as the keys they spell, and duplicates as JSON.parse does', () => {
    const o = scanObject('{"max\\u005ftokens":5,"a":1,"a":2}');
    expect(o.has('max_tokens')).toBe(true);
    expect(o.value('a')).toBe(2);
    const out = o
      .patch([
        ['max_tokens', '1'],
        ['a', '3'],
      ])
      .toString();
    expect(JSON.parse(out)).toEqual({ max_tokens: 1, a: 3 });
    expect(out.match(/"a"/g)).toHaveLength(1);
    expect(JSON.parse(patched('{"a":1,"a":2}', [['a', REMOVE]]))).toEqual({});
  });

  it('keeps bytes that are not valid UTF-8 inside strings untouched', () => {
    const buf = Buffer.concat([
      Buffer.from('{"p":"'),
      Buffer.from([0xff, 0xfe, 0xc3]),
      Buffer.from('","x":1}'),
    ]);
    const out = scanObject(buf).patch([['x', '2']]);
    expect(out.subarray(0, 9)).toEqual(buf.subarray(0, 9));
  });

  it('rejects what is not exactly one JSON object, naming the offset', () => {
    const bad = [
      '',
      '   ',
      '[]',
      '"s"',
      '1',
      'null',
      '{',
      '{"a"}',
      '{"a":}',
      '{"a":1,}',
      '{,}',
      '{"a":1}}',
      '{"a":1} x',
      '{"a":1}{"b":2}',
      "{'a':1}",
      '{a:1}',
      '{"a":01}',
      '{"a":1.}',
      '{"a":.5}',
      '{"a":-}',
      '{"a":1e}',
      '{"a":+1}',
      '{"a":NaN}',
      '{"a":Infinity}',
      '{"a":tru}',
      '{"a":nul}',
      '{"a":"\\x"}',
      '{"a":"\\u12"}',
      '{"a":"\t"}',
      '{"a":"unterminated}',
      '{"a":[1,2}',
      '{"a":{"b":1]}',
      '{"a":[,1]}',
      '\uFEFF{"a":1}',
      '{"a":1 "b":2}',
    ];
    for (const t of bad) {
      expect(() => scanObject(t), t).toThrow(JsonPatchError);
      expect(() => JSON.parse(t) as unknown, t).toSatisfy((f: () => unknown) => {
        try {
          const v = f();
          return v === null || typeof v !== 'object' || Array.isArray(v);
        } catch {
          return true;
        }
      });
    }
  });

  it('refuses deep nesting and oversized documents cleanly, without exhausting the stack', () => {
    const deep = '{"a":' + '['.repeat(1_000_000) + ']'.repeat(1_000_000) + '}';
    expect(() => scanObject(deep)).toThrow(/nesting too deep/);
    expect(() => scanObject('{"a":[[1]]}', { maxDepth: 2, maxBytes: 100 })).toThrow(/nesting too deep/);
    expect(scanObject('{"a":[1]}', { maxDepth: 2, maxBytes: 100 }).has('a')).toBe(true);
    expect(() => scanObject('{"a":1}', { maxDepth: 10, maxBytes: 3 })).toThrow(/too large/);
    // Unclosed deep nesting fails at the end, not with a RangeError.
    expect(() => scanObject('{"a":' + '{"b":'.repeat(400))).toThrow(JsonPatchError);
  });

  it('scans a huge string in linear time', () => {
    const s = 'x'.repeat(32 * 1024 * 1024);
    const text = `{"prompt":"${s}","seed":18446744073709551615}`;
    const t0 = performance.now();
    const out = scanObject(text).patch([['max_tokens', '1']]);
    expect(out.length).toBe(Buffer.byteLength(text) + 15);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(() => scanObject(`{"prompt":"${s}`)).toThrow(/unterminated string/);
  });

  it('checks lone values', () => {
    expect(isJsonValue('null')).toBe(true);
    expect(isJsonValue(' [1, {"a": 2}] ')).toBe(true);
    expect(isJsonValue('1 2')).toBe(false);
    expect(isJsonValue('')).toBe(false);
  });
});

// ---- fuzzing against JSON.parse ----

const KEYS = ['a', 'b', 'stream', 'max_tokens', 'kv_transfer_params', 'é', 'x y', '', '__proto__', 'k\n'];

function genString(r: Rng): string {
  const pieces = ['a', 'é', '中', '😀', '\\n', '\\"', '\\\\', '\\u0041', '\\ud83d\\ude00', '\\/', ' ', '\\t'];
  let s = '';
  const n = r.int(0, 6);
  for (let i = 0; i < n; i++) s += pieces[r.int(0, pieces.length - 1)];
  return '"' + s + '"';
}

function genNumber(r: Rng): string {
  const forms = [
    '0',
    '-0',
    '7',
    '-12',
    '3.25',
    '1e3',
    '2E-2',
    '-0.5e+7',
    '9007199254740993',
    '1152921504606846976',
  ];
  return forms[r.int(0, forms.length - 1)]!;
}

function ws(r: Rng): string {
  return [' ', '', '', '\n', '\t', '\r\n  '][r.int(0, 5)]!;
}

function genValue(r: Rng, depth: number): string {
  const pick = r.int(0, depth > 4 ? 4 : 7);
  switch (pick) {
    case 0:
      return genString(r);
    case 1:
      return genNumber(r);
    case 2:
      return ['true', 'false'][r.int(0, 1)]!;
    case 3:
      return 'null';
    case 4:
      return genString(r);
    case 5:
    case 6:
      return genObject(r, depth + 1);
    default: {
      const n = r.int(0, 4);
      const items: string[] = [];
      for (let i = 0; i < n; i++) items.push(ws(r) + genValue(r, depth + 1) + ws(r));
      return '[' + (items.join(',') || ws(r)) + ']';
    }
  }
}

function genObject(r: Rng, depth: number): string {
  const n = r.int(0, 6);
  const members: string[] = [];
  for (let i = 0; i < n; i++) {
    const key = JSON.stringify(KEYS[r.int(0, KEYS.length - 1)]!);
    members.push(ws(r) + key + ws(r) + ':' + ws(r) + genValue(r, depth) + ws(r));
  }
  return '{' + (members.join(',') || ws(r)) + '}';
}

const JUNK = ['{', '}', '[', ']', ',', ':', '"', '\\', '0', '-', '.', 'e', 't', 'n', ' ', '\u0001', 'x'];

function mutate(r: Rng, text: string): string {
  const i = r.int(0, Math.max(0, text.length - 1));
  switch (r.int(0, 2)) {
    case 0:
      return text.slice(0, i) + text.slice(i + 1);
    case 1:
      return text.slice(0, i) + JUNK[r.int(0, JUNK.length - 1)] + text.slice(i);
    default:
      return text.slice(0, i) + JUNK[r.int(0, JUNK.length - 1)] + text.slice(i + 1);
  }
}

function parsesAsObject(text: string): { ok: true; value: Record<string, unknown> } | { ok: false } {
  try {
    const v = JSON.parse(text) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      return { ok: true, value: v as Record<string, unknown> };
  } catch {
    // invalid
  }
  return { ok: false };
}

describe('the patcher under fuzzing', () => {
  it('accepts exactly what JSON.parse accepts as an object, and reads the same members', () => {
    const r = new Rng(20240601);
    let valid = 0;
    let invalid = 0;
    for (let i = 0; i < 20_000; i++) {
      let text = ws(r) + genObject(r, 1) + ws(r);
      const mutations = r.int(0, 3) === 0 ? 0 : r.int(1, 3);
      for (let m = 0; m < mutations; m++) text = mutate(r, text);
      // As bytes on the wire: a mutation that split a surrogate pair becomes U+FFFD, for both parsers.
      text = Buffer.from(text).toString('utf8');
      const ref = parsesAsObject(text);
      let scanned: ReturnType<typeof scanObject> | null = null;
      try {
        scanned = scanObject(text);
      } catch (err) {
        expect(err, text).toBeInstanceOf(JsonPatchError);
      }
      expect(scanned !== null, text).toBe(ref.ok);
      if (scanned === null || !ref.ok) {
        invalid++;
        continue;
      }
      valid++;
      const keys = new Set(scanned.members.map((m) => m.key));
      expect([...keys].sort(), text).toEqual(Object.keys(ref.value).sort());
      for (const k of keys) expect(scanned.value(k), text).toEqual(ref.value[k]);
    }
    expect(valid).toBeGreaterThan(3000);
    expect(invalid).toBeGreaterThan(3000);
  });

  it('produces what applying the same edits to JSON.parse output gives, copying untouched members verbatim', () => {
    const r = new Rng(7);
    for (let i = 0; i < 5_000; i++) {
      const text = genObject(r, 1);
      const obj = scanObject(text);
      const expected = JSON.parse(text) as Record<string, unknown>;
      const edits: [string, string | typeof REMOVE][] = [];
      const nEdits = r.int(0, 4);
      for (let e = 0; e < nEdits; e++) {
        const key = KEYS[r.int(0, KEYS.length - 1)]!;
        if (edits.some(([k]) => k === key)) continue;
        if (r.int(0, 2) === 0) {
          edits.push([key, REMOVE]);
          delete expected[key];
        } else {
          const v = genValue(r, 3);
          edits.push([key, v]);
          // defineProperty: `expected.__proto__ = v` would set the prototype, not a member.
          Object.defineProperty(expected, key, {
            value: JSON.parse(v) as unknown,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
      }
      const out = obj.patch(edits).toString('utf8');
      const got = parsesAsObject(out);
      expect(got.ok, `${text} → ${out}`).toBe(true);
      if (!got.ok) continue;
      expect(got.value, `${text} → ${out}`).toEqual(expected);
      const edited = new Set(edits.map(([k]) => k));
      const outBytes = Buffer.from(out);
      for (const m of obj.members) {
        if (edited.has(m.key) || obj.member(m.key) !== m) continue;
        expect(outBytes.includes(obj.buf.subarray(m.start, m.end))).toBe(true);
      }
      // The output is itself a valid object for the scanner.
      expect(() => scanObject(out)).not.toThrow();
    }
  });
});
