/**
 * `precise-prefix-cache-producer` and the deprecated `precise-prefix-cache-scorer` in process: upstream's
 * parameters, the token-producer it needs, match info from the index, speculative entries, and the
 * approximate fallback while a real Redis is down, with precise scores back once it returns.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import { PREFIX_CACHE_MATCH_INFO, TOKENIZED_REQUEST } from '../../../../src/epp/framework/data-keys.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { InferenceRequest } from '../../../../src/epp/framework/request.js';
import {
  PrecisePrefixCacheProducer,
  definition,
  params,
} from '../../../../src/epp/plugins/producer/precise-prefix-cache.js';
import { definition as tokenDefinition } from '../../../../src/epp/plugins/producer/token.js';
import {
  PrecisePrefixCacheScorer,
  definition as scorerDefinition,
} from '../../../../src/epp/plugins/scorer/precise-prefix-cache.js';
import type { PodEntry } from '../../../../src/kvcache/index/index.js';
import { killAllRedis, startRedisServer } from '../../../helpers/redis.js';
import { waitFor } from '../../../helpers/wait.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';
import { scheduled } from './fixtures.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const NO_EVENTS = { discoverPods: false };
const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false, groupIdx: null });

const opened: PrecisePrefixCacheProducer[] = [];
afterAll(async () => {
  for (const p of opened) await p.close();
  await killAllRedis();
});

async function openProducer(
  p: Record<string, unknown>,
  endpoints: Endpoint[],
  def = definition,
): Promise<PrecisePrefixCacheProducer> {
  const handle = testHandle(endpoints);
  const plugin = create<PrecisePrefixCacheProducer>(def, { kvEventsConfig: NO_EVENTS, ...p }, handle);
  opened.push(plugin);
  await plugin.open();
  return plugin;
}

function tokens(n: number, base = 1): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => base + i);
}

function request(prompt: Uint32Array, backend = 'vllm', salt?: string): InferenceRequest {
  const r = makeRequest({ model: MODEL, body: salt === undefined ? {} : { cacheSalt: salt } });
  r.state.write(TOKENIZED_REQUEST, { tokenCount: prompt.length, prompts: [prompt], backend });
  return r;
}

async function matchOf(p: PrecisePrefixCacheProducer, r: InferenceRequest, endpoints: Endpoint[]) {
  await p.produce(r, endpoints);
  const info = r.state.readAs(PREFIX_CACHE_MATCH_INFO, p.typedName.name)!;
  return { total: info.totalBlocks, blocks: endpoints.map((e) => info.matchBlocks[e.slot] ?? 0) };
}

describe('precise-prefix-cache-producer parameters', () => {
  it('takes upstream’s fields with their defaults', () => {
    const p = params.parse({});
    expect(p.tokenProcessor).toEqual({ blockSizeTokens: 16, hashSeed: '', hashAlgorithm: 'cbor-fnv' });
    expect(p.indexer.backend.kind).toBe('memory');
    expect(p.kvEvents).toMatchObject({ zmqEndpoint: '', topicFilter: 'kv@', discoverPods: true });
    expect(p.speculativeTtlMs).toBe(0);
    const q = params.parse({
      tokenProcessorConfig: { blockSize: 64, hashSeed: '42' },
      indexerConfig: { kvBlockIndexConfig: { redisConfig: { address: 'redis://r:6379' } } },
      speculativeIndexing: true,
      speculativeTTL: '500ms',
    });
    expect(q.tokenProcessor.blockSizeTokens).toBe(64);
    expect(q.indexer.backend).toEqual({ kind: 'redis', address: 'redis://r:6379' });
    expect(q.speculativeTtlMs).toBe(500);
  });

  it.each([
    [{ tokenProcessorConfig: { blockSize: 'x' } }, /"tokenProcessorConfig","blockSize"/],
    [{ indexerConfig: { kvBlockIndexConfig: { inMemoryConfig: { size: -1 } } } }, /indexerConfig/],
    [{ indexerConfig: { tokenizersPoolConfig: {} } }, /token-producer/],
    [{ kvEventsConfig: { engineType: 'trtllm' } }, /"kvEventsConfig","engineType"/],
    [{ speculativeTTL: 'soon' }, /speculativeTTL/],
    [{ unknownField: 1 }, /unknownField/],
  ])('rejects %j naming the field', (bad, field) => {
    const r = params.safeParse(bad);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error!.issues)).toMatch(field);
  });

  it('asks for the render backend and refuses a token-producer that only estimates', () => {
    const handle = testHandle([]);
    const p = create<PrecisePrefixCacheProducer>(definition, {}, handle);
    expect(p.producerParams(TOKENIZED_REQUEST)).toEqual({ backend: 'vllm' });
    handle.register(create(tokenDefinition, { backend: 'estimate' }, handle, 'tokens'));
    handle.register(p);
    expect(() => p.init()).toThrow(ConfigError);
    expect(() => p.init()).toThrow(/needs real token ids.*"tokens"/);
  });
});

describe('precise-prefix-cache-producer over the in-memory index', () => {
  it('writes each endpoint’s cached prefix, matched by address:port or bare address', async () => {
    const eps = makeEndpoints(3);
    const p = await openProducer({}, eps);
    const ix = p.kvIndexer!;
    const prompt = tokens(100);
    const keys = ix.requestKeys(prompt, MODEL);
    expect(keys.length >> 1).toBe(6);
    await ix.index.add(null, keys, [gpu(eps[0]!.meta.hostPort)]);
    await ix.index.add(null, keys.subarray(0, 4), [gpu(eps[2]!.meta.address)]);
    expect(await matchOf(p, request(prompt), eps)).toEqual({ total: 6, blocks: [6, 0, 2] });
    // Another model's keys differ, as do a salted request's.
    const r = makeRequest({ model: 'other' });
    r.state.write(TOKENIZED_REQUEST, { tokenCount: 100, prompts: [prompt], backend: 'vllm' });
    expect((await matchOf(p, r, eps)).blocks).toEqual([0, 0, 0]);
    expect((await matchOf(p, request(prompt, 'vllm', 'salt'), eps)).blocks).toEqual([0, 0, 0]);
    expect(p.lookups.lookups).toBe(3);
  });

  it('adds speculative entries for the chosen endpoint, so the next request sees them at once', async () => {
    const eps = makeEndpoints(2);
    const p = await openProducer({ speculativeIndexing: true, speculativeTTL: '10s' }, eps);
    const prompt = tokens(64, 500);
    const first = request(prompt);
    expect((await matchOf(p, first, eps)).blocks).toEqual([0, 0]);
    p.preRequest(first, scheduled(eps[1]!));
    await waitFor(async () => (await matchOf(p, request(prompt), eps)).blocks[1] === 4, 2000, 'speculative');
  });

  it('scores estimated token ids with the approximate index, which saw every routing decision', async () => {
    const eps = makeEndpoints(2);
    const p = await openProducer({}, eps);
    const prompt = tokens(256, 7);
    const first = request(prompt, 'estimate');
    await p.produce(first, eps);
    p.preRequest(first, scheduled(eps[0]!));
    const { blocks } = await matchOf(p, request(prompt, 'estimate'), eps);
    expect(blocks[0]).toBeGreaterThan(0);
    expect(blocks[1]).toBe(0);
    expect(p.lookups.lookups).toBe(0);
  });
});

describe('precise-prefix-cache-producer over Redis', () => {
  it('falls back to the approximate index while Redis is down and is precise again when it returns', async () => {
    const redis = await startRedisServer();
    const eps = makeEndpoints(2);
    const p = await openProducer(
      { indexerConfig: { kvBlockIndexConfig: { redisConfig: { address: redis.url } } } },
      eps,
    );
    const ix = p.kvIndexer!;
    const prompt = tokens(80, 9);
    await ix.index.add(null, ix.requestKeys(prompt, MODEL), [gpu(eps[1]!.meta.hostPort)]);
    const routed = request(prompt);
    expect((await matchOf(p, routed, eps)).blocks).toEqual([0, 5]);
    p.preRequest(routed, scheduled(eps[1]!));

    await redis.stop();
    const down = await matchOf(p, request(prompt), eps);
    // The approximate index remembers where the prompt was routed (its blocks are 64 tokens).
    expect(down.blocks[1]).toBeGreaterThan(0);
    expect(down.blocks[0]).toBe(0);
    expect(p.lookups.fallbacks).toBe(1);

    await redis.restart();
    await waitFor(
      async () => {
        const r = request(prompt);
        await p.produce(r, eps);
        return p.lookups.lookups === 2;
      },
      5000,
      'precise lookups to come back',
    );
    // A restarted Redis lost its keys: the index answers again, knowing nothing yet.
    await ix.index.add(null, ix.requestKeys(prompt, MODEL), [gpu(eps[0]!.meta.hostPort)]);
    expect((await matchOf(p, request(prompt), eps)).blocks).toEqual([5, 0]);
  }, 20_000);
});

describe('precise-prefix-cache-scorer (deprecated)', () => {
  it('produces the match info and scores it min-max over the endpoints the index knows', async () => {
    const eps = makeEndpoints(4);
    const s = (await openProducer({}, eps, scorerDefinition)) as PrecisePrefixCacheScorer;
    expect(s.typedName.type).toBe('precise-prefix-cache-scorer');
    const ix = s.kvIndexer!;
    const prompt = tokens(160);
    const keys = ix.requestKeys(prompt, MODEL);
    await ix.index.add(null, keys, [gpu(eps[0]!.meta.hostPort)]);
    await ix.index.add(null, keys.subarray(0, 8), [gpu(eps[1]!.meta.hostPort)]);
    await ix.index.add(null, keys.subarray(0, 4), [gpu(eps[2]!.meta.hostPort)]);
    const r = request(prompt);
    await s.produce(r, eps);
    const out = new Float64Array(4);
    s.score(r, eps, out);
    expect(Array.from(out)).toEqual([1, (4 - 2) / (10 - 2), 0, 0]);
    // All known endpoints tied: each scores 1.
    const r2 = request(tokens(32, 9000));
    await ix.index.add(null, ix.requestKeys(tokens(32, 9000), MODEL), [gpu(eps[3]!.meta.hostPort)]);
    await s.produce(r2, eps);
    s.score(r2, eps, out);
    expect(Array.from(out)).toEqual([0, 0, 0, 1]);
  });
});
