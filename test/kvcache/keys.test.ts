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
