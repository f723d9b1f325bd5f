import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import type { Extractor } from '../../../../src/epp/framework/datalayer.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import {
  CoreMetricsExtractor,
  definition as extractorDefinition,
} from '../../../../src/epp/plugins/datalayer/core-metrics-extractor.js';
import type { MetricsExtractor } from '../../../../src/epp/plugins/datalayer/metrics-extractor.js';
import {
  definition,
  MetricsDataSource,
  TYPE,
  type MetricsDataSourceOptions,
} from '../../../../src/epp/plugins/datalayer/metrics-data-source.js';
import { startMetricsServer, vllmPage, type MetricsServer } from '../../datastore/metrics-server.js';
import { create, makeEndpoint, testHandle } from '../../helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(...args: Parameters<typeof startMetricsServer>): Promise<MetricsServer> {
  const s = await startMetricsServer(...args);
  cleanups.push(() => s.close());
  return s;
}

function source(params: unknown = {}, opts: MetricsDataSourceOptions = {}): MetricsDataSource {
  const p = definition.params.parse(params) as ConstructorParameters<typeof MetricsDataSource>[1];
  const s = new MetricsDataSource('metrics', p, opts);
  cleanups.push(() => s.close());
  return s;
}

function endpointOf(s: { address: string; port: number }, labels: Record<string, string> = {}) {
  return makeEndpoint({ address: s.address, port: s.port, labels, metrics: { updateTime: 0 } });
}

const extractor = (): CoreMetricsExtractor =>
  create<CoreMetricsExtractor>(extractorDefinition, {}, testHandle());

function poll(
  src: MetricsDataSource,
  ep: ReturnType<typeof endpointOf>,
  extractors: Extractor[],
  signal?: AbortSignal,
) {
  return src.poll(ep, extractors, signal ?? new AbortController().signal);
}

describe('metrics-data-source params', () => {
  it('defaults to http, /metrics, insecureSkipVerify and a 50 ms interval', () => {
    const src = create<MetricsDataSource>(definition);
    cleanups.push(() => src.close());
    expect(src.typedName).toEqual({ type: TYPE, name: TYPE });
    expect(src.kind).toBe('metrics');
    expect(src.scheme).toBe('http');
    expect(src.path).toBe('/metrics');
    expect(src.intervalMs).toBe(50);
    expect(src.timeoutMs).toBe(1000);
  });

  it.each([
    ['50ms', 50],
    ['1s', 1000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    [250, 250],
  ])('reads interval %j as %d ms', (interval, ms) => {
    expect(source({ interval }).intervalMs).toBe(ms);
  });

  it('times a poll out a bit under the interval, but never under a second', () => {
    expect(source({ interval: '200ms' }).timeoutMs).toBe(1000);
    expect(source({ interval: '5s' }).timeoutMs).toBe(4500);
  });

  it.each([
    [{ interval: '5 parsecs' }, /not a positive duration/],
    [{ interval: 0 }, /not a positive duration/],
    [{ interval: '-1s' }, /not a positive duration/],
    [{ path: 'metrics' }, /must start with \//],
    [{ scheme: 'ftp' }, /Invalid enum value/],
    [{ clientCertPath: '/x.pem' }, /clientCertPath and clientKeyPath go together/],
    [{ timeout: '1s' }, /Unrecognized key/],
  ])('rejects %j', (params, message) => {
    const r = definition.params.safeParse(params);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toMatch(message);
  });

  it('fails at creation when a certificate file cannot be read', () => {
    expect(() => source({ scheme: 'https', caCertPath: '/nonexistent/ca.pem' })).toThrow(ConfigError);
    expect(() => source({ scheme: 'https', caCertPath: '/nonexistent/ca.pem' })).toThrow(
      /caCertPath .* cannot be read/,
    );
  });
});

describe('metrics-data-source polling', () => {
  it('fetches the page and feeds the extractors', async () => {
    const s = await server();
    s.serve(vllmPage({ waiting: 3, running: 5, kv: 0.5, blockSize: 32, blocks: 777 }));
    const src = source();
    const ep = endpointOf(s);
    expect(src.url(ep)).toBe(`http://127.0.0.1:${s.port}/metrics`);
    expect(await poll(src, ep, [extractor()])).toBe(true);
    expect(ep.metrics).toMatchObject({
      waitingQueueSize: 3,
      runningRequestsSize: 5,
      kvCacheUsagePercent: 0.5,
      cacheBlockSize: 32,
      cacheNumBlocks: 777,
    });
  });

  it('uses the configured path and keeps one connection alive across polls', async () => {
    const s = await server((req, res) => {
      if (req.url !== '/custom/metrics') {
        res.writeHead(404).end();
        return;
      }
      res.end(vllmPage({ waiting: 1 }));
    });
    const src = source({ path: '/custom/metrics' });
    const ep = endpointOf(s);
    for (let i = 0; i < 5; i++) expect(await poll(src, ep, [extractor()])).toBe(true);
    expect(s.requests).toBe(5);
    expect(s.connections).toBe(1);
  });

  it('returns false on a non-200 answer and leaves the metrics alone', async () => {
    const s = await server((_req, res) => res.writeHead(500).end('boom'));
    const src = source();
    const ep = endpointOf(s);
    ep.metrics.waitingQueueSize = 9;
    expect(await poll(src, ep, [extractor()])).toBe(false);
    expect(ep.metrics.waitingQueueSize).toBe(9);
    // The connection is still usable afterwards.
    s.serve(vllmPage({ waiting: 2 }));
    expect(await poll(src, ep, [extractor()])).toBe(true);
    expect(ep.metrics.waitingQueueSize).toBe(2);
  });

  it('returns false on garbage, HTML and an empty page', async () => {
    const s = await server();
    const src = source();
    const ep = endpointOf(s);
    for (const body of [
      Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 200, 201, 10]),
      Buffer.from('<html><body>Not Found</body></html>\n'),
      Buffer.from(''),
    ]) {
      s.handler = (_req, res) => res.end(body);
      expect(await poll(src, ep, [extractor()])).toBe(false);
    }
    expect(ep.metrics.updateTime).toBe(0);
  });

  it('returns false on a page over the size cap, declared or chunked', async () => {
    const big = vllmPage({ waiting: 1 }) + `# ${'x'.repeat(200_000)}\n`;
    const s = await server();
    const src = source({}, { maxBodyBytes: 64 * 1024 });
    const ep = endpointOf(s);
    s.serve(big);
    expect(await poll(src, ep, [extractor()])).toBe(false);
    s.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (let i = 0; i < 20; i++) res.write('y'.repeat(10_000));
      res.end();
    };
    expect(await poll(src, ep, [extractor()])).toBe(false);
    s.serve(vllmPage({ waiting: 4 }));
    expect(await poll(src, ep, [extractor()])).toBe(true);
    expect(ep.metrics.waitingQueueSize).toBe(4);
  });

  it('times out a server that never answers', async () => {
    const s = await server(() => {});
    const src = source();
    expect(await poll(src, endpointOf(s), [extractor()])).toBe(false);
    // It got through to the server and gave up waiting, rather than failing to connect.
    expect(s.requests).toBe(1);
  });

  it('returns false promptly when aborted', async () => {
    const s = await server(() => {});
    const src = source();
    const ac = new AbortController();
    const p = poll(src, endpointOf(s), [extractor()], ac.signal);
    await new Promise((r) => setImmediate(r));
    ac.abort();
    expect(await p).toBe(false);
    const already = new AbortController();
    already.abort();
    expect(await poll(src, endpointOf(s), [extractor()], already.signal)).toBe(false);
  });

  it('returns false when nothing listens', async () => {
    const s = await startMetricsServer();
    const addr = { address: s.address, port: s.port };
    await s.close();
    expect(await poll(source(), endpointOf(addr), [extractor()])).toBe(false);
  });

  it('reports extract errors through the listener and still succeeds', async () => {
    const s = await server();
    s.serve('vllm:num_requests_waiting 2\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0\n');
    const src = source();
    const ex = extractor();
    const seen: [Endpoint, Extractor, string][] = [];
    src.setExtractErrorListener((e, x, m) => seen.push([e, x, m]));
    const ep = endpointOf(s);
    expect(await poll(src, ep, [ex])).toBe(true);
    expect(seen).toEqual([[ep, ex, 'vllm:cache_config_info: no matching sample']]);
  });

  it('counts an extractor that throws and goes on with the next one', async () => {
    const s = await server();
    s.serve(vllmPage({ waiting: 6 }));
    const src = source();
    const bad: MetricsExtractor = {
      typedName: { type: 'bad', name: 'bad' },
      sourceKind: 'metrics',
      metricNames: new Set(['vllm:num_requests_waiting']),
      extract() {
        throw new Error('bug');
      },
    };
    const messages: string[] = [];
    src.setExtractErrorListener((_e, _x, m) => messages.push(m));
    const ep = endpointOf(s);
    expect(await poll(src, ep, [bad, extractor()])).toBe(true);
    expect(messages).toEqual(['extractor threw: bug']);
    expect(ep.metrics.waitingQueueSize).toBe(6);
  });

  it('parses only the names its extractors want', async () => {
    const s = await server();
    s.serve('a 1\nb 2\nc 3\n');
    const pages: string[][] = [];
    const spy: MetricsExtractor = {
      typedName: { type: 'spy', name: 'spy' },
      sourceKind: 'metrics',
      metricNames: new Set(['b']),
      extract(page) {
        pages.push([...page.families.keys()]);
        return null;
      },
    };
    expect(await poll(source(), endpointOf(s), [spy])).toBe(true);
    expect(pages).toEqual([['b']]);
  });
});

describe('metrics-data-source over https', () => {
  let certDir: string | null = null;
  function cert(): { key: Buffer; cert: Buffer; certPath: string } {
    certDir = mkdtempSync(join(tmpdir(), 'llmd-metrics-tls-'));
    const keyPath = join(certDir, 'key.pem');
    const certPath = join(certDir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyPath,
        '-out',
        certPath,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    cleanups.push(() => rmSync(certDir!, { recursive: true, force: true }));
    return { key: readFileSync(keyPath), cert: readFileSync(certPath), certPath };
  }
  const haveOpenssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!haveOpenssl)(
    'scrapes a self-signed server with insecureSkipVerify, and verifies with caCertPath',
    async () => {
      const tls = cert();
      const s = await server(undefined, { key: tls.key, cert: tls.cert });
      s.serve(vllmPage({ waiting: 8 }));
      const ep = endpointOf(s);
      expect(await poll(source({ scheme: 'https' }), ep, [extractor()])).toBe(true);
      expect(ep.metrics.waitingQueueSize).toBe(8);
      expect(await poll(source({ scheme: 'https', insecureSkipVerify: false }), ep, [extractor()])).toBe(
        false,
      );
      expect(
        await poll(source({ scheme: 'https', insecureSkipVerify: false, caCertPath: tls.certPath }), ep, [
          extractor(),
        ]),
      ).toBe(true);
    },
  );
});
