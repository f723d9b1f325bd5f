import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/log.js';
import { Datastore, type DatastoreEndpoint } from '../../../src/epp/datastore/datastore.js';
import {
  Scraper,
  ticksFor,
  type ExtractErrorListener,
  type PollFailure,
  type ScrapeObserver,
} from '../../../src/epp/datastore/scraper.js';
import type { DataSource, Extractor, MutableEndpoint } from '../../../src/epp/framework/datalayer.js';
import type { Endpoint } from '../../../src/epp/framework/endpoint.js';
import { waitFor } from '../../helpers/wait.js';

type PollFn = (endpoint: MutableEndpoint, signal: AbortSignal) => Promise<boolean> | boolean;

class FakeSource implements DataSource {
  readonly kind = 'fake';
  readonly typedName = { type: 'fake-source', name: 'fake' };
  polls: string[] = [];
  inFlight = new Map<string, number>();
  maxInFlight = 0;
  listener: ExtractErrorListener | null = null;

  constructor(
    readonly intervalMs: number,
    public fn: PollFn = () => true,
  ) {}

  async poll(
    endpoint: MutableEndpoint,
    _extractors: readonly Extractor[],
    signal: AbortSignal,
  ): Promise<boolean> {
    const id = endpoint.meta.id;
    this.polls.push(id);
    const n = (this.inFlight.get(id) ?? 0) + 1;
    this.inFlight.set(id, n);
    this.maxInFlight = Math.max(this.maxInFlight, n);
    try {
      return await this.fn(endpoint, signal);
    } finally {
      this.inFlight.set(id, (this.inFlight.get(id) ?? 1) - 1);
    }
  }

  setExtractErrorListener(l: ExtractErrorListener | null): void {
    this.listener = l;
  }

  count(id: string): number {
    return this.polls.filter((p) => p === id).length;
  }
}

const extractor: Extractor = { typedName: { type: 'fake-extractor', name: 'x' }, sourceKind: 'fake' };

class Recorder implements ScrapeObserver {
  pollErrors: [string, PollFailure][] = [];
  extractErrors: [string, string][] = [];
  pollError(endpoint: Endpoint, _s: DataSource, reason: PollFailure): void {
    this.pollErrors.push([endpoint.meta.name, reason]);
  }
  extractError(endpoint: Endpoint, _s: DataSource, _e: Extractor, message: string): void {
    this.extractErrors.push([endpoint.meta.name, message]);
  }
}

function store(...names: string[]): Datastore {
  const ds = new Datastore();
  names.forEach((n, i) =>
    ds.upsert({ name: n, namespace: 'default', address: `10.0.0.${i + 1}`, port: 8000, labels: {} }),
  );
  return ds;
}

/** Resolves when `signal` aborts, then reports the poll as failed. */
function untilAborted(signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(false), { once: true }));
}

const scrapers: Scraper[] = [];
function make(opts: ConstructorParameters<typeof Scraper>[0]): Scraper {
  const s = new Scraper(opts);
  scrapers.push(s);
  return s;
}
afterEach(() => {
  for (const s of scrapers.splice(0)) s.stop();
});

describe('Scraper', () => {
  it('rounds a source interval up to whole base ticks', () => {
    expect(ticksFor(50, 50)).toBe(1);
    expect(ticksFor(1, 50)).toBe(1);
    expect(ticksFor(100, 50)).toBe(2);
    expect(ticksFor(120, 50)).toBe(3);
    expect(ticksFor(1000, 100)).toBe(10);
  });

  it('refuses a base tick below 50 ms and extractors of another kind', () => {
    const ds = store();
    expect(() => new Scraper({ datastore: ds, bindings: [], tickMs: 10 })).toThrow(ConfigError);
    expect(() => new Scraper({ datastore: ds, bindings: [], tickMs: 10 })).toThrow(
      /--refresh-metrics-interval/,
    );
    const other: Extractor = { typedName: { type: 't', name: 'other' }, sourceKind: 'metrics' };
    expect(
      () => new Scraper({ datastore: ds, bindings: [{ source: new FakeSource(50), extractors: [other] }] }),
    ).toThrow(/extractor other .* reads metrics data/);
  });

  it('polls every endpoint on every tick when the interval is the tick', async () => {
    const ds = store('a', 'b', 'c');
    const src = new FakeSource(50);
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [extractor] }] });
    s.start();
    await waitFor(
      () => ['a', 'b', 'c'].every((n) => src.count(`default/${n}-rank-0`) >= 3),
      5000,
      'three polls each',
    );
    s.stop();
    expect(s.running).toBe(false);
  });

  it('staggers endpoints of a slower source across its interval', async () => {
    const ds = store('a', 'b', 'c', 'd');
    const src = new FakeSource(200);
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }] });
    const seen: string[][] = [];
    for (let i = 0; i < 8; i++) {
      const before = src.polls.length;
      s.tick();
      seen.push(src.polls.slice(before).map((p) => p.split('/')[1]!.split('-')[0]!));
      await waitFor(() => s.inFlight() === 0, 1000, 'polls to settle');
    }
    expect(seen).toEqual([['a'], ['b'], ['c'], ['d'], ['a'], ['b'], ['c'], ['d']]);
  });

  it('never has two polls of one endpoint and source in flight', async () => {
    const ds = store('a', 'b');
    // Each poll takes about three ticks.
    const src = new FakeSource(50, () => new Promise((r) => setTimeout(() => r(true), 140)));
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }] });
    s.start();
    await waitFor(() => src.count('default/a-rank-0') >= 4, 8000, 'four polls');
    expect(src.maxInFlight).toBe(1);
  });

  it('records successes and counts failures, rejections and throws without stopping', async () => {
    const ds = store('ok', 'false', 'rejects', 'throws');
    const src = new FakeSource(50, (ep) => {
      switch (ep.meta.name) {
        case 'false':
          return false;
        case 'rejects':
          return Promise.reject(new Error('connection refused'));
        case 'throws':
          throw new Error('bug');
        default:
          return true;
      }
    });
    const obs = new Recorder();
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }], observer: obs });
    s.start();
    await waitFor(() => src.count('default/ok-rank-0') >= 3 && obs.pollErrors.length >= 9, 5000, 'polls');
    const reasons = new Map(obs.pollErrors);
    expect(reasons.get('false')).toBe('failed');
    expect(reasons.get('rejects')).toBe('threw');
    expect(reasons.get('throws')).toBe('threw');
    expect(reasons.has('ok')).toBe(false);
    const get = (n: string): DatastoreEndpoint => ds.get(`default/${n}-rank-0`)!;
    expect(get('ok').lastPollOk).toBeGreaterThan(0);
    expect(get('ok').consecutiveFailures).toBe(0);
    expect(get('false').lastPollOk).toBe(0);
    expect(get('false').consecutiveFailures).toBeGreaterThanOrEqual(3);
  });

  it('aborts a hung poll at the hang timeout, counts it, and polls again once it settles', async () => {
    const ds = store('slow', 'fast');
    const src = new FakeSource(50, (ep, signal) => (ep.meta.name === 'slow' ? untilAborted(signal) : true));
    const obs = new Recorder();
    const s = make({
      datastore: ds,
      bindings: [{ source: src, extractors: [] }],
      observer: obs,
      hangTimeoutMs: 150,
    });
    s.start();
    await waitFor(() => obs.pollErrors.filter(([n]) => n === 'slow').length >= 2, 5000, 'two timeouts');
    expect(obs.pollErrors.every(([n, r]) => n === 'slow' && r === 'timeout')).toBe(true);
    expect(src.count('default/fast-rank-0')).toBeGreaterThan(src.count('default/slow-rank-0'));
    expect(src.maxInFlight).toBe(1);
  });

  it('keeps a poll that ignores its abort as the only one in flight, and goes on with the others', async () => {
    const ds = store('stuck', 'fine');
    const src = new FakeSource(50, (ep) =>
      ep.meta.name === 'stuck' ? new Promise<boolean>(() => {}) : true,
    );
    const obs = new Recorder();
    const s = make({
      datastore: ds,
      bindings: [{ source: src, extractors: [] }],
      observer: obs,
      hangTimeoutMs: 100,
    });
    s.start();
    await waitFor(
      () => obs.pollErrors.length >= 1 && src.count('default/fine-rank-0') >= 10,
      5000,
      'timeout and polls',
    );
    expect(src.count('default/stuck-rank-0')).toBe(1);
    expect(obs.pollErrors).toEqual([['stuck', 'timeout']]);
  });

  it('stop() aborts polls in flight and ends the loop', async () => {
    const ds = store('a');
    const signals: AbortSignal[] = [];
    const src = new FakeSource(50, (_ep, signal) => {
      signals.push(signal);
      return untilAborted(signal);
    });
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }] });
    s.start();
    await waitFor(() => signals.length === 1, 2000, 'a poll');
    s.stop();
    expect(signals[0]!.aborted).toBe(true);
    await waitFor(() => s.inFlight() === 0, 2000, 'settle');
    expect(s.running).toBe(false);
    expect(ds.get('default/a-rank-0')!.lastPollOk).toBe(0);
  });

  it('cancels a removed endpoint’s poll and does not record it', async () => {
    const ds = store('a', 'b');
    const signals = new Map<string, AbortSignal>();
    const src = new FakeSource(50, (ep, signal) => {
      signals.set(ep.meta.name, signal);
      return ep.meta.name === 'a' ? new Promise((r) => setTimeout(() => r(true), 100)) : true;
    });
    const obs = new Recorder();
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }], observer: obs });
    s.start();
    await waitFor(() => signals.has('a'), 2000, 'poll of a');
    const a = ds.get('default/a-rank-0')!;
    ds.remove('default/a-rank-0');
    expect(signals.get('a')!.aborted).toBe(true);
    await waitFor(() => src.count('default/b-rank-0') >= 5, 5000, 'b goes on');
    expect(a.lastPollOk).toBe(0);
    expect(obs.pollErrors).toEqual([]);
  });

  it('voids a poll started before the endpoint moved to another address', async () => {
    const ds = store('a');
    let release: (() => void) | null = null;
    const started: string[] = [];
    const src = new FakeSource(50, (ep) => {
      started.push(ep.meta.address);
      if (ep.meta.address === '10.0.0.1') return new Promise<boolean>((r) => (release = () => r(true)));
      return false;
    });
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }] });
    s.start();
    await waitFor(() => release !== null, 2000, 'first poll');
    ds.upsert({ name: 'a', namespace: 'default', address: '10.0.0.2', port: 8000, labels: {} });
    await waitFor(() => started.includes('10.0.0.2'), 2000, 'poll of the new address');
    release!();
    await new Promise((r) => setImmediate(r));
    expect(ds.get('default/a-rank-0')!.lastPollOk).toBe(0);
  });

  it('reports an endpoint stale before its first poll, fresh after one, stale again later', async () => {
    let now = 1000;
    const ds = store('a');
    const src = new FakeSource(50);
    const s = make({
      datastore: ds,
      bindings: [{ source: src, extractors: [] }],
      clock: () => now,
      stalenessMs: 200,
    });
    const a = ds.get('default/a-rank-0')!;
    expect(s.isStale(a)).toBe(true);
    s.tick();
    await waitFor(() => s.inFlight() === 0, 1000, 'poll');
    expect(s.isStale(a)).toBe(false);
    now += 200;
    expect(s.isStale(a)).toBe(false);
    now += 1;
    expect(s.isStale(a)).toBe(true);
    expect(s.staleCount()).toBe(1);
    // A plain Endpoint view of it resolves through the datastore.
    expect(s.isStale({ ...a, meta: a.meta }, now - 100)).toBe(false);
  });

  it('passes extract errors from the source to the observer', async () => {
    const ds = store('a');
    const src = new FakeSource(50);
    src.fn = (ep) => {
      src.listener?.(ep, extractor, 'vllm:num_requests_waiting: no matching sample');
      return true;
    };
    const obs = new Recorder();
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [extractor] }], observer: obs });
    s.start();
    await waitFor(() => obs.extractErrors.length >= 2, 2000, 'extract errors');
    expect(obs.extractErrors[0]).toEqual(['a', 'vllm:num_requests_waiting: no matching sample']);
    s.stop();
    expect(src.listener).toBeNull();
  });

  it('survives an observer that throws', async () => {
    const ds = store('a');
    const src = new FakeSource(50, () => false);
    const obs: ScrapeObserver = {
      pollError() {
        throw new Error('observer bug');
      },
      extractError() {},
    };
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }], observer: obs });
    s.start();
    await waitFor(() => src.polls.length >= 3, 2000, 'polls go on');
  });

  it('logs poll failures at debug, at most once per period per endpoint', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const ds = store('a');
    const src = new FakeSource(50, () => false);
    const s = make({
      datastore: ds,
      bindings: [{ source: src, extractors: [] }],
      logger: createLogger('debug', 'test', sink),
      logIntervalMs: 60_000,
    });
    s.start();
    await waitFor(() => src.polls.length >= 6, 3000, 'failing polls');
    const failures = lines.filter((l) => l.includes('datalayer poll failed'));
    expect(failures).toHaveLength(1);
    expect(JSON.parse(failures[0]!)).toMatchObject({
      endpoint: 'default/a-rank-0',
      reason: 'failed',
      level: 20,
    });
  });

  it('picks up endpoints added after start', async () => {
    const ds = store();
    const src = new FakeSource(50);
    const s = make({ datastore: ds, bindings: [{ source: src, extractors: [] }] });
    s.start();
    ds.upsert({ name: 'late', namespace: 'default', address: '10.0.0.7', port: 8000, labels: {} });
    await waitFor(() => src.count('default/late-rank-0') >= 2, 2000, 'late endpoint polled');
  });
});
