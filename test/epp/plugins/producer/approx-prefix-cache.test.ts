import { describe, expect, it } from 'vitest';
import {
  PREFIX_CACHE_MATCH_INFO,
  TOKENIZED_REQUEST,
  type TokenizedRequest,
} from '../../../../src/epp/framework/data-keys.js';
import type { InferenceRequest } from '../../../../src/epp/framework/request.js';
import {
  ApproxPrefixCacheProducer,
  definition,
  MIN_BLOCK_SIZE_TOKENS,
  params,
  TYPE,
} from '../../../../src/epp/plugins/producer/approx-prefix-cache.js';
import { hashPrompt } from '../../../../src/epp/plugins/producer/prefix-hash.js';
import { create, makeEndpoint, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';
import { handleWithRemovals, scheduled } from './fixtures.js';

const DEFAULTS = {
  blockSizeTokens: 16,
  autoTune: true,
  maxPrefixTokensToMatch: 131072,
  maxPrefixBlocksToMatch: 2048,
  lruCapacityPerServer: 31250,
};

function tokens(n: number, offset = 0): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => i + offset);
}

function tokenized(...prompts: Uint32Array[]): TokenizedRequest {
  return { tokenCount: prompts.reduce((n, p) => n + p.length, 0), prompts, backend: 'estimate' };
}

function request(t: TokenizedRequest, init: Parameters<typeof makeRequest>[0] = {}): InferenceRequest {
  const req = makeRequest(init);
  req.state.write(TOKENIZED_REQUEST, t);
  return req;
}

function producer(p: Record<string, unknown> = {}, endpoints = makeEndpoints(3)) {
  const handle = testHandle(endpoints);
  return {
    plugin: create<ApproxPrefixCacheProducer>(definition, { autoTune: false, ...p }, handle),
    endpoints,
  };
}

describe('approx-prefix-cache-producer parameters', () => {
  it('has upstream defaults', () => {
    expect(TYPE).toBe('approx-prefix-cache-producer');
    expect(params.parse({})).toEqual(DEFAULTS);
  });

  it('accepts every parameter', () => {
    const p = {
      blockSizeTokens: 128,
      autoTune: false,
      maxPrefixTokensToMatch: 0,
      maxPrefixBlocksToMatch: 10,
      lruCapacityPerServer: 5,
    };
    expect(params.parse(p)).toEqual(p);
  });

  it('maps the legacy hashBlockSize (characters) to tokens and turns autoTune off', () => {
    expect(params.parse({ hashBlockSize: 256 })).toMatchObject({ blockSizeTokens: 64, autoTune: false });
    expect(params.parse({ hashBlockSize: 10 })).toMatchObject({ blockSizeTokens: 3 });
    expect(params.parse({ hashBlockSize: 1 })).toMatchObject({ blockSizeTokens: 1 });
    expect(params.parse({ hashBlockSize: 64, autoTune: true })).toMatchObject({ autoTune: true });
  });

  it('maps the deprecated blockSize to blockSizeTokens', () => {
    expect(params.parse({ blockSize: 32 })).toMatchObject({ blockSizeTokens: 32, autoTune: true });
  });

  it('rejects unknown, mixed and out-of-range parameters', () => {
    for (const bad of [
      { blockSizeTokens: 0 },
      { blockSizeTokens: 1.5 },
      { blockSizeTokens: '16' },
      { maxPrefixTokensToMatch: -1 },
      { maxPrefixBlocksToMatch: -1 },
      { lruCapacityPerServer: 0 },
      { autoTune: 'yes' },
      { hashBlockSize: 0 },
      { blockSizeTokens: 16, hashBlockSize: 64 },
      { blockSizeTokens: 16, blockSize: 16 },
      { prefixBlockSize: 16 },
    ]) {
      expect(() => params.parse(bad), JSON.stringify(bad)).toThrow();
    }
  });
});

describe('block size, block limit and LRU capacity', () => {
  it('clamps the block size up to 64 tokens', () => {
    expect(producer().plugin.blockSize([])).toBe(MIN_BLOCK_SIZE_TOKENS);
    expect(producer({ blockSizeTokens: 100 }).plugin.blockSize([])).toBe(100);
  });

  it('with autoTune takes the first candidate’s KV block size when it is known', () => {
    const { plugin } = producer({ autoTune: true, blockSizeTokens: 80 });
    const big = makeEndpoint({ metrics: { cacheBlockSize: 128 } });
    const small = makeEndpoint({ metrics: { cacheBlockSize: 16 } });
    const unknown = makeEndpoint();
    expect(plugin.blockSize([big, small])).toBe(128);
    expect(plugin.blockSize([small, big])).toBe(64);
    expect(plugin.blockSize([unknown, big])).toBe(80);
    expect(producer({ blockSizeTokens: 80 }).plugin.blockSize([big])).toBe(80);
  });

  it('limits blocks by tokens when set, else by blocks; both 0 is unlimited', () => {
    expect(producer().plugin.maxBlocks(64)).toBe(2048);
    expect(producer({ maxPrefixTokensToMatch: 1000 }).plugin.maxBlocks(64)).toBe(15);
    expect(producer({ maxPrefixTokensToMatch: 10 }).plugin.maxBlocks(64)).toBe(0);
    expect(producer({ maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 7 }).plugin.maxBlocks(64)).toBe(7);
    expect(producer({ maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 0 }).plugin.maxBlocks(64)).toBe(
      Infinity,
    );
  });

  it('sizes a server’s LRU by its KV capacity in our blocks with autoTune, else by lruCapacityPerServer', () => {
    const ep = makeEndpoint({ metrics: { cacheNumBlocks: 1001, cacheBlockSize: 16 } });
    expect(producer({ autoTune: true }).plugin.capacityFor(ep, 64)).toBe(Math.ceil((1001 * 16) / 64));
    expect(producer({ autoTune: true, lruCapacityPerServer: 9 }).plugin.capacityFor(makeEndpoint(), 64)).toBe(
      9,
    );
    expect(producer({ lruCapacityPerServer: 9 }).plugin.capacityFor(ep, 64)).toBe(9);
  });
});

describe('Produce', () => {
  it('declares what it produces and consumes', () => {
    const { plugin } = producer();
    expect(plugin.produces).toEqual([PREFIX_CACHE_MATCH_INFO]);
    expect(plugin.consumes).toEqual([TOKENIZED_REQUEST]);
  });

  it('writes PrefixCacheMatchInfo under the default key and under its own name', () => {
    const eps = makeEndpoints(3);
    const plugin = create<ApproxPrefixCacheProducer>(
      definition,
      { autoTune: false },
      testHandle(eps),
      'approx-a',
    );
    const req = request(tokenized(tokens(200)));
    plugin.produce(req, eps);
    const info = req.state.read(PREFIX_CACHE_MATCH_INFO)!;
    expect(info).toEqual({ totalBlocks: 4, blockSizeTokens: 64, matchBlocks: new Int32Array(3) });
    expect(req.state.readAs(PREFIX_CACHE_MATCH_INFO, 'approx-a')).toBe(info);
  });

  it('sizes matchBlocks by the largest candidate slot', () => {
    const eps = [makeEndpoint({ slot: 7 }), makeEndpoint({ slot: 2 })];
    const { plugin } = producer({}, eps);
    const req = request(tokenized(tokens(10)));
    plugin.produce(req, eps);
    expect(req.state.read(PREFIX_CACHE_MATCH_INFO)!.matchBlocks.length).toBe(8);
  });

  it('without a TokenizedRequest reports an empty prompt', () => {
    const { plugin, endpoints } = producer();
    const req = makeRequest();
    plugin.produce(req, endpoints);
    expect(req.state.read(PREFIX_CACHE_MATCH_INFO)).toMatchObject({ totalBlocks: 0, blockSizeTokens: 64 });
  });

  it('stops hashing at the block limit', () => {
    const { plugin, endpoints } = producer({ maxPrefixTokensToMatch: 0, maxPrefixBlocksToMatch: 3 });
    const req = request(tokenized(tokens(1000)));
    plugin.produce(req, endpoints);
    expect(req.state.read(PREFIX_CACHE_MATCH_INFO)!.totalBlocks).toBe(3);
  });
});

describe('Produce after PreRequest: the index learns where prompts went', () => {
  it('predicts the chosen endpoint holds the whole prompt, and a longer prompt’s shared prefix', () => {
    const { plugin, endpoints } = producer();
    const first = request(tokenized(tokens(300)));
    plugin.produce(first, endpoints);
    plugin.preRequest(first, scheduled(endpoints[1]!));

    const again = request(tokenized(tokens(300)));
    plugin.produce(again, endpoints);
    expect(Array.from(again.state.read(PREFIX_CACHE_MATCH_INFO)!.matchBlocks)).toEqual([0, 5, 0]);

    const longer = request(tokenized(tokens(1000)));
    plugin.produce(longer, endpoints);
    // 300 tokens = 4 full blocks of 64 + a partial one; only the full ones are a prefix of 1000 tokens.
    expect(longer.state.read(PREFIX_CACHE_MATCH_INFO)).toMatchObject({ totalBlocks: 16 });
    expect(Array.from(longer.state.read(PREFIX_CACHE_MATCH_INFO)!.matchBlocks)).toEqual([0, 4, 0]);
  });

  it('does not match across models or cache salts', () => {
    const { plugin, endpoints } = producer();
    const first = request(tokenized(tokens(300)), { model: 'a' });
    plugin.produce(first, endpoints);
    plugin.preRequest(first, scheduled(endpoints[0]!));
    for (const init of [{ model: 'b' }, { model: 'a', body: { cacheSalt: 'tenant' } }]) {
      const req = request(tokenized(tokens(300)), init);
      plugin.produce(req, endpoints);
      expect(Array.from(req.state.read(PREFIX_CACHE_MATCH_INFO)!.matchBlocks)).toEqual([0, 0, 0]);
    }
  });

  it('records the prefill profile’s endpoint too, and nothing else', () => {
    const { plugin, endpoints } = producer();
    const first = request(tokenized(tokens(130)));
    plugin.produce(first, endpoints);
    plugin.preRequest(first, scheduled(endpoints[0]!, endpoints[2]!));
    const req = request(tokenized(tokens(130)));
    plugin.produce(req, endpoints);
    expect(Array.from(req.state.read(PREFIX_CACHE_MATCH_INFO)!.matchBlocks)).toEqual([3, 0, 3]);
  });

  it('sums the matches of a multi-prompt request', () => {
    const { plugin, endpoints } = producer();
    const a = tokens(128);
    const b = tokens(192, 5000);
    const first = request(tokenized(a));
    plugin.produce(first, endpoints);
    plugin.preRequest(first, scheduled(endpoints[0]!));
    const second = request(tokenized(b));
    plugin.produce(second, endpoints);
    plugin.preRequest(second, scheduled(endpoints[0]!));
    const both = request(tokenized(a, b));
    plugin.produce(both, endpoints);
    expect(both.state.read(PREFIX_CACHE_MATCH_INFO)).toMatchObject({ totalBlocks: 5 });
    expect(Array.from(both.state.read(PREFIX_CACHE_MATCH_INFO)!.matchBlocks)).toEqual([5, 0, 0]);
  });

  it('adds the hashes computed at Produce, without hashing again', () => {
    const { plugin, endpoints } = producer();
    const req = request(tokenized(tokens(128)));
    plugin.produce(req, endpoints);
    req.state.write(TOKENIZED_REQUEST, tokenized(tokens(128, 777)));
    plugin.preRequest(req, scheduled(endpoints[0]!));
    const expected = hashPrompt(tokens(128), 64, Infinity, req.targetModel);
    expect(plugin.index.serversOf(expected, 1)).toEqual([endpoints[0]!.meta.id]);
  });

  it('adds nothing without a primary target or without Produce state', () => {
    const { plugin, endpoints } = producer();
    const req = request(tokenized(tokens(128)));
    plugin.produce(req, endpoints);
    plugin.preRequest(req, scheduled(null));
    plugin.preRequest(request(tokenized(tokens(128))), scheduled(endpoints[0]!));
    plugin.preRequest(req, { primaryProfileName: 'missing', profileResults: new Map() });
    expect(plugin.index.size()).toBe(0);
  });

  it('applies the autoTuned LRU capacity when it records', () => {
    const eps = makeEndpoints(2, () => ({ metrics: { cacheNumBlocks: 8, cacheBlockSize: 16 } }));
    const { plugin } = producer({ autoTune: true, blockSizeTokens: 64 }, eps);
    // The first candidate reports 16-token blocks: clamped to 64; capacity = ceil(8·16/64) = 2 blocks.
    const req = request(tokenized(tokens(64 * 5)));
    plugin.produce(req, eps);
    plugin.preRequest(req, scheduled(eps[1]!));
    expect(plugin.index.capacityOf(eps[1]!.meta.id)).toBe(2);
    expect(plugin.index.size(eps[1]!.meta.id)).toBe(2);
  });

  it('reports index size, hit ratio and hit bytes of the chosen endpoints', () => {
    const { plugin, endpoints } = producer();
    for (let i = 0; i < 2; i++) {
      const req = request(tokenized(tokens(256)));
      plugin.produce(req, endpoints);
      plugin.preRequest(req, scheduled(endpoints[0]!));
    }
    expect(plugin.stats()).toMatchObject({
      entries: 4,
      servers: 1,
      hitRatio: 0.5,
      hitBytes: 4 * 64 * 4,
      recordedRequests: 2,
    });
  });
});

describe('endpoints leaving', () => {
  it('purges an endpoint that leaves, but not one replaced by a new object with its id', () => {
    const eps = makeEndpoints(2);
    const { handle, leave, replace } = handleWithRemovals(eps);
    const plugin = create<ApproxPrefixCacheProducer>(definition, { autoTune: false }, handle);
    for (const ep of eps) {
      const req = request(tokenized(tokens(128)));
      plugin.produce(req, eps);
      plugin.preRequest(req, scheduled(ep));
    }
    replace(eps[0]!, makeEndpoint({ slot: 0, name: 'pod-0' }));
    expect(plugin.index.size(eps[0]!.meta.id)).toBe(2);
    leave(eps[1]!);
    expect(plugin.index.serverIds()).toEqual([eps[0]!.meta.id]);
  });
});
