/** The indexer's configuration in llm-d's JSON shape: defaults, upstream's backend order, and errors. */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  KvEventsConfigSchema,
  TokenProcessorConfigSchema,
  parseByteSize,
  resolveIndexerConfig,
} from '../../src/kvcache/config.js';

describe('tokenProcessorConfig', () => {
  it("defaults to llm-d's: 16 tokens, empty seed, cbor-fnv", () => {
    expect(TokenProcessorConfigSchema.parse({})).toEqual({
      blockSizeTokens: 16,
      hashSeed: '',
      hashAlgorithm: 'cbor-fnv',
    });
  });
  it('takes the deprecated blockSize, with blockSizeTokens winning when both are set', () => {
    expect(TokenProcessorConfigSchema.parse({ blockSize: 64, hashSeed: '42' }).blockSizeTokens).toBe(64);
    expect(TokenProcessorConfigSchema.parse({ blockSize: 64, blockSizeTokens: 32 }).blockSizeTokens).toBe(32);
    expect(TokenProcessorConfigSchema.parse({ hashAlgorithm: 'xxh64' }).hashAlgorithm).toBe('xxh64');
  });
  it('names the field it refuses', () => {
    expect(() => TokenProcessorConfigSchema.parse({ blockSizeTokens: -1 })).toThrow(/blockSizeTokens/);
    expect(() => TokenProcessorConfigSchema.parse({ hashAlgorithm: 'md5' })).toThrow(/hashAlgorithm/);
    expect(() => TokenProcessorConfigSchema.parse({ blokSize: 16 })).toThrow(/blokSize/);
  });
});

describe('indexerConfig', () => {
  it('defaults to the in-memory index with llm-d bounds and gpu 1.0 / cpu 0.8', () => {
    expect(resolveIndexerConfig(undefined)).toEqual({
      backend: { kind: 'memory', maxKeys: 100_000_000, podCacheSize: 10 },
      weights: { gpu: 1, cpu: 0.8 },
      enableMetrics: false,
    });
  });
  it("picks the backend in upstream's order: cost-aware, valkey, redis, in-memory", () => {
    const both = {
      kvBlockIndexConfig: { inMemoryConfig: { size: 5 }, redisConfig: { address: 'redis://h:1' } },
    };
    expect(resolveIndexerConfig(both).backend).toEqual({ kind: 'redis', address: 'redis://h:1' });
    expect(resolveIndexerConfig({ kvBlockIndexConfig: { redisConfig: {} } }).backend).toEqual({
      kind: 'redis',
      address: 'redis://127.0.0.1:6379',
    });
    expect(
      resolveIndexerConfig({ kvBlockIndexConfig: { valkeyConfig: {}, redisConfig: {} } }).backend,
    ).toEqual({
      kind: 'redis',
      address: 'valkey://127.0.0.1:6379',
    });
    expect(
      resolveIndexerConfig({ kvBlockIndexConfig: { costAwareMemoryConfig: { size: '8MB' } } }).backend,
    ).toEqual({
      kind: 'memory',
      maxKeys: 100_000,
      podCacheSize: 10,
    });
    expect(
      resolveIndexerConfig({ remoteIndexerConfig: { url: 'http://kv-indexer:8080', timeout: '1s' } }).backend,
    ).toEqual({ kind: 'remote', url: 'http://kv-indexer:8080', timeoutMs: 1000 });
  });
  it('replaces the tier weights when backends are listed, lower-casing their names', () => {
    const c = resolveIndexerConfig({
      kvCacheBackendConfigs: [
        { name: 'GPU', weight: 1 },
        { name: 'disk', weight: 0.3 },
      ],
    });
    expect(c.weights).toEqual({ gpu: 1, disk: 0.3 });
  });
  it('refuses the indexer-side tokenizer and unknown or malformed fields, naming them', () => {
    expect(() => resolveIndexerConfig({ tokenizersPoolConfig: { workersCount: 5 } })).toThrow(
      /tokenizersPoolConfig/,
    );
    expect(() => resolveIndexerConfig({ kvBlockIndexConfig: { inMemoryConfig: { size: 0 } } })).toThrow(
      z.ZodError,
    );
    expect(() => resolveIndexerConfig({ kvBlockIndexConfig: { inMemoryConfg: {} } })).toThrow(
      /inMemoryConfg/,
    );
    expect(() =>
      resolveIndexerConfig({ kvBlockIndexConfig: { costAwareMemoryConfig: { size: 'lots' } } }),
    ).toThrow(/byte size/);
  });
  it('reads go-humanize byte sizes', () => {
    expect(parseByteSize('2GiB')).toBe(2 * 1024 ** 3);
    expect(parseByteSize('512 MB')).toBe(512e6);
    expect(parseByteSize(1000)).toBe(1000);
    expect(parseByteSize('1e9')).toBe(1e9);
    expect(parseByteSize('-1')).toBeNull();
    expect(parseByteSize('12 parsecs')).toBeNull();
  });
});

describe('kvEventsConfig', () => {
  it("defaults to llm-d's", () => {
    expect(KvEventsConfigSchema.parse({})).toEqual({
      zmqEndpoint: '',
      topicFilter: 'kv@',
      concurrency: 4,
      engineType: 'vllm',
      discoverPods: true,
      podDiscoveryConfig: {
        podLabelSelector: 'llm-d.ai/inference-serving=true',
        podNamespace: '',
        socketPort: 5557,
        replaySocketPort: 0,
      },
    });
  });
  it('loads the llm-d guide values unchanged', () => {
    const c = KvEventsConfigSchema.parse({
      topicFilter: 'kv@',
      concurrency: 4,
      discoverPods: false,
      zmqEndpoint: 'tcp://*:5557',
    });
    expect(c.zmqEndpoint).toBe('tcp://*:5557');
    expect(() => KvEventsConfigSchema.parse({ engineType: 'trtllm' })).toThrow(/engineType/);
  });
});
