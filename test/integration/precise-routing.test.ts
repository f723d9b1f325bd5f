/**
 * Precise against approximate prefix routing, with three real `llmd serve` processes publishing KV
 * events to the EPP's precise producer. A document is first routed through both EPPs (both learn
 * where it went), then that server evicts it under other traffic while another server computes it.
 * The precise EPP follows the events to the server that really holds the document; the approximate
 * one still believes its own routing history and sends the request where nothing is cached.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/redis.js';
import { killAll, startEppProcess, startServeProcess, type LlmdProcess } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-0.6B';

interface Server {
  readonly id: string;
  readonly url: string;
}

let servers: Server[] = [];
let precise: LlmdProcess;
let approx: LlmdProcess;

const DOC = Array.from({ length: 90 }, (_, i) => `clause ${i} binds the parties to term ${i * 7}`).join('; ');

function config(kind: 'precise' | 'approx', zmqPort: number): string {
  const producer =
    kind === 'precise'
      ? `  - type: token-producer
    parameters: { backend: vllm }
  - type: precise-prefix-cache-producer
    parameters:
      tokenProcessorConfig: { blockSize: 16 }
      kvEventsConfig: { zmqEndpoint: "tcp://127.0.0.1:${zmqPort}", discoverPods: false }
`
      : `  - type: token-producer
    parameters: { backend: vllm }
  - type: approx-prefix-cache-producer
`;
  return `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
${producer}  - type: prefix-cache-scorer
  - type: max-score-picker
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: prefix-cache-scorer
        weight: 1
`;
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/** Through an EPP: where it went, and what the server said it had cached. */
async function routed(epp: LlmdProcess, prompt: string): Promise<{ destination: string; cached: number }> {
  const res = await post(
    `${epp.url}/v1/completions`,
    { model: MODEL, prompt, max_tokens: 2 },
    { 'x-llm-d-decision-record': 'true' },
  );
  expect(res.status).toBe(200);
  const decision = JSON.parse(res.headers.get('x-llm-d-decision')!) as { destination: string[] };
  const body = (await res.json()) as { usage: { prompt_tokens_details?: { cached_tokens?: number } } };
  return {
    destination: decision.destination[0]!,
    cached: body.usage.prompt_tokens_details?.cached_tokens ?? 0,
  };
}

async function direct(s: Server, prompt: string): Promise<void> {
  const res = await post(`${s.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
}

async function heldBlocks(s: Server, prompt: string): Promise<number> {
  const res = await post(`${s.url}/debug/kv_cache/prefix`, { model: MODEL, prompt });
  return ((await res.json()) as { cached_blocks: number }[])[0]!.cached_blocks;
}

/** The precise EPP's event counters, read from its metrics. */
async function eventCounters(): Promise<string> {
  const text = await (await fetch(`${precise.ready.metrics_url as string}/metrics`)).text();
  return ['admissions', 'evictions']
    .map((k) => new RegExp(`^llm_d_epp_kv_cache_index_${k}_total (\\S+)`, 'm').exec(text)?.[1] ?? '0')
    .join('/');
}

/** Waits until the precise EPP has applied every event the (idle) servers sent: counters steady. */
async function eventsSettled(): Promise<void> {
  let last = '';
  let steady = 0;
  await waitFor(
    async () => {
      const now = await eventCounters();
      steady = now === last ? steady + 1 : 0;
      last = now;
      if (steady < 5) await new Promise((r) => setTimeout(r, 20));
      return steady >= 5;
    },
    10_000,
    'the KV events to settle',
  );
}

beforeAll(async () => {
  const zmqPort = await freePort();
  const ports = await Promise.all([0, 1, 2].map(() => freePort()));
  const procs = await Promise.all(
    ports.map((port) =>
      startServeProcess([
        '--port',
        String(port),
        '--num-gpu-blocks-override',
        '96',
        '--kv-events-config',
        JSON.stringify({
          enable_kv_cache_events: true,
          publisher: 'zmq',
          endpoint: `tcp://127.0.0.1:${zmqPort}`,
          topic: `kv@127.0.0.1:${port}@${MODEL}`,
        }),
      ]),
    ),
  );
  servers = procs.map((p, i) => ({ id: `127.0.0.1:${ports[i]}`, url: p.url }));
  const endpoints = servers.flatMap((s) => ['--endpoint', s.id]);
  [precise, approx] = await Promise.all([
    startEppProcess(['--config-text', config('precise', zmqPort), ...endpoints]),
    startEppProcess(['--config-text', config('approx', 0), ...endpoints]),
  ]);
}, 60_000);

afterAll(() => killAll());

describe('precise-prefix-cache-producer with real servers', () => {
  it('routes to the server that really holds the prefix, also after the first holder evicted it', async () => {
    const first = await routed(approx, `${DOC} First question?`);
    const holder = servers.find((s) => s.id === first.destination)!;
    // The precise EPP sees the holder's events for the document and sends the next one there too.
    await waitFor(async () => (await heldBlocks(holder, DOC)) > 10, 5000, 'the holder to cache the document');
    await eventsSettled();
    const again = await routed(precise, `${DOC} Second question?`);
    expect(again.destination).toBe(holder.id);
    expect(again.cached).toBeGreaterThan(100);

    // The holder evicts the document under other traffic; another server computes it.
    const other = servers.find((s) => s.id !== holder.id)!;
    for (let i = 0; i < 20; i++) {
      await direct(holder, `unrelated prompt ${i} ${'filler words that take blocks '.repeat(30)}`);
    }
    expect(await heldBlocks(holder, DOC)).toBe(0);
    await direct(other, `${DOC} Warm-up?`);
    expect(await heldBlocks(other, DOC)).toBeGreaterThan(10);

    // Precise follows the events; approximate still trusts its history.
    await eventsSettled();
    const p = await routed(precise, `${DOC} Third question?`);
    expect(p.destination).toBe(other.id);
    expect(p.cached).toBeGreaterThan(100);
    const a = await routed(approx, `${DOC} Fourth question?`);
    expect(a.destination).toBe(holder.id);
    expect(a.cached).toBe(0);
  }, 60_000);

  it('reports the indexer metrics under upstream names on the EPP', async () => {
    const res = await fetch(`${precise.ready.metrics_url as string}/metrics`);
    const text = await res.text();
    expect(text).toMatch(/^kvcache_index_lookup_requests_total [1-9]/m);
    expect(text).toMatch(/^llm_d_epp_kv_cache_index_admissions_total [1-9]/m);
  });
});
