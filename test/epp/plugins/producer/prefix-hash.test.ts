import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { xxh64 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { blockHashAt, hashPrompt, xxh64Words } from '../../../../src/epp/plugins/producer/prefix-hash.js';
import { packStrings } from '../../../../src/epp/plugins/producer/token/estimate.js';

interface ChainCase {
  name: string;
  model: string;
  cacheSalt: string;
  blockSize: number;
  maxBlocks: number | null;
  tokens: number[];
  hashes: string[];
}
interface EstimateCase {
  name: string;
  text: string;
  model: string;
  blockSize: number;
  tokens: number[];
  hashes: string[];
}
interface Vectors {
  raw: { len: number; xxh64: string }[];
  chains: ChainCase[];
  estimates: EstimateCase[];
}

const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/prefix-hash');
const vectorsText = readFileSync(join(fixtureDir, 'vectors.json'), 'utf8');
const vectors = JSON.parse(vectorsText) as Vectors;
const PYTHON = '/usr/bin/python3';

const hex = (hashes: Uint32Array): string[] =>
  Array.from({ length: hashes.length / 2 }, (_, i) => blockHashAt(hashes, i).toString(16).padStart(16, '0'));

function patternBytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 131 + 7) % 256);
}

/** The chain computed with @node-rs/xxhash, one call per hash: a second, independent reference. */
function nodeRsChain(
  tokens: Uint32Array,
  blockSize: number,
  maxBlocks: number,
  model: string,
  salt = '',
): string[] {
  let prev = xxh64(Buffer.from(model + salt, 'utf8'));
  const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  const out: string[] = [];
  for (let i = 0; i < tokens.length && out.length < maxBlocks; i += blockSize) {
    const id = xxh64(bytes.subarray(4 * i, 4 * Math.min(tokens.length, i + blockSize)));
    const pair = Buffer.alloc(16);
    pair.writeBigUInt64LE(id, 0);
    pair.writeBigUInt64LE(prev, 8);
    prev = xxh64(pair);
    out.push(prev.toString(16).padStart(16, '0'));
  }
  return out;
}

function pythonWithXxhash(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ['-c', 'import xxhash'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('XXH64', () => {
  it('matches the Python reference for every length from 0 to 71 and a few long inputs', () => {
    for (const { len, xxh64: want } of vectors.raw) {
      const [lo, hi] = xxh64Words(patternBytes(len));
      const got = ((BigInt(hi) << 32n) | BigInt(lo)).toString(16).padStart(16, '0');
      expect(got, `length ${len}`).toBe(want);
    }
  });

  it('matches @node-rs/xxhash on random inputs', () => {
    let x = 12345;
    for (let n = 0; n < 200; n++) {
      const len = (n * 37) % 700;
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
      const [lo, hi] = xxh64Words(b);
      expect((BigInt(hi) << 32n) | BigInt(lo)).toBe(xxh64(b));
    }
  });
});

describe('the block-hash chain', () => {
  it('covers salts, limits, partial blocks, non-ASCII names and ids above 2^31', () => {
    const cs = vectors.chains;
    expect(cs.some((c) => c.cacheSalt !== '')).toBe(true);
    expect(cs.some((c) => c.maxBlocks !== null)).toBe(true);
    expect(cs.some((c) => c.tokens.length % c.blockSize !== 0)).toBe(true);
    expect(cs.some((c) => Buffer.byteLength(c.model) > c.model.length)).toBe(true);
    expect(cs.some((c) => c.tokens.some((t) => t >= 2 ** 31))).toBe(true);
  });

  for (const c of vectors.chains) {
    it(`agrees with the Python reference on "${c.name}"`, () => {
      const tokens = Uint32Array.from(c.tokens);
      const got = hashPrompt(tokens, c.blockSize, c.maxBlocks ?? Infinity, c.model, c.cacheSalt);
      expect(hex(got)).toEqual(c.hashes);
    });
  }

  for (const c of vectors.estimates) {
    it(`hashes estimated pseudo-tokens like the Python reference ("${c.name}")`, () => {
      const tokens = packStrings([c.text]);
      expect(Array.from(tokens)).toEqual(c.tokens);
      expect(hex(hashPrompt(tokens, c.blockSize, Infinity, c.model))).toEqual(c.hashes);
    });
  }

  it('agrees with a chain built on @node-rs/xxhash for many sizes and block sizes', () => {
    const tokens = new Uint32Array(5000);
    for (let i = 0; i < tokens.length; i++) tokens[i] = Math.imul(i + 1, 2654435761) >>> 0;
    for (const n of [1, 2, 63, 64, 65, 127, 1000, 5000]) {
      for (const bs of [1, 7, 16, 64, 256]) {
        const t = tokens.subarray(0, n);
        expect(hex(hashPrompt(t, bs, Infinity, 'model', 'salt'))).toEqual(
          nodeRsChain(t, bs, Infinity, 'model', 'salt'),
        );
      }
    }
  });

  it('hashes a prompt that is a view into a larger buffer from its own first token', () => {
    const all = Uint32Array.from({ length: 300 }, (_, i) => i * 7);
    const view = all.subarray(10, 210);
    expect(hex(hashPrompt(view, 64, Infinity, 'm'))).toEqual(
      hex(hashPrompt(view.slice(), 64, Infinity, 'm')),
    );
  });

  it('stops at maxBlocks; 0 hashes nothing, Infinity everything', () => {
    const t = Uint32Array.from({ length: 1000 }, (_, i) => i);
    expect(hashPrompt(t, 64, 3, 'm').length).toBe(6);
    expect(hashPrompt(t, 64, 0, 'm').length).toBe(0);
    expect(hashPrompt(t, 64, Infinity, 'm').length).toBe(2 * 16);
    expect(hashPrompt(t, 64, 100, 'm').length).toBe(2 * 16);
  });

  it('is a chain: a shared prefix gives shared leading hashes, and model or salt change them all', () => {
    const a = Uint32Array.from({ length: 256 }, (_, i) => i);
    const b = a.slice();
    b[200] = 9999;
    const ha = hex(hashPrompt(a, 64, Infinity, 'm'));
    const hb = hex(hashPrompt(b, 64, Infinity, 'm'));
    expect(hb.slice(0, 3)).toEqual(ha.slice(0, 3));
    expect(hb[3]).not.toBe(ha[3]);
    const other = hex(hashPrompt(a, 64, Infinity, 'other-model'));
    const salted = hex(hashPrompt(a, 64, Infinity, 'm', 'salt'));
    for (let i = 0; i < ha.length; i++) {
      expect(other[i]).not.toBe(ha[i]);
      expect(salted[i]).not.toBe(ha[i]);
    }
  });

  it('survives prompts larger than the current memory (growing it) and is unchanged afterwards', () => {
    const small = Uint32Array.from({ length: 100 }, (_, i) => i);
    const before = hex(hashPrompt(small, 64, Infinity, 'm'));
    const big = Uint32Array.from({ length: 600_000 }, (_, i) => i ^ 0x5bd1e995);
    expect(hashPrompt(big, 64, Infinity, 'm').length).toBe(2 * Math.ceil(600_000 / 64));
    expect(hex(hashPrompt(small, 64, Infinity, 'm'))).toEqual(before);
  });

  it('rejects a block size below 1', () => {
    expect(() => hashPrompt(new Uint32Array(4), 0, Infinity, 'm')).toThrow(RangeError);
  });

  it.skipIf(!pythonWithXxhash())(
    'vectors.json is what gen_vectors.py produces (skipped without /usr/bin/python3 and python3-xxhash)',
    () => {
      const out = execFileSync(PYTHON, [join(fixtureDir, 'gen_vectors.py'), '--stdout'], {
        encoding: 'utf8',
      });
      expect(out).toBe(vectorsText);
    },
  );
});
