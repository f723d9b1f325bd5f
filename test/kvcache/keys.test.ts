/**
 * Request keys against vectors from an independent Python implementation of llm-d's token processor
 * (`test/fixtures/request-keys/gen_vectors.py`: cbor2 + FNV-64a, xxhash), which CI re-runs so that the
 * committed vectors cannot drift from their generator.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/core/rng.js';
import {
  TokenProcessor,
  bigIntToKey,
  keyToDecimal,
  keysToBigInts,
  type HashAlgorithm,
} from '../../src/kvcache/keys.js';

interface Case {
  algo: HashAlgorithm;
  seed: string;
  blockSize: number;
  model: string;
  tokens: number[];
  extras?: (string[] | null)[];
  parent?: string;
  keys: string[];
}

/** Canonical CBOR head (major type, argument) in shortest form. */
function cborHead(major: number, v: bigint): number[] {
  const m = major << 5;
  if (v < 24n) return [m | Number(v)];
  const [tag, n] = v < 0x100n ? [24, 1] : v < 0x10000n ? [25, 2] : v < 0x100000000n ? [26, 4] : [27, 8];
  const out = [m | tag];
  for (let i = n - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

function cborText(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...cborHead(3, BigInt(b.length)), ...b];
}

function fnv64a(bytes: readonly number[]): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

/** A slow, direct reference for `cbor-fnv`: CBOR `[parent, tokens, extra]` as bytes, then FNV-64a. */
function referenceKeys(
  seed: string,
  bs: number,
  model: string,
  tokens: readonly number[],
  extras: readonly (readonly string[] | null)[] | null,
  parent: bigint | null,
): bigint[] {
  let h =
    parent ??
    fnv64a([0x83, ...cborHead(0, fnv64a([...new TextEncoder().encode(seed)])), 0xf6, ...cborText(model)]);
  const out: bigint[] = [];
  for (let b = 0; b < Math.floor(tokens.length / bs); b++) {
    const bytes = [0x83, ...cborHead(0, h), ...cborHead(4, BigInt(bs))];
    for (const t of tokens.slice(b * bs, (b + 1) * bs)) bytes.push(...cborHead(0, BigInt(t)));
    const extra = extras?.[b] ?? null;
    if (extra === null) bytes.push(0xf6);
    else {
      bytes.push(...cborHead(4, BigInt(extra.length)));
      for (const s of extra) bytes.push(0xa1, ...cborText('Hash'), ...cborText(s));
    }
    h = fnv64a(bytes);
    out.push(h);
  }
  return out;
}

const dir = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/request-keys');
const fixture = JSON.parse(readFileSync(join(dir, 'vectors.json'), 'utf8')) as { cases: Case[] };

describe('request keys', () => {
  it('are what the generator writes (the committed vectors are current)', () => {
    const out = execFileSync(
      '/usr/bin/python3',
      [
        '-c',
        [
          'import json, sys',
          `sys.path.insert(0, ${JSON.stringify(dir)})`,
          'import gen_vectors',
          'print(json.dumps(gen_vectors.cases()))',
        ].join('\n'),
      ],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual(fixture.cases);
  });

  for (const c of fixture.cases) {
    const what = `${c.algo}, seed "${c.seed}", block ${c.blockSize}, ${c.tokens.length} tokens${c.extras ? ', extras' : ''}${c.parent ? ', parent' : ''}`;
    it(`match the reference: ${what}`, () => {
      const tp = new TokenProcessor({
        blockSizeTokens: c.blockSize,
        hashSeed: c.seed,
        hashAlgorithm: c.algo,
      });
      const parent = c.parent === undefined ? null : bigIntToKey(BigInt(c.parent));
      const keys = tp.keys(c.tokens, c.model, parent, c.extras ?? null);
      expect(keysToBigInts(keys).map(String)).toEqual(c.keys);
    });
  }

  it('match a direct reference on random prompts (every CBOR width, extras, salts, parents)', () => {
    const rng = new Rng(20240917);
    const below = (n: number): number => rng.int(0, n - 1);
    const edges = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 24 - 1, 2 ** 24, 2 ** 31, 2 ** 32 - 1];
    const token = (): number => {
      switch (below(7)) {
        case 0:
          return edges[below(edges.length)]!;
        case 1:
          return below(24);
        case 2:
          return rng.int(24, 255);
        case 3:
          return rng.int(256, 65535);
        case 4:
          return rng.int(65536, 2 ** 24 - 1);
        case 5:
          return rng.nextU32();
        default:
          return below(152_000);
      }
    };
    const strings = ['', 'salt', 'x'.repeat(30), 'ümlaut-€-😀', 'a'.repeat(300)];
    for (let c = 0; c < 300; c++) {
      const bs = [1, 2, 3, 16, 16, 16, 23, 24, 31, 300][below(10)]!;
      const seed = below(3) === 0 ? 'seed-' + below(100) : '';
      const model = below(2) === 0 ? 'Qwen/Qwen3-0.6B' : 'lora-' + below(5);
      const tokens = Array.from({ length: below(12 * bs) }, token);
      const n = Math.floor(tokens.length / bs);
      const extras =
        below(3) === 0
          ? Array.from({ length: n }, () =>
              below(3) === 0
                ? Array.from({ length: rng.int(1, 3) }, () => strings[below(strings.length)]!)
                : null,
            )
          : null;
      const parentKinds = [
        null,
        BigInt(rng.nextU32()),
        (BigInt(rng.nextU32()) << 32n) | BigInt(rng.nextU32()),
      ];
      const parent = parentKinds[below(3)]!;
      const want = referenceKeys(seed, bs, model, tokens, extras, parent).map(String);
      const tp = new TokenProcessor({ blockSizeTokens: bs, hashSeed: seed });
      const p = parent === null ? null : bigIntToKey(parent);
      expect(keysToBigInts(tp.keys(tokens, model, p, extras)).map(String)).toEqual(want);
      expect(keysToBigInts(tp.keys(Uint32Array.from(tokens), model, p, extras)).map(String)).toEqual(want);
    }
  });

  it('chain: keys of a prompt continue from the keys of its prefix', () => {
    const tp = new TokenProcessor({ blockSizeTokens: 4 });
    const toks = Array.from({ length: 20 }, (_, i) => i * 31);
    const all = tp.keys(toks, 'm');
    const head = tp.keys(toks.slice(0, 8), 'm');
    const tail = tp.keys(toks.slice(8), 'm', [head[2]!, head[3]!]);
    expect([...head, ...tail]).toEqual([...all]);
  });

  it('depend on the model, the seed and the extras, and drop the partial block', () => {
    const toks = Array.from({ length: 9 }, (_, i) => i);
    const a = new TokenProcessor({ blockSizeTokens: 4 });
    expect(a.keys(toks, 'm').length).toBe(4);
    expect(a.keys(toks, 'm')).not.toEqual(a.keys(toks, 'n'));
    expect(a.keys(toks, 'm')).not.toEqual(
      new TokenProcessor({ blockSizeTokens: 4, hashSeed: 's' }).keys(toks, 'm'),
    );
    expect(a.keys(toks, 'm', null, [['salt'], null])).not.toEqual(a.keys(toks, 'm'));
    expect(a.keys([1, 2, 3], 'm').length).toBe(0);
  });

  it('refuse a bad block size and extras of the wrong length', () => {
    expect(() => new TokenProcessor({ blockSizeTokens: 0 })).toThrow(/positive integer/);
    expect(() => new TokenProcessor({ blockSizeTokens: 1.5 })).toThrow(/positive integer/);
    expect(() => new TokenProcessor({ blockSizeTokens: 4 }).keys([1, 2, 3, 4], 'm', null, [])).toThrow(
      /1 full blocks/,
    );
  });

  it('print as the decimal uint64 llm-d uses for Redis keys', () => {
    expect(keyToDecimal(0xffffffff, 0xffffffff)).toBe('18446744073709551615');
    expect(keyToDecimal(0, 7)).toBe('7');
    expect(bigIntToKey(-1n)).toEqual([0xffffffff, 0xffffffff]);
  });
});
