/**
 * `llmd epp` as the gateway in front of four real `llmd serve` processes on loopback: prefix affinity
 * with real prefix-cache hits, load spreading from scraped queue metrics, failover when a server is
 * killed, the real `openai` client streaming and not, and P/D routing headers.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, startEppProcess, startServeProcess, type LlmdProcess } from '../helpers/processes.js';
import { startRecorder, type Recorder } from '../helpers/recorder.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const SYSTEM =
  'You are a meticulous assistant for a shipping company. Answer briefly and cite the manual. '.repeat(12);

let servers: LlmdProcess[] = [];
let epp: LlmdProcess;
let client: OpenAI;

/** The servers not killed by an earlier test. */
function alive(): LlmdProcess[] {
  return servers.filter((s) => s.proc.exitCode === null && s.proc.signalCode === null);
}

function hostPort(p: LlmdProcess): string {
  return new URL(p.url).host;
}

interface Routed {
  status: number;
  destination: string | null;
  body: Record<string, unknown> | null;
}

/** One completion through the gateway, asking for the decision record to see where it went. */
async function complete(
  prompt: string,
  extra: Record<string, unknown> = {},
  base = epp.url,
): Promise<Routed> {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-llm-d-decision-record': 'true' },
    body: JSON.stringify({ model: MODEL, prompt, max_tokens: 4, ...extra }),
  });
  const decision = res.headers.get('x-llm-d-decision');
  const text = await res.text();
  let body: Record<string, unknown> | null = null;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = null;
  }
  return {
    status: res.status,
    destination: decision
      ? ((JSON.parse(decision) as { destination: string[] }).destination[0] ?? null)
      : null,
    body,
  };
}

function cachedTokens(r: Routed): number {
  const usage = r.body?.usage as { prompt_tokens_details?: { cached_tokens?: number } } | undefined;
  return usage?.prompt_tokens_details?.cached_tokens ?? 0;
}

beforeAll(async () => {
  servers = await Promise.all(
    Array.from({ length: 4 }, () => startServeProcess(['--sim-fixed-step-ms', '5', '--max-num-seqs', '8'])),
  );
  epp = await startEppProcess(servers.flatMap((s) => ['--endpoint', hostPort(s)]));
  client = new OpenAI({ baseURL: `${epp.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  // Every server scraped at least once.
  await waitFor(
    async () =>
      (await fetch(`${epp.ready.metrics_url as string}/metrics`).then((r) => r.text())).includes(
        'llm_d_epp_ready_endpoints{name="default"} 4',
      ),
    10_000,
    'the EPP to scrape all four servers',
  );
}, 60_000);

afterAll(() => {
  killAll();
});

describe('llmd epp gateway with four llmd serve processes', () => {
  it('serves the real openai client: completions and chat, streaming and not', async () => {
    const c = await client.completions.create({ model: MODEL, prompt: 'Hello there', max_tokens: 5 });
    expect(c.choices[0]!.text.length).toBeGreaterThan(0);
    expect(c.usage!.completion_tokens).toBeGreaterThan(0);

    const stream = await client.completions.create({
      model: MODEL,
      prompt: 'Tell me about ships',
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text.length).toBeGreaterThan(0);
    // The simulated model may end before max_tokens (a sampled EOS), never after.
    expect(usage!.completion_tokens).toBeGreaterThanOrEqual(1);
    expect(usage!.completion_tokens).toBeLessThanOrEqual(6);
    expect(usage!.prompt_tokens).toBeGreaterThan(0);

    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi!' }],
      max_tokens: 5,
    });
    expect(chat.choices[0]!.message.role).toBe('assistant');

    const chatStream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi again!' }],
      max_tokens: 5,
      stream: true,
    });
    let deltas = 0;
    for await (const chunk of chatStream) if (chunk.choices[0]?.delta?.content) deltas++;
    expect(deltas).toBeGreaterThan(0);

    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it('sends requests that share a long prefix to the same server, which then serves it from cache', async () => {
    const results: Routed[] = [];
    for (let i = 0; i < 6; i++) results.push(await complete(`${SYSTEM}\nQuestion ${i}: where is my parcel?`));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const first = results[0]!.destination;
    expect(servers.map(hostPort)).toContain(first);
    for (const r of results) expect(r.destination).toBe(first);
    for (const r of results.slice(1)) expect(cachedTokens(r)).toBeGreaterThan(0);
  });

  it('spreads load away from a server whose queue is long', async () => {
    // Fill one server directly: 8 running sequences and a waiting queue behind them.
    const busy = servers[0]!;
    const fill = Array.from({ length: 24 }, (_, i) =>
      fetch(`${busy.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: `filler ${i}`, max_tokens: 150, ignore_eos: true }),
      }).then((r) => r.text()),
    );
    await waitFor(
      async () => {
        const m = await fetch(`${busy.url}/metrics`).then((r) => r.text());
        const line = m.split('\n').find((l) => l.startsWith('vllm:num_requests_waiting{'));
        return line !== undefined && Number(line.slice(line.lastIndexOf(' ') + 1)) >= 8;
      },
      10_000,
      'a waiting queue on the busy server',
    );
    // Let the EPP scrape the queue (50 ms tick).
    await new Promise((r) => setTimeout(r, 300));
    const routed = await Promise.all(
      Array.from({ length: 12 }, (_, i) => complete(`independent request ${i} about weather ${i * 7}`)),
    );
    expect(routed.every((r) => r.status === 200)).toBe(true);
    const dests = routed.map((r) => r.destination);
    expect(dests).not.toContain(hostPort(busy));
    expect(new Set(dests).size).toBeGreaterThanOrEqual(2);
    await Promise.all(fill);
  });

  it('stops routing to a killed server within a second, and no request that had not started fails', async () => {
    // Requests that prefer the victim: their prefix is cached only there.
    const sticky = `${SYSTEM} Victim-only context. `.repeat(2);
    const warm = await complete(sticky);
    expect(warm.status).toBe(200);
    const preferred = warm.destination;
    const victim = servers.find((s) => hostPort(s) === preferred)!;
    const victimHost = hostPort(victim);

    await victim.kill('SIGKILL');
    const killedAt = performance.now();
    const results: { at: number; r: Routed }[] = [];
    while (performance.now() - killedAt < 1500) {
      const batch = await Promise.all(
        Array.from({ length: 4 }, async (_, i) => ({
          at: performance.now(),
          r: await complete(`${sticky} q${i}`),
        })),
      );
      results.push(...batch);
    }
    // Nothing failed: a refused connection is retried on another server.
    expect(results.map((x) => x.r.status).filter((s) => s !== 200)).toEqual([]);
    // After a second, the killed server is never chosen.
    const late = results.filter((x) => x.at - killedAt > 1000);
    expect(late.length).toBeGreaterThan(0);
    for (const x of late) expect(x.r.destination).not.toBe(victimHost);
    // The first request after the kill went for the victim (its prefix was cached there) and was
    // rescheduled when the connection was refused.
    expect(preferred).toBe(victimHost);
    expect(epp.logs.some((l) => l.includes('model server unreachable, rescheduling'))).toBe(true);
  });
});

describe('llmd epp with a P/D configuration', () => {
  let pdEpp: LlmdProcess;
  let decode: Recorder;
  let prefill: LlmdProcess[] = [];

  beforeAll(async () => {
    decode = await startRecorder();
    prefill = alive().slice(0, 2);
    const config = [
      'apiVersion: llm-d.ai/v1alpha1',
      'kind: EndpointPickerConfig',
      'plugins:',
      '- type: prefill-filter',
      '- type: decode-filter',
      '- type: prefix-cache-scorer',
      '- type: queue-scorer',
      '- type: max-score-picker',
      '- type: always-disagg-pd-decider',
      '- type: disagg-profile-handler',
      '  parameters: {deciders: {prefill: always-disagg-pd-decider}}',
      'schedulingProfiles:',
      '- name: prefill',
      '  plugins: [{pluginRef: prefill-filter}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]',
      '- name: decode',
      '  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}, {pluginRef: max-score-picker}]',
    ].join('\n');
    pdEpp = await startEppProcess([
      '--config-text',
      config,
      '--endpoint',
      `name=decode-0,address=127.0.0.1,port=${decode.port},labels=llm-d.ai/role=decode`,
      ...prefill.flatMap((s, i) => [
        '--endpoint',
        `name=prefill-${i},address=127.0.0.1,port=${new URL(s.url).port},labels=llm-d.ai/role=prefill`,
      ]),
    ]);
  }, 30_000);

  afterAll(async () => {
    await pdEpp?.kill();
    await decode?.close();
  });

  it('sends the request to the decode endpoint with x-prefiller-host-port naming a prefill endpoint', async () => {
    const r = await complete('Summarise the manual, please.', {}, pdEpp.url);
    expect(r.status).toBe(200);
    expect(r.destination).toBe(`127.0.0.1:${decode.port}`);
    const seen = decode.requests.at(-1)!;
    expect(seen.path).toBe('/v1/completions');
    expect(prefill.map(hostPort)).toContain(seen.headers['x-prefiller-host-port']);
    // The body arrives unchanged.
    expect(JSON.parse(seen.body)).toMatchObject({ model: MODEL, prompt: 'Summarise the manual, please.' });
  });

  it('overrides an x-prefiller-host-port the client sent', async () => {
    await fetch(`${pdEpp.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-prefiller-host-port': '169.254.169.254:80' },
      body: JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 1 }),
    }).then((r) => r.text());
    expect(decode.requests.at(-1)!.headers['x-prefiller-host-port']).not.toBe('169.254.169.254:80');
  });
});

describe('llmd epp with the seed example configuration', () => {
  it('loads and routes shared prefixes together', async () => {
    const seeded = await startEppProcess([
      '--config-file',
      new URL('../fixtures/epp-configs/seed.yaml', import.meta.url).pathname,
      ...alive().flatMap((s) => ['--endpoint', hostPort(s)]),
    ]);
    try {
      const a = await complete(`${SYSTEM} Seeded.`, {}, seeded.url);
      const b = await complete(`${SYSTEM} Seeded, again.`, {}, seeded.url);
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(b.destination).toBe(a.destination);
      expect(cachedTokens(b)).toBeGreaterThan(0);
    } finally {
      await seeded.kill();
    }
  });
});
