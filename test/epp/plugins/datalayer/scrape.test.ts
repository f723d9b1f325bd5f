/**
 * The data layer end to end: the scraper polling real HTTP servers through `metrics-data-source` and
 * `core-metrics-extractor`, and a real `llmd serve`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Datastore } from '../../../../src/epp/datastore/datastore.js';
import { Scraper, type PollFailure, type ScrapeObserver } from '../../../../src/epp/datastore/scraper.js';
import type { DataSource, Extractor } from '../../../../src/epp/framework/datalayer.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import {
  CoreMetricsExtractor,
  definition as extractorDefinition,
} from '../../../../src/epp/plugins/datalayer/core-metrics-extractor.js';
import {
  definition as sourceDefinition,
  MetricsDataSource,
} from '../../../../src/epp/plugins/datalayer/metrics-data-source.js';
import { startServe } from '../../../../src/engine/serve.js';
import { waitFor } from '../../../helpers/wait.js';
import { startMetricsServer, vllmPage, type MetricsServer } from '../../datastore/metrics-server.js';
import { create, testHandle } from '../../helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

class Counts implements ScrapeObserver {
  polls = new Map<string, PollFailure[]>();
  extracts = new Map<string, string[]>();
  pollError(endpoint: Endpoint, _s: DataSource, reason: PollFailure): void {
    const l = this.polls.get(endpoint.meta.name) ?? [];
    l.push(reason);
    this.polls.set(endpoint.meta.name, l);
  }
  extractError(endpoint: Endpoint, _s: DataSource, _e: Extractor, message: string): void {
    const l = this.extracts.get(endpoint.meta.name) ?? [];
    l.push(message);
    this.extracts.set(endpoint.meta.name, l);
  }
}

function dataLayer(opts: { stalenessMs?: number } = {}) {
  const ds = new Datastore();
  const handle = testHandle();
  const clock = () => performance.now();
  const source = create<MetricsDataSource>(sourceDefinition, { interval: '50ms' }, handle);
  const extractor = new CoreMetricsExtractor(
    'core',
    extractorDefinition.params.parse({}) as ConstructorParameters<typeof CoreMetricsExtractor>[1],
    clock,
  );
  const observer = new Counts();
  const scraper = new Scraper({
    datastore: ds,
    bindings: [{ source, extractors: [extractor] }],
    observer,
    clock,
    stalenessMs: opts.stalenessMs ?? 2000,
  });
  cleanups.push(async () => {
    scraper.stop();
    await source.close();
  });
  return { ds, scraper, observer };
}

async function server(): Promise<MetricsServer> {
  const s = await startMetricsServer();
  cleanups.push(() => s.close());
  return s;
}

function add(
  ds: Datastore,
  name: string,
  s: { address: string; port: number },
  labels: Record<string, string> = {},
): void {
  ds.upsert({ name, namespace: 'default', address: s.address, port: s.port, labels });
}

describe('scraping real servers', () => {
  it('keeps metrics current for vLLM and SGLang endpoints', async () => {
    const { ds, scraper, observer } = dataLayer();
    const v = await server();
    const g = await server();
    v.serve(vllmPage({ waiting: 1, running: 2, kv: 0.1 }));
    g.serve(
      'sglang:num_queue_reqs 3\nsglang:num_running_reqs 4\nsglang:token_usage 0.2\nsglang:cache_config_info{page_size="1",num_pages="100"} 1\n',
    );
    add(ds, 'v', v);
    add(ds, 'g', g, { 'llm-d.ai/engine-type': 'sglang' });
    scraper.start();
    const vm = () => ds.get('default/v-rank-0')!.metrics;
    const gm = () => ds.get('default/g-rank-0')!.metrics;
    await waitFor(
      () => vm().runningRequestsSize === 2 && gm().runningRequestsSize === 4,
      5000,
      'first metrics',
    );
    expect(gm()).toMatchObject({
      waitingQueueSize: 3,
      kvCacheUsagePercent: 0.2,
      cacheBlockSize: 1,
      cacheNumBlocks: 100,
    });
    v.serve(vllmPage({ waiting: 9, running: 2, kv: 0.9 }));
    await waitFor(() => vm().waitingQueueSize === 9, 5000, 'updated metrics');
    expect(vm().kvCacheUsagePercent).toBe(0.9);
    expect(observer.polls.size).toBe(0);
    expect(observer.extracts.size).toBe(0);
  });

  it('marks an endpoint stale after its server stops, while the others stay fresh', async () => {
    const { ds, scraper, observer } = dataLayer({ stalenessMs: 300 });
    const a = await startMetricsServer();
    const b = await server();
    a.serve(vllmPage({}));
    b.serve(vllmPage({}));
    add(ds, 'a', a);
    add(ds, 'b', b);
    scraper.start();
    const ea = ds.get('default/a-rank-0')!;
    const eb = ds.get('default/b-rank-0')!;
    await waitFor(() => !scraper.isStale(ea) && !scraper.isStale(eb), 5000, 'both fresh');
    await a.close();
    await waitFor(() => scraper.isStale(ea), 5000, 'a stale');
    expect(scraper.isStale(eb)).toBe(false);
    expect(observer.polls.get('a')!.length).toBeGreaterThan(0);
    expect(ea.consecutiveFailures).toBeGreaterThan(0);
    expect(observer.polls.has('b')).toBe(false);
  });

  it('goes on polling the others while one server returns 500, garbage, a huge page or nothing at all', async () => {
    const { ds, scraper, observer } = dataLayer();
    const good = await server();
    good.serve(vllmPage({ waiting: 1 }));
    const failing = await server();
    failing.handler = (_req, res) => res.writeHead(500).end();
    const garbage = await server();
    garbage.handler = (_req, res) => res.end(Buffer.from([0x00, 0xff, 0x0a, 0x7f, 0x80]));
    const huge = await server();
    huge.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = `# ${'z'.repeat(1 << 20)}\n`;
      let sent = 0;
      const pump = (): void => {
        while (sent < 12 && res.write(chunk)) sent++;
        if (sent < 12) res.once('drain', pump);
        else res.end();
      };
      pump();
    };
    const silent = await server();
    silent.handler = () => {};
    add(ds, 'good', good);
    add(ds, 'failing', failing);
    add(ds, 'garbage', garbage);
    add(ds, 'huge', huge);
    add(ds, 'silent', silent);
    scraper.start();
    await waitFor(
      () => ['failing', 'garbage', 'huge', 'silent'].every((n) => observer.polls.has(n)),
      10_000,
      'errors',
    );
    const before = good.requests;
    await waitFor(() => good.requests > before + 5, 5000, 'the good server keeps being polled');
    // The silent server is polled once per timeout, never twice at a time.
    expect(silent.open).toBeLessThanOrEqual(1);
    expect(ds.get('default/good-rank-0')!.metrics.waitingQueueSize).toBe(1);
    expect(scraper.isStale(ds.get('default/good-rank-0')!)).toBe(false);
    for (const n of ['failing', 'garbage', 'huge', 'silent'])
      expect(ds.get(`default/${n}-rank-0`)!.lastPollOk).toBe(0);
  });

  it('counts extract errors when the page lacks a metric', async () => {
    const { ds, scraper, observer } = dataLayer();
    const s = await server();
    s.serve('vllm:num_requests_waiting 5\n');
    add(ds, 'partial', s);
    scraper.start();
    await waitFor(() => (observer.extracts.get('partial')?.length ?? 0) >= 2, 5000, 'extract errors');
    expect(observer.extracts.get('partial')![0]).toMatch(/vllm:num_requests_running: no matching sample/);
    expect(ds.get('default/partial-rank-0')!.metrics.waitingQueueSize).toBe(5);
    expect(observer.polls.size).toBe(0);
  });

  it('reads a real llmd serve: waiting, running, KV usage and cache geometry', async () => {
    const serve = await startServe({
      port: 0,
      host: '127.0.0.1',
      model: 'Qwen/Qwen3-0.6B',
      logLevel: 'silent',
      maxNumSeqs: 1,
      simFixedStepMs: 10,
    });
    cleanups.push(() => serve.close());
    const { ds, scraper, observer } = dataLayer();
    add(ds, 'serve', { address: '127.0.0.1', port: serve.port });
    scraper.start();
    const m = () => ds.get('default/serve-rank-0')!.metrics;
    await waitFor(() => m().cacheNumBlocks > 0, 10_000, 'cache_config_info');
    expect(m().cacheBlockSize).toBe(serve.options.blockSize);
    expect(m().cacheNumBlocks).toBe(serve.numGpuBlocks);
    expect(m()).toMatchObject({ waitingQueueSize: 0, runningRequestsSize: 0, kvCacheUsagePercent: 0 });

    // One sequence at a time: the second request waits behind the first.
    const ac = new AbortController();
    cleanups.push(() => ac.abort());
    const body = JSON.stringify({
      model: 'Qwen/Qwen3-0.6B',
      prompt: 'The quick brown fox jumps over the lazy dog. '.repeat(20),
      max_tokens: 4000,
      ignore_eos: true,
      stream: true,
    });
    for (let i = 0; i < 2; i++) {
      void fetch(`${serve.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: ac.signal,
      }).catch(() => {});
    }
    await waitFor(
      () => m().runningRequestsSize === 1 && m().waitingQueueSize === 1,
      10_000,
      'one running, one waiting',
    );
    await waitFor(() => m().kvCacheUsagePercent > 0, 10_000, 'KV usage');
    expect(m().kvCacheUsagePercent).toBeLessThan(1);
    expect(scraper.isStale(ds.get('default/serve-rank-0')!)).toBe(false);
    expect(observer.polls.size).toBe(0);
    expect(observer.extracts.size).toBe(0);
    ac.abort();
  });
});
