/**
 * Cross-checks against an independent Python encoder/decoder (test/fixtures/kv-events/gen_frames.py,
 * on Debian's python3-msgpack, written from vLLM's and SGLang's msgspec classes): our decoder reads its
 * frames, our encoder writes its bytes, and its decoder reads ours.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/core/rng.js';
import type { KvEvent } from '../../../src/engine/core/types.js';
import { KvEventEncoder } from '../../../src/engine/kv-events/encode.js';
import { readMsgpack, type MsgValue } from '../../../src/kvcache/events/msgpack.js';
import {
  decodeKvEventMessage,
  type DecodedKvEventMessage,
  type ExtraKey,
  type KvEventDialect,
} from '../../../src/kvcache/events/decode.js';
import { randomEvents, seqBytes } from '../../engine/kv-events/helpers.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

interface EngineEventJson {
  type: KvEvent['type'];
  blockHashes?: string[];
  parentBlockHash?: string | null;
  tokenIds?: number[];
  blockSize?: number;
  loraName?: string | null;
  medium?: 'GPU';
  extraKeys?: (string[] | null)[] | null;
}

interface FixtureCase {
  name: string;
  dialect: KvEventDialect;
  frames: [string, string, string];
  error: string | null;
  expected?: Json;
  engineEvents?: EngineEventJson[];
  engineOptions?: { mapFormat: boolean; dataParallelRank: number };
}

const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/kv-events');
const SCRIPT = join(fixtureDir, 'gen_frames.py');
const framesText = readFileSync(join(fixtureDir, 'frames.json'), 'utf8');
const fixture = JSON.parse(framesText) as { cases: FixtureCase[] };
const PYTHON = '/usr/bin/python3';

function pythonWithMsgpack(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ['-c', 'import msgpack'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const havePython = pythonWithMsgpack();

function extraJson(k: ExtraKey): Json {
  if (Array.isArray(k)) return k.map(extraJson);
  if (k instanceof Uint8Array) return { hex: Buffer.from(k).toString('hex') };
  if (typeof k === 'bigint') return k.toString();
  return k as Json;
}

/** The normalized JSON the Python side writes: hashes as decimal strings, bytes as hex. */
function toJson(m: DecodedKvEventMessage): Json {
  return {
    topic: m.topic,
    seq: m.seq.toString(),
    batch: {
      ts: m.batch.ts,
      dataParallelRank: m.batch.dataParallelRank,
      events: m.batch.events.map((e): Json => {
        if (e.type === 'AllBlocksCleared') return { type: e.type };
        const hashes = e.blockHashes.map((h) => h.toString());
        if (e.type === 'BlockRemoved')
          return { type: e.type, blockHashes: hashes, medium: e.medium, groupIdx: e.groupIdx };
        return {
          type: e.type,
          blockHashes: hashes,
          parentBlockHash: e.parentBlockHash === null ? null : e.parentBlockHash.toString(),
          tokenIds: [...e.tokenIds],
          blockSize: e.blockSize,
          loraId: e.loraId,
          medium: e.medium,
          loraName: e.loraName,
          extraKeys:
            e.extraKeys === null ? null : e.extraKeys.map((b) => (b === null ? null : b.map(extraJson))),
          groupIdx: e.groupIdx,
          kvCacheSpecKind: e.kvCacheSpecKind,
          kvCacheSpecSlidingWindow: e.kvCacheSpecSlidingWindow,
          cacheSalt: e.cacheSalt,
        };
      }),
    },
  };
}

function framesOf(c: FixtureCase): Buffer[] {
  return c.frames.map((h) => Buffer.from(h, 'hex'));
}

function engineEvent(e: EngineEventJson): KvEvent {
  if (e.type === 'AllBlocksCleared') return { type: e.type };
  const blockHashes = e.blockHashes!.map((h) => BigInt(h));
  if (e.type === 'BlockRemoved') return { type: e.type, blockHashes, medium: 'GPU' };
  return {
    type: e.type,
    blockHashes,
    parentBlockHash: e.parentBlockHash == null ? null : BigInt(e.parentBlockHash),
    tokenIds: e.tokenIds!,
    blockSize: e.blockSize!,
    loraName: e.loraName ?? null,
    medium: 'GPU',
    extraKeys: e.extraKeys ?? null,
  };
}

function pythonDecode(requests: { dialect: KvEventDialect; frames: string[] }[]): Json[] {
  const out = execFileSync(PYTHON, [SCRIPT, 'decode'], { input: JSON.stringify(requests), encoding: 'utf8' });
  return JSON.parse(out) as Json[];
}

describe('the Python reference frames', () => {
  it('cover both encodings, a hash ≥ 2^63, bytes hashes, LoRA names, old and new vLLM layouts and SGLang', () => {
    const names = fixture.cases.map((c) => c.name).join('\n');
    for (const word of [
      'positional',
      'map',
      'uint64',
      'bytes hashes',
      'LoRA',
      'five-field',
      'longer',
      'SGLang',
    ]) {
      expect(names).toContain(word);
    }
    const text = JSON.stringify(fixture);
    expect(text).toContain('AllBlocksCleared');
    expect(text).toContain('sql-adapter');
    expect(fixture.cases.some((c) => c.error !== null)).toBe(true);
    expect(fixture.cases.filter((c) => c.engineEvents !== undefined)).toHaveLength(2);
  });

  for (const c of fixture.cases) {
    it(`decodes "${c.name}"`, () => {
      const frames = framesOf(c);
      const m = decodeKvEventMessage(frames, { dialect: c.dialect });
      if (c.error !== null) {
        // The Python reference (like llm-d) refuses the whole batch; we skip the one bad event, with
        // that reason, and keep the others.
        const all = readMsgpack(frames[2]!, { maxDepth: 16, maxItems: 1 << 20 }) as MsgValue[];
        const count = (all[1] as MsgValue[]).length;
        expect(m.batch.skipped.map((s) => s.reason)).toEqual([c.error]);
        expect(m.batch.events).toHaveLength(count - 1);
        return;
      }
      expect(m.batch.skipped).toEqual([]);
      expect(toJson(m)).toEqual(c.expected);
    });
  }

  for (const c of fixture.cases.filter((x) => x.engineEvents !== undefined)) {
    it(`encodes "${c.name}" to exactly the Python bytes`, () => {
      const enc = new KvEventEncoder(c.engineOptions);
      const payload = enc.encode(1_700_000_000, c.engineEvents!.map(engineEvent));
      expect(payload.toString('hex')).toBe(c.frames[2]);
    });
  }
});

describe('the Python reference script', () => {
  it.skipIf(!havePython)(
    'regenerates exactly the committed frames (skipped when /usr/bin/python3 lacks python3-msgpack)',
    () => {
      const out = execFileSync(PYTHON, [SCRIPT, '--stdout'], { encoding: 'utf8' });
      expect(JSON.parse(out)).toEqual(JSON.parse(framesText));
    },
  );

  it.skipIf(!havePython)(
    'decodes our encoder’s frames, in both layouts, to what our decoder reads (skipped without python3-msgpack)',
    () => {
      const rng = new Rng(99);
      const ours: Buffer[][] = [];
      for (let i = 0; i < 60; i++) {
        const enc = new KvEventEncoder({ mapFormat: i % 2 === 1, dataParallelRank: i % 3 === 0 ? null : 0 });
        const payload = enc.encode(1_700_000_000 + i / 7, randomEvents(rng, rng.int(1, 10)));
        ours.push([Buffer.from(`kv@pod-${i}@model`), seqBytes(i * 1_000_003), payload]);
      }
      const theirs = pythonDecode(
        ours.map((f) => ({ dialect: 'vllm', frames: f.map((b) => b.toString('hex')) })),
      );
      expect(theirs).toEqual(ours.map((f) => toJson(decodeKvEventMessage(f))));
    },
  );
});
