/**
 * Ground truth for the KV-cache indexer: three real `llmd serve` processes publish KV events to a real
 * `llmd kv-indexer` while a workload with shared prefixes (and evictions: the servers have few blocks)
 * runs. At a quiet point the index's view of each server must equal that server's own prefix cache —
 * same number of blocks, and for every prompt the same cached-prefix length the server reports — for
 * the in-memory and the Redis index alike.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../../src/core/rng.js';
import { freePort, killAllRedis, startRedisServer, type RedisServer } from '../helpers/redis.js';
import { killAll, startLlmd, startServeProcess, type LlmdProcess } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-0.6B';

afterAll(async () => {
  killAll();
  await killAllRedis();
});

interface Server {
  readonly id: string;
  readonly url: string;
  readonly proc: LlmdProcess;
}

async function post(url: string, body: unknown): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${text}`);
  return JSON.parse(text) as unknown;
}

async function get(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return (await res.json()) as unknown;
}

/** A server publishing to the indexer's bound endpoint, its topic naming it by `127.0.0.1:<port>`. */
async function startPublishingServer(zmqPort: number, extra: string[] = []): Promise<Server> {
  const port = await freePort();
  const id = `127.0.0.1:${port}`;
  const proc = await startServeProcess([
    '--port',
    String(port),
    '--num-gpu-blocks-override',
    '32',
    '--kv-events-config',
    JSON.stringify({
      enable_kv_cache_events: true,
      publisher: 'zmq',
      endpoint: `tcp://127.0.0.1:${zmqPort}`,
      topic: `kv@${id}@${MODEL}`,
    }),
    ...extra,
  ]);
  return { id, url: proc.url, proc };
}

/** A seeded workload: documents shared by several requests, each with its own question. */
function prompts(seed: number, n: number): string[] {
  const rng = new Rng(seed);
  const words = ['cache', 'prefix', 'router', 'decode', 'block', 'token', 'server', 'event', 'index'];
  const docs = Array.from({ length: 4 }, (_, d) =>
    Array.from({ length: 60 + 20 * d }, () => words[rng.int(0, words.length - 1)]).join(' '),
  );
  return Array.from({ length: n }, (_, i) => `${docs[rng.int(0, docs.length - 1)]} Question ${i}: why?`);
}

async function runWorkload(servers: readonly Server[], ps: readonly string[], seed: number): Promise<void> {
  const rng = new Rng(seed);
  // A few at a time, so batches and evictions interleave on each server.
  for (let i = 0; i < ps.length; i += 4) {
    await Promise.all(
      ps.slice(i, i + 4).map((prompt) =>
        post(`${servers[rng.int(0, servers.length - 1)]!.url}/v1/completions`, {
          model: MODEL,
          prompt,
          max_tokens: 3,
        }),
      ),
    );
  }
}

interface CacheView {
  num_cached_blocks: number;
}

/** Each server's cached blocks, as the server reports them. */
async function serverBlocks(servers: readonly Server[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of servers)
    out[s.id] = ((await get(`${s.url}/debug/kv_cache`)) as CacheView).num_cached_blocks;
  return out;
}

/** Each server's request keys, as the index holds them (servers with none are absent). */
async function indexBlocks(indexerUrl: string, servers: readonly Server[]): Promise<Record<string, number>> {
  const view = (await get(`${indexerUrl}/debug/index`)) as { servers: Record<string, number> };
  const out: Record<string, number> = {};
  for (const s of servers) out[s.id] = view.servers[s.id] ?? 0;
  return out;
}

async function expectIndexEqualsCaches(
  indexer: LlmdProcess,
  servers: readonly Server[],
  ps: readonly string[],
): Promise<Map<string, number>> {
  const held = new Map<string, number>();
  let last = '';
  await waitFor(
    async () => {
      const [a, b] = [await serverBlocks(servers), await indexBlocks(indexer.url, servers)];
      last = `servers ${JSON.stringify(a)} index ${JSON.stringify(b)}`;
      return JSON.stringify(a) === JSON.stringify(b);
    },
    20_000,
    'the index to match every server',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
  const serverTotals = await serverBlocks(servers);
  expect(Object.values(serverTotals).some((n) => n > 0)).toBe(true);
  // Per prompt: what each server says it holds of it is what the index scores it.
  for (const prompt of ps) {
    const scores = (await post(`${indexer.url}/score_completions?detail=true`, {
      prompt,
      model: MODEL,
    })) as Record<string, { score: number; blocks: number }>;
    for (const s of servers) {
      const [h] = (await post(`${s.url}/debug/kv_cache/prefix`, { model: MODEL, prompt })) as {
        cached_blocks: number;
      }[];
      expect({ server: s.id, blocks: scores[s.id]?.blocks ?? 0 }).toEqual({
        server: s.id,
        blocks: h!.cached_blocks,
      });
      if (h!.cached_blocks > 0) expect(scores[s.id]!.score).toBe(h!.cached_blocks);
      held.set(`${s.id} ${prompt}`, h!.cached_blocks);
    }
  }
  return held;
}

describe.each([{ backend: 'memory' }, { backend: 'redis' }])(
  'llmd kv-indexer ($backend) against 3 llmd serve',
  ({ backend }) => {
    let redis: RedisServer | null = null;

    it('indexes exactly what each server caches, through evictions', async () => {
      const zmqPort = await freePort();
      const extra: string[] = [];
      if (backend === 'redis') {
        redis = await startRedisServer();
        extra.push('--redis', redis.url);
      }
      const indexer = await startLlmd(
        [
          'kv-indexer',
          '--host',
          '127.0.0.1',
          '--port',
          '0',
          `--zmq-port=${zmqPort}`,
          '--cache-size=100000',
          ...extra,
        ],
        'llmd kv-indexer is ready',
      );
      const servers = await Promise.all([0, 1, 2].map(() => startPublishingServer(zmqPort)));
      const ps = prompts(backend === 'redis' ? 11 : 7, 24);
      await runWorkload(servers, ps, 3);
      const before = await expectIndexEqualsCaches(indexer, servers, ps);
      // More traffic evicts most of what was there; the index follows.
      const more = prompts(backend === 'redis' ? 12 : 8, 24);
      await runWorkload(servers, more, 4);
      const after = await expectIndexEqualsCaches(indexer, servers, [...ps, ...more]);
      const evicted = [...before].filter(([k, n]) => after.get(k)! < n).length;
      expect(evicted).toBeGreaterThan(0);
      await Promise.all(servers.map((s) => s.proc.kill()));
      await indexer.kill();
      await redis?.kill();
    }, 90_000);
  },
);

describe('llmd kv-indexer (Redis) dialling 2 llmd serve with replay: faults', () => {
  /** A server binding its publisher and replay ROUTER on known ports, for the indexer to dial. */
  async function startDialledServer(ports?: { http: number; pub: number; replay: number }) {
    const p = ports ?? { http: await freePort(), pub: await freePort(), replay: await freePort() };
    const id = `127.0.0.1:${p.http}`;
    const proc = await startServeProcess([
      '--port',
      String(p.http),
      '--num-gpu-blocks-override',
      '32',
      '--kv-events-config',
      JSON.stringify({
        enable_kv_cache_events: true,
        publisher: 'zmq',
        endpoint: `tcp://*:${p.pub}`,
        replay_endpoint: `tcp://*:${p.replay}`,
        topic: `kv@${id}@${MODEL}`,
      }),
    ]);
    return { server: { id, url: proc.url, proc } satisfies Server, ports: p };
  }

  it('is exact again after Redis restarts empty and after a server restarts', async () => {
    const redis = await startRedisServer();
    const a = await startDialledServer();
    const b = await startDialledServer();
    const spec = (s: typeof a) =>
      `--endpoint=${s.server.id}=tcp://127.0.0.1:${s.ports.pub},replay=tcp://127.0.0.1:${s.ports.replay}`;
    const indexer = await startLlmd(
      [
        'kv-indexer',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--no-zmq',
        '--redis',
        redis.url,
        spec(a),
        spec(b),
      ],
      'llmd kv-indexer is ready',
    );
    let servers = [a.server, b.server];
    const ps = prompts(21, 12);
    await runWorkload(servers, ps, 5);
    await expectIndexEqualsCaches(indexer, servers, ps);

    // Redis goes away while the servers keep working, and comes back empty.
    await redis.stop();
    const during = prompts(22, 8);
    await runWorkload(servers, during, 6);
    await redis.restart();
    await waitFor(
      async () => (await fetch(`${indexer.url}/debug/index`)).ok,
      10_000,
      'the indexer to reach Redis again',
    );
    // The next batches find writes lost and send each server back to its replay buffer.
    const after = prompts(23, 8);
    await runWorkload(servers, after, 7);
    await expectIndexEqualsCaches(indexer, servers, [...ps, ...during, ...after]);

    // A server restarts (same ports, empty cache, sequence from 0): its old entries go.
    await a.server.proc.kill();
    const a2 = await startDialledServer(a.ports);
    servers = [a2.server, b.server];
    const again = prompts(24, 8);
    await runWorkload(servers, again, 8);
    await expectIndexEqualsCaches(indexer, servers, [...ps, ...again]);

    await Promise.all(servers.map((s) => s.proc.kill()));
    await indexer.kill();
    await redis.kill();
  }, 120_000);
});
