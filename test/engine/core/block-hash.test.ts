import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  blockExtraKeys,
  computeBlockHashes,
  computeNoneHash,
  externalBlockHash,
  appendBlockHashes,
  type BlockHash,
} from '../../../src/engine/core/block-hash.js';
import type { PrefixHashAlgo } from '../../../src/engine/core/types.js';

interface VectorCase {
  name: string;
  algo: PrefixHashAlgo;
  blockSize: number;
  hashSeed: string | null;
  noneHash: string;
  tokenIds: number[];
  loraName: string | null;
  cacheSalt: string | null;
  blockHashes: string[];
  externalHashes: string[];
}

const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/block-hashes');
const vectorsText = readFileSync(join(fixtureDir, 'vectors.json'), 'utf8');
const vectors = JSON.parse(vectorsText) as { cases: VectorCase[] };
const PYTHON = '/usr/bin/python3';

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function pythonWithCbor2(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ['-c', 'import cbor2, xxhash'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('block hashes match the Python reference vectors', () => {
  it('covers both algorithms, seeded and unseeded NONE_HASH, salt, LoRA and both block sizes', () => {
    const cs = vectors.cases;
    expect(cs.some((c) => c.algo === 'sha256_cbor' && c.hashSeed !== null)).toBe(true);
    expect(cs.some((c) => c.algo === 'xxhash_cbor' && c.hashSeed === null)).toBe(true);
    expect(cs.some((c) => c.cacheSalt !== null)).toBe(true);
    expect(cs.some((c) => c.loraName !== null)).toBe(true);
    expect(new Set(cs.map((c) => c.blockSize))).toEqual(new Set([4, 16]));
  });

  for (const c of vectors.cases) {
    it(`agrees on "${c.name}"`, () => {
      const noneHash =
        c.hashSeed === null
          ? new Uint8Array(Buffer.from(c.noneHash, 'hex'))
          : computeNoneHash(c.algo, c.hashSeed);
      expect(hex(noneHash)).toBe(c.noneHash);
      const hashes = computeBlockHashes(
        {
          algo: c.algo,
          noneHash,
          blockSize: c.blockSize,
          loraName: c.loraName ?? undefined,
          cacheSalt: c.cacheSalt ?? undefined,
        },
        c.tokenIds,
      );
      expect(hashes.map((h) => hex(h.digest))).toEqual(c.blockHashes);
      expect(hashes.map((h) => externalBlockHash(h.digest).toString())).toEqual(c.externalHashes);
    });
  }
});

describe('block hashing', () => {
  it('gives the same hashes when tokens arrive one at a time as when hashed at once', () => {
    const c = vectors.cases.find((v) => v.blockSize === 4 && v.cacheSalt !== null && v.loraName !== null);
    if (c === undefined) throw new Error('fixture lacks a salted LoRA case');
    const params = {
      algo: c.algo,
      noneHash: computeNoneHash(c.algo, c.hashSeed ?? '0'),
      blockSize: c.blockSize,
      loraName: c.loraName ?? undefined,
      cacheSalt: c.cacheSalt ?? undefined,
    };
    const all = computeBlockHashes(params, c.tokenIds);
    const grown: BlockHash[] = [];
    const tokens: number[] = [];
    for (const t of c.tokenIds) {
      tokens.push(t);
      appendBlockHashes(params, tokens, tokens.length, grown);
    }
    expect(grown.map((h) => h.key)).toEqual(all.map((h) => h.key));
  });

  it('puts the LoRA name first and the salt on block 0 only, and null when both are absent', () => {
    expect(blockExtraKeys(0, undefined, undefined)).toBeNull();
    expect(blockExtraKeys(0, undefined, '')).toBeNull();
    expect(blockExtraKeys(0, undefined, 's')).toEqual(['s']);
    expect(blockExtraKeys(1, undefined, 's')).toBeNull();
    expect(blockExtraKeys(0, 'l', 's')).toEqual(['l', 's']);
    expect(blockExtraKeys(3, 'l', 's')).toEqual(['l']);
  });

  it('draws a random 32-byte NONE_HASH when no seed is given', () => {
    const a = computeNoneHash('sha256_cbor', undefined);
    const b = computeNoneHash('sha256_cbor', undefined);
    expect(a.length).toBe(32);
    expect(hex(a)).not.toBe(hex(b));
  });

  it('takes the external hash from the last eight digest bytes, big-endian', () => {
    const d = new Uint8Array(32);
    d[24] = 0x80;
    d[31] = 0x01;
    expect(externalBlockHash(d)).toBe(0x8000000000000001n);
  });
});

describe('the vector script', () => {
  const available = pythonWithCbor2();
  it.skipIf(!available)(
    'regenerates exactly the committed vectors (skipped when /usr/bin/python3 lacks cbor2 or xxhash)',
    () => {
      const out = execFileSync(PYTHON, [join(fixtureDir, 'gen_vectors.py'), '--stdout'], {
        encoding: 'utf8',
      });
      expect(JSON.parse(out)).toEqual(JSON.parse(vectorsText));
    },
  );
});
