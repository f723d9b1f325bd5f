/**
 * The RESP3 decoder and command encoder: every type, aggregates nested and mixed with attributes and
 * pushes, identical results however the stream is chunked, every malformed case and every limit
 * failing with a protocol error (and poisoning the decoder), and seeded fuzzing that may only ever
 * yield values or protocol errors.
 */
import { describe, expect, it } from 'vitest';
import {
  encodeCommand,
  Resp3Decoder,
  Resp3Error,
  Resp3ProtocolError,
  Resp3Push,
  type Resp3Limits,
  type Resp3Value,
} from '../../../src/kvcache/index/resp3.js';

/** xorshift32: deterministic, so a failing case reproduces. */
function xorshift(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

type Shown = string | number | bigint | boolean | null | Shown[] | { [k: string]: Shown };

/** A plain form of a value that `toEqual` compares fully (error codes, push vs array, map order). */
function show(v: Resp3Value): Shown {
  if (v instanceof Resp3Error) return { error: v.message, code: v.code };
  if (v instanceof Resp3Push) return { push: v.items.map(show) };
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [show(k), show(x)]) };
  if (Array.isArray(v)) return v.map(show);
  return v;
}

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

function decodeChunks(chunks: Uint8Array[], limits?: Resp3Limits): { values: Shown[]; pending: number } {
  const d = new Resp3Decoder(limits);
  const values: Shown[] = [];
  for (const c of chunks) for (const v of d.feed(c)) values.push(show(v));
  return { values, pending: d.pendingBytes };
}

/** Every way to cut `input` that the decoder must not notice: whole, at each byte, one at a time. */
function cuts(input: Buffer): Uint8Array[][] {
  const out: Uint8Array[][] = [[input]];
  for (let k = 1; k < input.length; k++) out.push([input.subarray(0, k), input.subarray(k)]);
  // Plain Uint8Arrays (not Buffers), one byte each.
  out.push([...input].map((b) => Uint8Array.of(b)));
  return out;
}

/** Decodes `wire` under every cut and checks each gives `expected` with nothing left pending. */
function expectDecodes(wire: string | Buffer, expected: Resp3Value[]): void {
  const input = typeof wire === 'string' ? bytes(wire) : wire;
  const want = expected.map(show);
  for (const chunks of cuts(input)) {
    expect(decodeChunks(chunks)).toEqual({ values: want, pending: 0 });
  }
}

/** Feeds `wire` under every cut; each must throw a protocol error, and the decoder then stays failed. */
function expectMalformed(wire: string, limits?: Resp3Limits): void {
  for (const chunks of cuts(bytes(wire))) {
    const d = new Resp3Decoder(limits);
    let thrown: unknown = null;
    for (const c of chunks) {
      try {
        d.feed(c);
      } catch (e) {
        thrown = e;
        break;
      }
    }
    expect(thrown, JSON.stringify(wire)).toBeInstanceOf(Resp3ProtocolError);
    expect(() => d.feed(bytes('+OK\r\n'))).toThrow(Resp3ProtocolError);
    expect(() => d.feed(new Uint8Array(0))).toThrow(Resp3ProtocolError);
  }
}

describe('Resp3Decoder types', () => {
  const cases: [string, string, Resp3Value][] = [
    ['simple string', '+OK\r\n', 'OK'],
    ['empty simple string', '+\r\n', ''],
    ['UTF-8 simple string', '+h\u00e9llo \u2713\r\n', 'h\u00e9llo \u2713'],
    ['bulk string', '$5\r\nhello\r\n', 'hello'],
    ['empty bulk string', '$0\r\n\r\n', ''],
    ['bulk string with CRLF inside', '$4\r\na\r\nb\r\n', 'a\r\nb'],
    ['UTF-8 bulk string', '$4\r\n\u20ac!\r\n', '\u20ac!'],
    ['verbatim string', '=15\r\ntxt:Some string\r\n', 'Some string'],
    ['verbatim string, markdown, empty', '=4\r\nmkd:\r\n', ''],
    ['integer', ':1000\r\n', 1000],
    ['negative integer', ':-42\r\n', -42],
    ['zero', ':0\r\n', 0],
    ['integer with + sign', ':+7\r\n', 7],
    ['largest safe integer', ':9007199254740991\r\n', Number.MAX_SAFE_INTEGER],
    ['smallest safe integer', ':-9007199254740991\r\n', Number.MIN_SAFE_INTEGER],
    ['integer past 2^53', ':9007199254740993\r\n', 9007199254740993n],
    ['int64 max', ':9223372036854775807\r\n', 9223372036854775807n],
    ['int64 min', ':-9223372036854775808\r\n', -9223372036854775808n],
    ['double', ',1.5\r\n', 1.5],
    ['double with exponent', ',1.5e3\r\n', 1500],
    ['negative double', ',-0.25\r\n', -0.25],
    ['integral double', ',10\r\n', 10],
    ['inf', ',inf\r\n', Infinity],
    ['-inf', ',-inf\r\n', -Infinity],
    ['nan', ',nan\r\n', NaN],
    [
      'big number',
      '(3492890328409238509324850943850943825024385\r\n',
      3492890328409238509324850943850943825024385n,
    ],
    ['small big number', '(-1\r\n', -1n],
    ['true', '#t\r\n', true],
    ['false', '#f\r\n', false],
    ['null', '_\r\n', null],
    ['RESP2 null bulk', '$-1\r\n', null],
    ['RESP2 null array', '*-1\r\n', null],
    ['empty array', '*0\r\n', []],
    ['array', '*3\r\n:1\r\n$1\r\nb\r\n#f\r\n', [1, 'b', false]],
    ['set', '~2\r\n+a\r\n+b\r\n', ['a', 'b']],
    ['empty map', '%0\r\n', new Map()],
    [
      'map',
      '%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n',
      new Map<Resp3Value, Resp3Value>([
        ['first', 1],
        ['second', 2],
      ]),
    ],
    ['push', '>2\r\n+pubsub\r\n+x\r\n', new Resp3Push(['pubsub', 'x'])],
  ];
  for (const [name, wire, value] of cases) {
    it(`decodes ${name}`, () => expectDecodes(wire, [value]));
  }

  it('gives numbers and bigints their JS types', () => {
    const [a, b, c] = new Resp3Decoder().feed(bytes(':12\r\n:-99999999999999999999\r\n(5\r\n'));
    expect(typeof a).toBe('number');
    expect(b).toBe(-99999999999999999999n);
    expect(c).toBe(5n);
  });

  it('decodes errors with their codes', () => {
    const d = new Resp3Decoder();
    const values = d.feed(
      bytes(
        '-ERR unknown command\r\n-NOSCRIPT No matching script\r\n!21\r\nSYNTAX invalid syntax\r\n' +
          '-WRONGTYPE\r\n!0\r\n\r\n',
      ),
    );
    expect(values.every((v) => v instanceof Resp3Error)).toBe(true);
    expect(values.map((v) => (v as Resp3Error).code)).toEqual(['ERR', 'NOSCRIPT', 'SYNTAX', 'WRONGTYPE', '']);
    expect((values[0] as Resp3Error).message).toBe('ERR unknown command');
    expect((values[2] as Resp3Error).message).toBe('SYNTAX invalid syntax');
    expect(values[0]).toBeInstanceOf(Error);
    expectDecodes('-ERR x\r\n!5\r\nOOM y\r\n', [new Resp3Error('ERR x'), new Resp3Error('OOM y')]);
  });
});

describe('Resp3Decoder aggregates', () => {
  it('decodes nested aggregates', () => {
    expectDecodes('*3\r\n*2\r\n:1\r\n*0\r\n~1\r\n%1\r\n+k\r\n*1\r\n_\r\n$1\r\nz\r\n', [
      [[1, []], [new Map<Resp3Value, Resp3Value>([['k', [null]]])], 'z'],
    ]);
  });

  it('decodes maps with non-string keys', () => {
    const key = [1, 2];
    expectDecodes('%4\r\n:1\r\n+one\r\n#t\r\n+yes\r\n_\r\n+nil\r\n*2\r\n:1\r\n:2\r\n,2.5\r\n', [
      new Map<Resp3Value, Resp3Value>([
        [1, 'one'],
        [true, 'yes'],
        [null, 'nil'],
        [key, 2.5],
      ]),
    ]);
    const [m] = new Resp3Decoder().feed(bytes('%2\r\n:1\r\n+a\r\n$1\r\n1\r\n+b\r\n'));
    expect(m).toBeInstanceOf(Map);
    expect((m as Map<Resp3Value, Resp3Value>).get(1)).toBe('a');
    expect((m as Map<Resp3Value, Resp3Value>).get('1')).toBe('b');
  });

  it('drops an attribute before a top-level value', () => {
    const wire =
      '|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n' +
      '*2\r\n:2039123\r\n:9543892\r\n';
    expectDecodes(wire, [[2039123, 9543892]]);
  });

  it('drops attributes nested inside aggregates, before keys, values and aggregates', () => {
    expectDecodes(
      '*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n|0\r\n*1\r\n|1\r\n+a\r\n|1\r\n+b\r\n+c\r\n:3\r\n:4\r\n',
      [[1, 2, [4]]],
    );
    expectDecodes('%1\r\n|1\r\n+x\r\n+y\r\n+k\r\n|1\r\n+x\r\n+y\r\n+v\r\n', [
      new Map<Resp3Value, Resp3Value>([['k', 'v']]),
    ]);
    // Two attributes back to back, then the value; and one that is all there is before a later reply.
    expectDecodes('|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n+OK\r\n', ['OK']);
  });

  it('keeps an attribute pending until its value arrives', () => {
    const d = new Resp3Decoder();
    expect(d.feed(bytes('|1\r\n+a\r\n+b\r\n'))).toEqual([]);
    expect(d.pendingBytes).toBe(12);
    expect(d.feed(bytes(':1\r\n'))).toEqual([1]);
    expect(d.pendingBytes).toBe(0);
  });

  it('returns pushes in line with replies', () => {
    const wire =
      '*2\r\n$1\r\na\r\n$1\r\nb\r\n' +
      '>2\r\n$10\r\ninvalidate\r\n*2\r\n$4\r\nkey1\r\n$4\r\nkey2\r\n' +
      '+OK\r\n' +
      '>2\r\n$10\r\ninvalidate\r\n_\r\n' +
      ':5\r\n';
    expectDecodes(wire, [
      ['a', 'b'],
      new Resp3Push(['invalidate', ['key1', 'key2']]),
      'OK',
      new Resp3Push(['invalidate', null]),
      5,
    ]);
    const values = new Resp3Decoder().feed(bytes(wire));
    expect(values[1]).toBeInstanceOf(Resp3Push);
    expect(values[3]).toEqual(new Resp3Push(['invalidate', null]));
    expect(Array.isArray(values[1])).toBe(false);
  });

  it('decodes the FLUSHALL invalidate push with a null payload', () => {
    expectDecodes('>2\r\n$10\r\ninvalidate\r\n_\r\n', [new Resp3Push(['invalidate', null])]);
  });

  it('decodes RESP2 nulls inside aggregates', () => {
    expectDecodes('*3\r\n$-1\r\n*-1\r\n$0\r\n\r\n', [[null, null, '']]);
  });
});

describe('Resp3Decoder chunking', () => {
  it('gives identical results for a mixed stream however it is cut', () => {
    const wire =
      '+OK\r\n:-12\r\n,3.25\r\n(123456789012345678901234567890\r\n#t\r\n_\r\n$-1\r\n*-1\r\n' +
      '=9\r\ntxt:hi \u00e9\r\n!9\r\nERR bad x\r\n-NOAUTH needed\r\n' +
      '%1\r\n*1\r\n:1\r\n~2\r\n+x\r\n+y\r\n|1\r\n+a\r\n:1\r\n>1\r\n+p\r\n$3\r\n\u20ac\r\n';
    expectDecodes(wire, [
      'OK',
      -12,
      3.25,
      123456789012345678901234567890n,
      true,
      null,
      null,
      null,
      'hi \u00e9',
      new Resp3Error('ERR bad x'),
      new Resp3Error('NOAUTH needed'),
      new Map<Resp3Value, Resp3Value>([[[1], ['x', 'y']]]),
      new Resp3Push(['p']),
      '\u20ac',
    ]);
  });

  it('decodes pipelined HKEYS-like replies cut into random chunks', () => {
    const rnd = xorshift(0x5eed);
    const replies: Resp3Value[] = [];
    let wire = '';
    for (let r = 0; r < 400; r++) {
      const fields: string[] = [];
      for (let f = 0; f < 6; f++) {
        const pad = 'x'.repeat(rnd() % 80);
        fields.push(`{"pod":"pod-${r}-${f}","tier":"gpu","lora":null,"pad":"${pad}","u":"\u00fc\u2713"}`);
      }
      replies.push(fields);
      wire += `*6\r\n${fields.map((s) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`).join('')}`;
      if (r % 37 === 0) {
        replies.push(new Resp3Push(['invalidate', [`k${r}`]]));
        wire += `>2\r\n$10\r\ninvalidate\r\n*1\r\n$${String(r).length + 1}\r\nk${r}\r\n`;
      }
    }
    const input = bytes(wire);
    const want = replies.map(show);
    for (let trial = 0; trial < 30; trial++) {
      // Mostly 64 KiB-ish reads, with some tiny and some mid-sized ones mixed in.
      const chunks: Buffer[] = [];
      for (let p = 0; p < input.length;) {
        const kind = rnd() % 4;
        const size = kind === 0 ? 1 + (rnd() % 8) : kind === 1 ? 1 + (rnd() % 700) : 1 + (rnd() % 65536);
        chunks.push(input.subarray(p, p + size));
        p += size;
      }
      const d = new Resp3Decoder();
      const got: Shown[] = [];
      let sum = 0;
      for (const c of chunks) {
        for (const v of d.feed(c)) got.push(show(v));
        sum += c.length;
        expect(d.pendingBytes).toBeLessThanOrEqual(sum);
      }
      expect(got).toEqual(want);
      expect(d.pendingBytes).toBe(0);
    }
  });

  it('is unaffected by the caller reusing its chunk buffer after feed returns', () => {
    const input = bytes('*2\r\n$10\r\n0123456789\r\n+done\r\n');
    const d = new Resp3Decoder();
    const scratch = Buffer.alloc(4);
    const got: Resp3Value[] = [];
    for (let p = 0; p < input.length; p += 4) {
      const n = input.copy(scratch, 0, p, p + 4);
      got.push(...d.feed(scratch.subarray(0, n)));
      scratch.fill(0x21);
    }
    expect(got).toEqual([['0123456789', 'done']]);
  });

  it('returns nothing for truncated input and counts the pending bytes', () => {
    const truncated = [
      '+OK',
      '+OK\r',
      ':12',
      '$5\r\nhel',
      '$5\r\nhello',
      '$5\r\nhello\r',
      '*2\r\n:1\r\n',
      '%1\r\n+a\r\n',
      '>2\r\n$10\r\ninvalidate\r\n',
      '|1\r\n+a\r\n+b\r\n',
      '=15\r\ntxt:Some',
      '*1\r\n*1\r\n*1\r\n',
    ];
    for (const t of truncated) {
      const d = new Resp3Decoder();
      expect(d.feed(bytes(t)), t).toEqual([]);
      expect(d.pendingBytes, t).toBe(Buffer.byteLength(t));
    }
    const d = new Resp3Decoder();
    expect(d.feed(bytes('+A\r\n$5\r\nhel'))).toEqual(['A']);
    expect(d.pendingBytes).toBe(7);
    expect(d.feed(bytes('lo\r\n:1'))).toEqual(['hello']);
    expect(d.pendingBytes).toBe(2);
    expect(d.feed(bytes('\r\n'))).toEqual([1]);
    expect(d.pendingBytes).toBe(0);
  });
});

describe('Resp3Decoder malformed input', () => {
  const malformed: [string, string][] = [
    ['bare LF', '+OK\n'],
    ['bare LF in a header', '$3\nabc\r\n'],
    ['CR not followed by LF', '+OK\rX\r\n'],
    ['CR then CR', ':1\r\r\n'],
    ['bad type byte', '@foo\r\n'],
    ['lowercase letter type', 'hello\r\n'],
    ['empty line', '\r\n'],
    ['bare LF as a line', '\n'],
    ['negative bulk length', '$-2\r\n'],
    ['negative array length', '*-5\r\n'],
    ['negative zero length', '$-0\r\n'],
    ['null set', '~-1\r\n'],
    ['null map', '%-1\r\n'],
    ['null push', '>-1\r\n'],
    ['null attribute', '|-1\r\n'],
    ['null blob error', '!-1\r\n'],
    ['null verbatim', '=-1\r\n'],
    ['non-numeric bulk length', '$abc\r\n'],
    ['non-numeric array length', '*1a\r\n'],
    ['empty bulk length', '$\r\n'],
    ['empty array length', '*\r\n'],
    ['bulk length with +', '$+3\r\nabc\r\n'],
    ['array length with +', '*+1\r\n:1\r\n'],
    ['bulk length with leading space', '$ 3\r\nabc\r\n'],
    ['bulk length with trailing space', '$3 \r\nabc\r\n'],
    ['array length with space', '* 1\r\n:1\r\n'],
    ['fractional length', '$1.0\r\na\r\n'],
    ['boolean x', '#x\r\n'],
    ['empty boolean', '#\r\n'],
    ['boolean tt', '#tt\r\n'],
    ['boolean T', '#T\r\n'],
    ['bulk payload longer than its length', '$3\r\nabcd\r\n'],
    ['bulk payload followed by LF CR', '$3\r\nabc\n\r'],
    ['bulk payload followed by nothing like CRLF', '$3\r\nabcXY'],
    ['verbatim payload not followed by CRLF', '=5\r\ntxt:ab\r\n'],
    ['blob error not followed by CRLF', '!3\r\nERRxx'],
    ['integer with letters', ':12a\r\n'],
    ['empty integer', ':\r\n'],
    ['sign-only integer', ':-\r\n'],
    ['integer with space', ': 1\r\n'],
    ['fractional integer', ':1.5\r\n'],
    ['integer inside an array', '*2\r\n:1\r\n:x\r\n'],
    ['malformed double', ',abc\r\n'],
    ['empty double', ',\r\n'],
    ['double with two points', ',1.2.3\r\n'],
    ['double Infinity', ',Infinity\r\n'],
    ['malformed big number', '(12x\r\n'],
    ['empty big number', '(\r\n'],
    ['null with content', '_x\r\n'],
    ['verbatim without format', '=3\r\nabc\r\n'],
    ['verbatim without colon', '=5\r\ntxtab\r\n'],
    ['streamed string', '$?\r\n;3\r\nabc\r\n;0\r\n'],
    ['streamed array', '*?\r\n:1\r\n.\r\n'],
    ['streamed map', '%?\r\n.\r\n'],
    ['stream end marker', '.\r\n'],
    ['stream chunk marker', ';3\r\nabc\r\n'],
    ['garbage after a valid reply', '+OK\r\nGET x\r\n'],
  ];
  for (const [name, wire] of malformed) {
    it(`rejects ${name}`, () => expectMalformed(wire));
  }

  it('delivers the values before the error in earlier calls, then stays failed', () => {
    const d = new Resp3Decoder();
    expect(d.feed(bytes('+OK\r\n'))).toEqual(['OK']);
    expect(() => d.feed(bytes(':1\r\n:x\r\n'))).toThrow(Resp3ProtocolError);
    for (let i = 0; i < 3; i++) expect(() => d.feed(bytes(':1\r\n'))).toThrow(Resp3ProtocolError);
  });
});

describe('Resp3Decoder limits', () => {
  it('rejects a bulk length above maxBulkBytes from its header alone', () => {
    const limits = { maxBulkBytes: 1024 };
    for (const t of ['$', '=', '!']) {
      const d = new Resp3Decoder(limits);
      expect(() => d.feed(bytes(`${t}999999999\r\n`))).toThrow(Resp3ProtocolError);
      expect(() => d.feed(bytes('+OK\r\n'))).toThrow(Resp3ProtocolError);
      expectMalformed(`${t}1025\r\n`, limits);
    }
    const payload = 'a'.repeat(1024);
    expect(new Resp3Decoder(limits).feed(bytes(`$1024\r\n${payload}\r\n`))).toEqual([payload]);
    expect(() => new Resp3Decoder().feed(bytes('$67108865\r\n'))).toThrow(Resp3ProtocolError);
    expect(new Resp3Decoder().feed(bytes('$67108864\r\n'))).toEqual([]);
  });

  it('rejects absurd lengths as protocol errors, not range errors', () => {
    for (const wire of [
      '$99999999999999999999999\r\n',
      '*99999999999999999999999\r\n',
      '%9007199254740993\r\n',
    ]) {
      expect(() => new Resp3Decoder().feed(bytes(wire))).toThrow(Resp3ProtocolError);
    }
  });

  it('rejects an aggregate above maxElements from its header alone', () => {
    const limits = { maxElements: 4 };
    for (const t of ['*', '~', '>']) {
      expectMalformed(`${t}5\r\n`, limits);
      expect(new Resp3Decoder(limits).feed(bytes(`${t}4\r\n:1\r\n:2\r\n:3\r\n:4\r\n`))).toHaveLength(1);
    }
    // A map counts pairs, not keys and values.
    expectMalformed('%5\r\n', limits);
    expectMalformed('|5\r\n', limits);
    expect(
      new Resp3Decoder(limits).feed(bytes('%4\r\n:1\r\n:1\r\n:2\r\n:2\r\n:3\r\n:3\r\n:4\r\n:4\r\n')),
    ).toHaveLength(1);
    expect(() => new Resp3Decoder().feed(bytes('*16777217\r\n'))).toThrow(Resp3ProtocolError);
    expect(new Resp3Decoder().feed(bytes('*16777216\r\n'))).toEqual([]);
  });

  it('rejects nesting deeper than maxDepth', () => {
    const limits = { maxDepth: 3 };
    expect(new Resp3Decoder(limits).feed(bytes('*1\r\n*1\r\n*1\r\n:1\r\n'))).toEqual([[[[1]]]]);
    expect(new Resp3Decoder(limits).feed(bytes('*1\r\n%1\r\n~0\r\n:1\r\n'))).toHaveLength(1);
    expectMalformed('*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n', limits);
    expectMalformed('*1\r\n*1\r\n*1\r\n*0\r\n', limits);
    expectMalformed('>1\r\n%1\r\n~1\r\n|1\r\n', limits);
    const deep = '*1\r\n'.repeat(32) + ':1\r\n';
    expect(new Resp3Decoder().feed(bytes(deep))).toHaveLength(1);
    expect(() => new Resp3Decoder().feed(bytes('*1\r\n' + deep))).toThrow(Resp3ProtocolError);
  });

  it('rejects an overlong line before its end arrives', () => {
    const limits = { maxLineBytes: 8 };
    expect(new Resp3Decoder(limits).feed(bytes('+12345678\r\n-ERR 5678\r\n:12345678\r\n'))).toHaveLength(3);
    for (const t of ['+', '-', ':', ',', '(', '$', '*']) expectMalformed(`${t}123456789`, limits);
    // Byte by byte, the failure comes at the first byte past the limit.
    const d = new Resp3Decoder(limits);
    const line = bytes('+123456789');
    for (let i = 0; i < line.length - 1; i++) expect(d.feed(line.subarray(i, i + 1))).toEqual([]);
    expect(() => d.feed(line.subarray(line.length - 1))).toThrow(Resp3ProtocolError);
    expect(() => new Resp3Decoder().feed(bytes('+' + 'a'.repeat(65_537)))).toThrow(Resp3ProtocolError);
    const longest = 'a'.repeat(65_536);
    expect(new Resp3Decoder().feed(bytes(`+${longest}\r\n`))).toEqual([longest]);
  });
});

describe('Resp3Decoder fuzz', () => {
  /** Feeds `input` in random cuts; returns the exception thrown, if any. */
  function tryFeed(input: Buffer, rnd: () => number, limits?: Resp3Limits): unknown {
    const d = new Resp3Decoder(limits);
    try {
      for (let p = 0; p < input.length;) {
        const size = 1 + (rnd() % 16);
        d.feed(input.subarray(p, p + size));
        p += size;
      }
      return null;
    } catch (e) {
      return e;
    }
  }

  const alphabet = bytes('+-:,(#_$=!*~>%|.;?0123456789-tfinax \r\n\r\n');

  it('random byte strings yield values or protocol errors only', () => {
    const rnd = xorshift(12345);
    const others: unknown[] = [];
    for (let n = 0; n < 6000; n++) {
      const len = rnd() % 48;
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++)
        b[i] = rnd() % 3 === 0 ? rnd() & 255 : (alphabet[rnd() % alphabet.length] ?? 0);
      const e = tryFeed(b, rnd, n % 2 === 0 ? { maxBulkBytes: 64, maxElements: 8, maxDepth: 4 } : undefined);
      if (e !== null && !(e instanceof Resp3ProtocolError)) others.push(e);
    }
    expect(others).toEqual([]);
  });

  it('mutated valid frames yield values or protocol errors only', () => {
    const corpus = [
      '*2\r\n$5\r\nhello\r\n:42\r\n',
      '>2\r\n$10\r\ninvalidate\r\n*2\r\n$4\r\nkey1\r\n$4\r\nkey2\r\n',
      '>2\r\n$10\r\ninvalidate\r\n_\r\n',
      '%2\r\n+a\r\n,1.5e3\r\n(123456789012345678901\r\n#t\r\n',
      '|1\r\n+ttl\r\n:3600\r\n~2\r\n=8\r\ntxt:abcd\r\n!7\r\nERR bad\r\n',
      '*3\r\n*1\r\n*0\r\n$-1\r\n*-1\r\n-WRONGTYPE x\r\n:-9223372036854775808\r\n',
      ',inf\r\n,-inf\r\n,nan\r\n#f\r\n_\r\n+OK\r\n',
    ].map(bytes);
    const rnd = xorshift(777);
    const others: unknown[] = [];
    let decoded = 0;
    for (let n = 0; n < 6000; n++) {
      const src = corpus[rnd() % corpus.length] ?? Buffer.alloc(0);
      const b = [...src];
      const edits = 1 + (rnd() % 3);
      for (let k = 0; k < edits; k++) {
        const at = rnd() % (b.length + 1);
        const byte = rnd() % 2 === 0 ? rnd() & 255 : (alphabet[rnd() % alphabet.length] ?? 0);
        switch (rnd() % 5) {
          case 0:
            b[at] = byte;
            break;
          case 1:
            b.splice(at, 0, byte);
            break;
          case 2:
            b.splice(at, 1);
            break;
          case 3:
            b.length = at;
            break;
          default:
            b.splice(at, 0, ...b.slice(rnd() % (b.length + 1)));
        }
      }
      const e = tryFeed(Buffer.from(b), rnd, n % 3 === 0 ? { maxBulkBytes: 16, maxElements: 4 } : undefined);
      if (e === null) decoded++;
      else if (!(e instanceof Resp3ProtocolError)) others.push(e);
    }
    expect(others).toEqual([]);
    // The mutations must leave a fair share decodable, or the loop would test only the error paths.
    expect(decoded).toBeGreaterThan(300);
  });
});

describe('encodeCommand', () => {
  it('writes a RESP array of bulk strings', () => {
    expect(encodeCommand(['SET', 'k', 'v']).toString('latin1')).toBe(
      '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n',
    );
    expect(encodeCommand([]).toString('latin1')).toBe('*0\r\n');
    expect(encodeCommand(['']).toString('latin1')).toBe('*1\r\n$0\r\n\r\n');
  });

  it('counts UTF-8 bytes, not characters', () => {
    expect(encodeCommand(['\u20ac'])).toEqual(
      Buffer.from([...bytes('*1\r\n$3\r\n'), 0xe2, 0x82, 0xac, 13, 10]),
    );
    expect(encodeCommand(['\u{1d11e}']).subarray(0, 8).toString('latin1')).toBe('*1\r\n$4\r\n');
  });

  it('round-trips through the decoder, with binary, empty and multi-byte arguments', () => {
    const rnd = xorshift(99);
    const long = Array.from({ length: 1000 }, (_, i) => String.fromCharCode(32 + (i % 90))).join('');
    const args = [
      'HKEYS',
      '',
      'h\u00e9llo w\u00f6rld \u2713 \u{1d11e}',
      'a\r\nb',
      long,
      '\u65e5\u672c\u8a9e',
    ];
    const wire = encodeCommand([...args, Uint8Array.of(0x41, 0x0d, 0x0a, 0x42), Buffer.from('buf')]);
    expectDecodes(wire, [[...args, 'A\r\nB', 'buf']]);
    // Many commands pipelined, randomly cut.
    const commands = Array.from({ length: 200 }, (_, i) => [
      'HSET',
      `key:${i}`,
      '\u00e9'.repeat(i % 7),
      `${i}`,
    ]);
    const stream = Buffer.concat(commands.map(encodeCommand));
    const d = new Resp3Decoder();
    const got: Resp3Value[] = [];
    for (let p = 0; p < stream.length;) {
      const size = 1 + (rnd() % 100);
      got.push(...d.feed(stream.subarray(p, p + size)));
      p += size;
    }
    expect(got).toEqual(commands);
  });

  it('returns an independent buffer for Uint8Array arguments', () => {
    const arg = Uint8Array.of(1, 2, 3);
    const wire = encodeCommand([arg]);
    arg[0] = 9;
    expect([...wire.subarray(8, 11)]).toEqual([1, 2, 3]);
  });
});
