import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../../src/core/log.js';
import {
  INFLIGHT_LOAD,
  PREFIX_CACHE_MATCH_INFO,
  type PrefixCacheMatchInfo,
} from '../../../../src/epp/framework/data-keys.js';
import type { PluginHandle } from '../../../../src/epp/framework/plugin.js';
import { PrefixCacheScorer, TYPE, definition } from '../../../../src/epp/plugins/scorer/prefix-cache.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

function info(match: number[], total: number, blockSizeTokens = 16): PrefixCacheMatchInfo {
  return { totalBlocks: total, blockSizeTokens, matchBlocks: Int32Array.from(match) };
}

function scores(
  params: unknown,
  m: PrefixCacheMatchInfo | undefined,
  n = m?.matchBlocks.length ?? 2,
): number[] {
  const req = makeRequest();
  if (m !== undefined) req.state.write(PREFIX_CACHE_MATCH_INFO, m);
  const eps = makeEndpoints(n);
  const out = new Float64Array(n);
  create<PrefixCacheScorer>(definition, params).score(req, eps, out);
  return [...out];
}

function loggingHandle(): { handle: PluginHandle; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { handle: { ...testHandle(), logger: createLogger('warn', 'test', sink) }, lines };
}

describe('prefix-cache-scorer', () => {
  it('scores the match ratio matchBlocks/totalBlocks by default (matchLengthWeight 0)', () => {
    expect(scores({}, info([0, 2, 5, 8], 8))).toEqual([0, 0.25, 0.625, 1]);
  });

  it('gives endpoints beyond the match array 0', () => {
    expect(scores({}, info([4], 8), 3)).toEqual([0.5, 0, 0]);
  });

  it('scores 0 without match info or for an empty prompt', () => {
    expect(scores({}, undefined)).toEqual([0, 0]);
    expect(scores({}, info([0, 0], 0))).toEqual([0, 0]);
  });

  it('blends in the squared match length: w·min(1, blocks·blockSize/scale)² + (1−w)·ratio', () => {
    // 16-token blocks, default scale 8192 tokens.
    const m = info([0, 128, 256, 1024], 1024);
    const w = 0.4;
    const want = [0, 128, 256, 1024].map((b) => {
      const len = Math.min(1, (b * 16) / 8192);
      return w * len * len + (1 - w) * (b / 1024);
    });
    const got = scores({ matchLengthWeight: w }, m);
    want.forEach((x, i) => expect(got[i]).toBeCloseTo(x, 12));
    expect(got[2]).toBeCloseTo(0.4 * 0.25 + 0.6 * 0.25, 12);
  });

  it('honours matchLengthScaleTokens', () => {
    const got = scores({ matchLengthWeight: 1, matchLengthScaleTokens: 64 }, info([1, 2, 8], 100, 16));
    expect(got).toEqual([0.0625, 0.25, 1]);
  });

  it('gives the length term nothing when the producer did not know the block size', () => {
    const got = scores({ matchLengthWeight: 0.5 }, info([10, 5], 10, 0));
    expect(got).toEqual([0.5, 0.25]);
  });

  it('reads the match info of the producer named by prefixMatchInfoProducerName', () => {
    const req = makeRequest();
    req.state.write(PREFIX_CACHE_MATCH_INFO, info([1, 0], 1));
    req.state.writeAs(PREFIX_CACHE_MATCH_INFO, 'precise', info([0, 1], 1));
    const out = new Float64Array(2);
    create<PrefixCacheScorer>(definition, { prefixMatchInfoProducerName: 'precise' }).score(
      req,
      makeEndpoints(2),
      out,
    );
    expect([...out]).toEqual([0, 1]);
  });

  it('consumes PrefixCacheMatchInfo, so the loader adds approx-prefix-cache-producer', () => {
    const s = create<PrefixCacheScorer>(definition);
    expect(s.consumes).toEqual([PREFIX_CACHE_MATCH_INFO]);
    expect(PREFIX_CACHE_MATCH_INFO.defaultProducer).toBe('approx-prefix-cache-producer');
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('affinity');
  });

  const legacy: [string, Record<string, unknown>, Record<string, unknown> | undefined][] = [
    ['no legacy parameter', { matchLengthWeight: 0.2 }, undefined],
    [
      "llm-d's seed config (hashBlockSize 5, maxPrefixBlocksToMatch 256)",
      { hashBlockSize: 5, maxPrefixBlocksToMatch: 256 },
      { blockSizeTokens: 2, autoTune: false, maxPrefixBlocksToMatch: 256, maxPrefixTokensToMatch: 0 },
    ],
    [
      'hashBlockSize 64 characters = 16 tokens',
      { hashBlockSize: 64 },
      { blockSizeTokens: 16, autoTune: false },
    ],
    [
      'hashBlockSize below 4 characters = 1 token',
      { hashBlockSize: 1 },
      { blockSizeTokens: 1, autoTune: false },
    ],
    ['blockSize in tokens', { blockSize: 32 }, { blockSizeTokens: 32, autoTune: false }],
    ['lruCapacityPerServer', { lruCapacityPerServer: 1000 }, { lruCapacityPerServer: 1000 }],
    [
      'maxPrefixBlocksToMatch 0 (unlimited)',
      { maxPrefixBlocksToMatch: 0 },
      { maxPrefixBlocksToMatch: 0, maxPrefixTokensToMatch: 0 },
    ],
  ];

  it.each(legacy)('hands legacy parameters to the producer: %s', (_title, params, want) => {
    const s = create<PrefixCacheScorer>(definition, params);
    expect(s.producerParams(PREFIX_CACHE_MATCH_INFO)).toEqual(want);
    expect(s.producerParams(INFLIGHT_LOAD)).toBeUndefined();
  });

  it('warns once when legacy parameters are used, naming them, and not otherwise', () => {
    const { handle, lines } = loggingHandle();
    const s = create<PrefixCacheScorer>(
      definition,
      { hashBlockSize: 5, maxPrefixBlocksToMatch: 256 },
      handle,
    );
    s.producerParams(PREFIX_CACHE_MATCH_INFO);
    s.score(makeRequest(), makeEndpoints(1), new Float64Array(1));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/deprecated/);
    expect(lines[0]).toMatch(/hashBlockSize/);
    expect(lines[0]).toMatch(/approx-prefix-cache-producer/);
    const quiet = loggingHandle();
    create<PrefixCacheScorer>(definition, {}, quiet.handle);
    expect(quiet.lines).toHaveLength(0);
  });

  it('still scores from the match info when legacy parameters are given', () => {
    expect(scores({ hashBlockSize: 5 }, info([1, 2], 4))).toEqual([0.25, 0.5]);
  });

  const bad: [string, unknown][] = [
    ['matchLengthWeight above 1', { matchLengthWeight: 1.1 }],
    ['a negative matchLengthWeight', { matchLengthWeight: -0.5 }],
    ['matchLengthScaleTokens 0', { matchLengthScaleTokens: 0 }],
    ['hashBlockSize 0', { hashBlockSize: 0 }],
    ['a fractional blockSize', { blockSize: 1.5 }],
    ['a negative maxPrefixBlocksToMatch', { maxPrefixBlocksToMatch: -1 }],
    ['lruCapacityPerServer 0', { lruCapacityPerServer: 0 }],
    ['hashBlockSize together with blockSize', { hashBlockSize: 64, blockSize: 16 }],
    ['an unknown field', { blockSizeTokens: 16 }],
  ];

  it.each(bad)('rejects %s', (_title, params) => {
    expect(() => create(definition, params)).toThrow();
  });
});
