/**
 * P/D with real processes: a prefill `llmd serve`, a decode `llmd serve` and the `llmd sidecar` in
 * front of the decoder, driven by the openai client exactly as a gateway would (the prefiller named in
 * `x-prefiller-host-port`). The blocks cross the NIXL side channel between the two servers; everything
 * is observed from outside, through `/metrics`, as an operator would.
 *
 * Then the failure matrix: a prefiller killed mid-request, one that hangs, one that answers 500, one
 * that sends corrupt blocks, and a client that goes away during the prefill and during the decode. Each
 * must end within its bound with the documented result, and leave no blocks held on either server.
 */
import { createServer, type Server } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, startServeProcess, startSidecarProcess, type LlmdProcess } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-8B';
const ENV = {
  PYTHONHASHSEED: '42',
  VLLM_NIXL_SIDE_CHANNEL_HOST: '127.0.0.1',
  VLLM_NIXL_SIDE_CHANNEL_PORT: '0',
};
const PRODUCER = ['--kv-transfer-config', '{"kv_connector":"NixlConnector","kv_role":"kv_producer"}'];
const BOTH = ['--kv-transfer-config', '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'];
const LONG = 'Logistics manual, chapter one: parcels, pallets and the paperwork that follows them. '.repeat(
  60,
);

/** Every sample of a scrape summed per metric name (labels ignored). */
async function scrape(p: LlmdProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, brace >= 0 && brace < space ? brace : line.indexOf(' '));
    out.set(name, (out.get(name) ?? 0) + Number(line.slice(space + 1)));
  }
  return out;
}

async function metric(p: LlmdProcess, name: string): Promise<number> {
  return (await scrape(p)).get(name) ?? NaN;
}

/** Nothing running and no block in use, held ones included. */
async function idle(p: LlmdProcess): Promise<boolean> {
  const m = await scrape(p);
  return m.get('vllm:num_requests_running') === 0 && m.get('vllm:kv_cache_usage_perc') === 0;
}

function client(baseUrl: string, prefiller?: string): OpenAI {
  return new OpenAI({
    baseURL: baseUrl + '/v1',
    apiKey: 'none',
    maxRetries: 0,
    defaultHeaders: prefiller === undefined ? {} : { 'x-prefiller-host-port': prefiller },
  });
}

/** vLLM's sampling extras ride along in the body. */
function completion(prompt: string, maxTokens: number): OpenAI.CompletionCreateParamsNonStreaming {
  const body = { model: MODEL, prompt, max_tokens: maxTokens, seed: 7, ignore_eos: true };
  return body as OpenAI.CompletionCreateParamsNonStreaming;
}

function hostPort(p: LlmdProcess): string {
  return new URL(p.url).host;
}

function serveProcess(extra: string[]): Promise<LlmdProcess> {
  return startServeProcess(extra, { model: MODEL, env: ENV });
}

/** Raw POST through the sidecar, for failures the openai client would turn into exceptions. */
async function post(
  sidecarUrl: string,
  prefiller: string,
  body: object,
  signal?: AbortSignal,
): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${sidecarUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-prefiller-host-port': prefiller },
    body: JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  return {
    status: res.status,
    json: JSON.parse(text) as Record<string, unknown>,
    ms: performance.now() - t0,
  };
}

let prefill: LlmdProcess;
let decode: LlmdProcess;
let plain: LlmdProcess;
let sidecar: LlmdProcess;

beforeAll(async () => {
  [prefill, decode, plain] = await Promise.all([
    serveProcess(PRODUCER),
    serveProcess(BOTH),
    serveProcess([]),
  ]);
  sidecar = await startSidecarProcess(Number(new URL(decode.url).port));
});

afterAll(() => killAll());

describe('P/D through llmd sidecar between two llmd serve processes', () => {
  it('decodes on the KV the prefiller computed: blocks pulled, the same text as one server', async () => {
    const prompt = LONG + ' Same text?';
    const d0 = await scrape(decode);
    const p0 = await scrape(prefill);
    const split = await client(sidecar.url, hostPort(prefill)).completions.create(completion(prompt, 16));
    const together = await client(plain.url).completions.create(completion(prompt, 16));
    expect(split.choices[0]!.text).toBe(together.choices[0]!.text);
    expect(split.usage!.prompt_tokens).toBe(together.usage!.prompt_tokens);

    const d1 = await scrape(decode);
    const p1 = await scrape(prefill);
    const delta = (a: Map<string, number>, b: Map<string, number>, n: string) =>
      (b.get(n) ?? 0) - (a.get(n) ?? 0);
    // The prefiller computed the prompt once, for one output token; the decoder pulled it.
    expect(delta(p0, p1, 'vllm:prompt_tokens_total')).toBe(together.usage!.prompt_tokens);
    expect(delta(p0, p1, 'vllm:generation_tokens_total')).toBe(1);
    expect(delta(d0, d1, 'vllm:nixl_xfer_time_seconds_count')).toBe(1);
    expect(delta(d0, d1, 'vllm:nixl_bytes_transferred_sum')).toBeGreaterThan(0);
    expect(delta(d0, d1, 'vllm:nixl_num_descriptors_sum')).toBe(
      Math.ceil(together.usage!.prompt_tokens / 16),
    );
    expect(delta(d0, d1, 'vllm:generation_tokens_total')).toBe(16);
    await waitFor(
      async () => (await idle(prefill)) && (await idle(decode)),
      5000,
      'both sides to free the blocks',
    );
  });

  it("pays the transfer instead of the prefill in the decoder's time to first token", async () => {
    const prompt = 'A different long prompt about harbours, cranes and the tides that move them. '.repeat(
      100,
    );
    const ttft = async (p: LlmdProcess, run: () => Promise<unknown>) => {
      const sum0 = await metric(p, 'vllm:time_to_first_token_seconds_sum');
      await run();
      return (await metric(p, 'vllm:time_to_first_token_seconds_sum')) - sum0;
    };
    const local = await ttft(plain, () => client(plain.url).completions.create(completion(prompt, 1)));
    const xfer0 = await metric(decode, 'vllm:nixl_xfer_time_seconds_sum');
    const remote = await ttft(decode, () =>
      client(sidecar.url, hostPort(prefill)).completions.create(completion(prompt, 1)),
    );
    const xfer = (await metric(decode, 'vllm:nixl_xfer_time_seconds_sum')) - xfer0;
    expect(xfer).toBeGreaterThan(0);
    // The decoder's first token waits for the pull and one decode step, not for a prefill. The pull
    // is wall-clock time (slower on a loaded machine), so the prefill it replaced is compared with
    // what the first token cost beyond it.
    expect(remote).toBeGreaterThanOrEqual(xfer);
    expect(remote - xfer).toBeLessThan(local * 0.5);
  });

  it('pulls only the blocks the decoder does not hold yet when a prompt comes back', async () => {
    const prompt = LONG + ' Repeated question.';
    const c = client(sidecar.url, hostPort(prefill));
    await c.completions.create(completion(prompt, 4));
    const before = await metric(decode, 'vllm:nixl_num_descriptors_sum');
    const again = await c.completions.create(completion(prompt, 4));
    const pulled = (await metric(decode, 'vllm:nixl_num_descriptors_sum')) - before;
    // Only the block with the prompt's last tokens is missing: every full block is in the decoder's cache.
    expect(pulled).toBe(1);
    expect(again.usage!.prompt_tokens).toBeGreaterThan(16 * 10);
    await waitFor(
      async () => (await idle(prefill)) && (await idle(decode)),
      5000,
      'both sides to free the blocks',
    );
  });

  it('streams the decode through the sidecar', async () => {
    const stream = await client(sidecar.url, hostPort(prefill)).completions.create({
      ...completion(LONG + ' stream it', 8),
      stream: true,
      stream_options: { include_usage: true },
    } as OpenAI.CompletionCreateParamsStreaming);
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.choices.length > 0) chunks++;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(chunks).toBeGreaterThanOrEqual(8);
    expect(usage?.completion_tokens).toBe(8);
  });
});

describe('P/D failures with real processes', () => {
  let failSidecar: LlmdProcess;
  let quickSidecar: LlmdProcess;
  const decodePort = () => Number(new URL(decode.url).port);

  beforeAll(async () => {
    [failSidecar, quickSidecar] = await Promise.all([
      startSidecarProcess(decodePort(), ['--prefill-failure-policy=fail', '--prefill-timeout=1s']),
      startSidecarProcess(decodePort(), ['--prefill-timeout=1s']),
    ]);
  });

  /** The aggregated answer for `prompt`, which a fallback to local prefill must reproduce. */
  async function expected(prompt: string, maxTokens: number): Promise<string> {
    return (await client(plain.url).completions.create(completion(prompt, maxTokens))).choices[0]!.text;
  }

  it('falls back to a local prefill when the prefiller is killed mid-request, and reports it with --prefill-failure-policy=fail', async () => {
    for (const [side, status] of [
      [sidecar, 200],
      [failSidecar, 502],
    ] as const) {
      // Each prefill step takes 10 s, so the request is surely inside it when the process dies.
      const doomed = await serveProcess([...PRODUCER, '--sim-fixed-step-ms', '10000']);
      const prompt = `${LONG} killed ${status}`;
      const pending = post(side.url, hostPort(doomed), completion(prompt, 8));
      await waitFor(
        async () => (await metric(doomed, 'vllm:num_requests_running')) === 1,
        5000,
        'the prefill',
      );
      const bytes0 = await metric(decode, 'vllm:nixl_bytes_transferred_sum');
      const killedAt = performance.now();
      await doomed.kill('SIGKILL');
      const r = await pending;
      expect(performance.now() - killedAt).toBeLessThan(3000);
      expect(r.status).toBe(status);
      if (status === 200) {
        expect((r.json.choices as { text: string }[])[0]!.text).toBe(await expected(prompt, 8));
      } else {
        expect(r.json).toMatchObject({ object: 'error', type: 'BadGateway', code: 502 });
      }
      expect(await metric(decode, 'vllm:nixl_bytes_transferred_sum')).toBe(bytes0);
    }
    await waitFor(() => idle(decode), 5000, 'the decoder to be idle');
  });

  it('gives up on a hanging prefiller after --prefill-timeout, which frees its blocks once it wakes', async () => {
    const frozen = await serveProcess(PRODUCER);
    frozen.proc.kill('SIGSTOP');
    try {
      const prompt = `${LONG} frozen`;
      const viaFallback = await post(quickSidecar.url, hostPort(frozen), completion(prompt, 8));
      expect(viaFallback.status).toBe(200);
      expect(viaFallback.ms).toBeGreaterThanOrEqual(1000);
      expect(viaFallback.ms).toBeLessThan(4000);
      expect((viaFallback.json.choices as { text: string }[])[0]!.text).toBe(await expected(prompt, 8));

      const reported = await post(failSidecar.url, hostPort(frozen), completion(prompt + '!', 8));
      expect(reported.status).toBe(504);
      expect(reported.json).toMatchObject({ object: 'error', code: 504 });
      expect(reported.ms).toBeLessThan(4000);
    } finally {
      frozen.proc.kill('SIGCONT');
    }
    // Awake again, it finds both callers gone: whatever it prefilled is not held for a decoder.
    await waitFor(() => idle(frozen), 5000, 'the woken prefiller to free its blocks');
    await frozen.kill();
  });

  it('handles a prefiller answering 500 by the failure policy', async () => {
    const failing = await errorServer(500);
    try {
      const prompt = `${LONG} five hundred`;
      const fallback = await post(sidecar.url, `127.0.0.1:${failing.port}`, completion(prompt, 8));
      expect(fallback.status).toBe(200);
      expect((fallback.json.choices as { text: string }[])[0]!.text).toBe(await expected(prompt, 8));
      const relayed = await post(failSidecar.url, `127.0.0.1:${failing.port}`, completion(prompt, 8));
      expect(relayed.status).toBe(500);
      expect(relayed.json).toMatchObject({ object: 'error', message: 'prefill exploded', code: 500 });
      expect(failing.hits()).toBe(2);
    } finally {
      await failing.close();
    }
  });

  it('fails the request with 500 when the blocks arrive corrupt, and frees them on both sides', async () => {
    const corrupt = await serveProcess([...PRODUCER, '--sim-kv-transfer-corrupt']);
    const failed0 = await metric(decode, 'vllm:nixl_num_failed_transfers_total');
    const r = await post(sidecar.url, hostPort(corrupt), completion(`${LONG} corrupt`, 8));
    expect(r.status).toBe(500);
    expect(r.json).toMatchObject({ error: { type: 'InternalServerError', code: 500 } });
    expect((r.json.error as { message: string }).message).toMatch(/^KV transfer from .* failed \(corrupt\)/);
    expect((await metric(decode, 'vllm:nixl_num_failed_transfers_total')) - failed0).toBe(1);
    await waitFor(
      async () => (await idle(corrupt)) && (await idle(decode)),
      5000,
      'both sides to free the blocks',
    );
    await corrupt.kill();
  });

  it('cancels the prefill when the client goes away during it', async () => {
    const slow = await serveProcess([...PRODUCER, '--sim-fixed-step-ms', '3000']);
    const prompts0 = await metric(decode, 'vllm:prompt_tokens_total');
    const abort = new AbortController();
    const pending = post(sidecar.url, hostPort(slow), completion(`${LONG} leaving`, 8), abort.signal).catch(
      (e: unknown) => e,
    );
    await waitFor(async () => (await metric(slow, 'vllm:num_requests_running')) === 1, 5000, 'the prefill');
    const leftAt = performance.now();
    abort.abort();
    expect(await pending).toBeInstanceOf(Error);
    // Within one engine step of 3 s the prefiller has dropped the request without holding anything.
    await waitFor(() => idle(slow), 6000, 'the prefiller to drop the request');
    expect(performance.now() - leftAt).toBeLessThan(6000);
    expect(await metric(decode, 'vllm:prompt_tokens_total')).toBe(prompts0);
    await slow.kill();
  });

  it('cancels the decode when the client goes away during it, leaving both servers idle', async () => {
    const stream = await client(sidecar.url, hostPort(prefill)).completions.create({
      ...completion(`${LONG} a long story`, 4000),
      stream: true,
    } as OpenAI.CompletionCreateParamsStreaming);
    let chunks = 0;
    for await (const _ of stream) {
      if (++chunks === 5) break;
    }
    expect(await metric(decode, 'vllm:nixl_xfer_time_seconds_count')).toBeGreaterThan(0);
    await waitFor(async () => (await idle(decode)) && (await idle(prefill)), 5000, 'both sides to be idle');
  });
});

interface ErrorServer {
  readonly port: number;
  hits(): number;
  close(): Promise<void>;
}

/** A prefiller that fails every request with vLLM's error JSON. */
async function errorServer(status: number): Promise<ErrorServer> {
  let hits = 0;
  const srv: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits++;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          object: 'error',
          message: 'prefill exploded',
          type: 'InternalServerError',
          param: null,
          code: status,
        }),
      );
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as { port: number }).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
}
