import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LookupCounters, registerKvCacheMetrics } from '../../src/kvcache/metrics.js';

function value(page: string, name: string): number | undefined {
  const line = page.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('registerKvCacheMetrics', () => {
  it('reports the Redis client-side cache counters as they are when scraped', async () => {
    const registry = new Registry();
    let stats = { size: 3, hits: 10, misses: 2, invalidations: 1, flushes: 0 };
    registerKvCacheMetrics(registry, { lookups: new LookupCounters(), clientCache: () => stats });
    let page = await registry.metrics();
    expect(value(page, 'llmd_kv_cache_index_client_cache_hits_total')).toBe(10);
    expect(value(page, 'llmd_kv_cache_index_client_cache_misses_total')).toBe(2);
    expect(value(page, 'llmd_kv_cache_index_client_cache_invalidations_total')).toBe(1);
    expect(value(page, 'llmd_kv_cache_index_client_cache_flushes_total')).toBe(0);
    expect(value(page, 'llmd_kv_cache_index_client_cache_keys')).toBe(3);
    stats = { size: 0, hits: 25, misses: 4, invalidations: 9, flushes: 1 };
    page = await registry.metrics();
    expect(value(page, 'llmd_kv_cache_index_client_cache_hits_total')).toBe(25);
    expect(value(page, 'llmd_kv_cache_index_client_cache_keys')).toBe(0);
    expect(value(page, 'llmd_kv_cache_index_client_cache_flushes_total')).toBe(1);
  });

  it('has no client-cache series without a source', async () => {
    const registry = new Registry();
    registerKvCacheMetrics(registry, { lookups: new LookupCounters() });
    expect(await registry.metrics()).not.toContain('client_cache');
  });
});
