/**
 * `llmd serve` through the real `openai` client and plain HTTP, on a loopback port.
 */
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../src/engine/serve.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-0.6B';
let srv: RunningServe;
let client: OpenAI;

// A prompt of several KV blocks, so that a repeat hits the prefix cache.
const LONG_PROMPT =
  'The history of the printing press begins in the fifteenth century, when movable type changed how ' +
  'books were made, how ideas travelled between cities, and how ordinary people learned to read. '.repeat(4);

beforeAll(async () => {
  srv = await startServe({
    model: MODEL,
    host: '127.0.0.1',
    port: 0,
    enablePromptTokensDetails: true,
    simFixedStepMs: 1,
    hashSeed: '0',
    logLevel: 'silent',
  });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await srv?.close();
});

async function post(path: string, body: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(srv.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe('llmd serve with the openai client', () => {
  it('answers a completion with text, usage and a finish reason', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: 'San Francisco is a', max_tokens: 24 });
    expect(r.object).toBe('text_completion');
    expect(r.model).toBe(MODEL);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(r.choices[0]!.finish_reason);
    const tok = (await post('/tokenize', { prompt: 'San Francisco is a' })).json as { count: number };
    expect(r.usage!.prompt_tokens).toBe(tok.count);
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(24);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  it('streams the same text it returns without streaming, for the same seed', async () => {
    const args = { model: MODEL, prompt: 'Tell me about rivers', max_tokens: 40, seed: 7 };
    const whole = await client.completions.create(args);
    const stream = await client.completions.create({
      ...args,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text;
        if (c.finish_reason) finish = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]!.text);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage?.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('answers a chat completion, streaming and not', async () => {
    const messages = [{ role: 'user' as const, content: 'Hello! Who are you?' }];
    const r = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_completion_tokens: 30,
      seed: 3,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
    const rendered = (await post('/tokenize', { messages })).json as { count: number };
    expect(r.usage!.prompt_tokens).toBe(rendered.count);

    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_completion_tokens: 30,
      seed: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let role: string | undefined;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        if (c.delta.role) role = c.delta.role;
        text += c.delta.content ?? '';
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(role).toBe('assistant');
    expect(text).toBe(r.choices[0]!.message.content);
    expect(usage?.completion_tokens).toBe(r.usage!.completion_tokens);
  });

  it('returns n choices, each with its own index and text', async () => {
    const r = await client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 30,
      n: 3,
    });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(new Set(r.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 10,
      n: 2,
      stream: true,
    });
    const seen = new Set<number>();
    const finished = new Set<number>();
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        seen.add(c.index);
        if (c.finish_reason) finished.add(c.index);
      }
    }
    expect([...seen].sort()).toEqual([0, 1]);
    expect([...finished].sort()).toEqual([0, 1]);
  });

  it('reports cached prompt tokens when a prompt is repeated', async () => {
    const first = await client.completions.create({ model: MODEL, prompt: LONG_PROMPT, max_tokens: 5 });
    const second = await client.completions.create({ model: MODEL, prompt: LONG_PROMPT, max_tokens: 5 });
    const prompt = first.usage!.prompt_tokens;
    expect(prompt).toBeGreaterThan(64);
    const details = (u: OpenAI.CompletionUsage | undefined): number =>
      (u as { prompt_tokens_details?: { cached_tokens?: number } } | undefined)?.prompt_tokens_details
        ?.cached_tokens ?? -1;
    expect(details(first.usage)).toBe(0);
    // vLLM serves whole blocks from the cache and always recomputes at least the last prompt token.
    expect(details(second.usage)).toBe(Math.floor((prompt - 1) / 16) * 16);
  });

  it('isolates the prefix cache by cache_salt', async () => {
    const prompt = LONG_PROMPT + ' salted';
    await client.completions.create({ model: MODEL, prompt, max_tokens: 2 });
    const salted = (
      await post('/v1/completions', { model: MODEL, prompt, max_tokens: 2, cache_salt: 'tenant-a' })
    ).json as { usage: { prompt_tokens_details: { cached_tokens: number } } };
    expect(salted.usage.prompt_tokens_details.cached_tokens).toBe(0);
  });

  it('generates exactly max_tokens with ignore_eos and finishes with length', async () => {
    const r = await post('/v1/completions', {
      model: MODEL,
      prompt: 'count',
      max_tokens: 20,
      ignore_eos: true,
    });
    const body = r.json as { usage: { completion_tokens: number }; choices: { finish_reason: string }[] };
    expect(body.usage.completion_tokens).toBe(20);
    expect(body.choices[0]!.finish_reason).toBe('length');
  });

  it('honours min_tokens', async () => {
    const r = await post('/v1/completions', {
      model: MODEL,
      prompt: 'short',
      max_tokens: 200,
      min_tokens: 150,
    });
    const body = r.json as { usage: { completion_tokens: number } };
    expect(body.usage.completion_tokens).toBeGreaterThanOrEqual(150);
  });

  it('stops at a stop string and leaves it out of the text', async () => {
    const args = { model: MODEL, prompt: 'Write something', max_tokens: 60, ignore_eos: true, seed: 11 };
    const full = ((await post('/v1/completions', args)).json as { choices: { text: string }[] }).choices[0]!
      .text;
    const words = full.trim().split(/\s+/);
    const stopWord = ' ' + words[Math.min(5, words.length - 1)]!;
    const at = full.indexOf(stopWord);
    expect(at).toBeGreaterThan(0);
    const cut = (await post('/v1/completions', { ...args, stop: [stopWord] })).json as {
      choices: { text: string; finish_reason: string; stop_reason: string }[];
    };
    expect(cut.choices[0]!.text).toBe(full.slice(0, at));
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    expect(cut.choices[0]!.stop_reason).toBe(stopWord);
  });

  it('accepts prompts as token ids and as several prompts', async () => {
    const ids = ((await post('/tokenize', { prompt: 'hello world' })).json as { tokens: number[] }).tokens;
    const one = (await post('/v1/completions', { model: MODEL, prompt: ids, max_tokens: 3 })).json as {
      usage: { prompt_tokens: number };
    };
    expect(one.usage.prompt_tokens).toBe(ids.length);
    const many = (
      await post('/v1/completions', { model: MODEL, prompt: [ids, ids.concat(ids)], max_tokens: 3, n: 2 })
    ).json as { choices: { index: number }[]; usage: { prompt_tokens: number } };
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(many.usage.prompt_tokens).toBe(ids.length * 3);
    const strs = (await post('/v1/completions', { model: MODEL, prompt: ['a b', 'c d e'], max_tokens: 2 }))
      .json as {
      choices: unknown[];
    };
    expect(strs.choices).toHaveLength(2);
  });

  it('echoes the prompt before the completion when asked', async () => {
    const r = (await post('/v1/completions', { model: MODEL, prompt: 'Echo me', max_tokens: 3, echo: true }))
      .json as {
      choices: { text: string }[];
    };
    expect(r.choices[0]!.text.startsWith('Echo me')).toBe(true);
  });

  it('echoes the request id header in the response id', async () => {
    const res = await fetch(srv.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'abc-123' },
      body: JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 2 }),
    });
    expect(res.headers.get('x-request-id')).toBe('abc-123');
    expect(((await res.json()) as { id: string }).id).toBe('cmpl-abc-123');
  });
});

describe('llmd serve connection handling', () => {
  it('closes a streaming response promptly when the client asked for connection: close', async () => {
    const { hostname, port } = new URL(srv.url);
    const body = JSON.stringify({
      model: MODEL,
      prompt: 'hi',
      max_tokens: 3,
      ignore_eos: true,
      stream: true,
    });
    const text = await new Promise<string>((resolve, reject) => {
      let got = '';
      const sock = connect({ host: hostname, port: Number(port) }, () => {
        sock.write(
          `POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
            `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
      });
      sock.on('data', (c: Buffer) => (got += c.toString('utf8')));
      // The server must end the socket itself; a keep-alive response would leave it open for a minute.
      sock.setTimeout(5_000, () => reject(new Error('socket left open after the response')));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
    });
    expect(text).toContain('data: [DONE]');
    expect(text.toLowerCase()).toContain('connection: close');
  });
});

describe('llmd serve auxiliary endpoints', () => {
  it('lists the served model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    expect((models.data[0] as unknown as { max_model_len: number }).max_model_len).toBe(srv.maxModelLen);
  });

  it('answers /health and /version', async () => {
    expect((await fetch(srv.url + '/health')).status).toBe(200);
    const v = (await (await fetch(srv.url + '/version')).json()) as { version: string };
    expect(v.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('tokenizes and detokenizes round trip', async () => {
    const t = (await post('/tokenize', { prompt: 'Hello, world!' })).json as {
      tokens: number[];
      count: number;
    };
    expect(t.count).toBe(t.tokens.length);
    const d = (await post('/detokenize', { tokens: t.tokens })).json as { prompt: string };
    expect(d.prompt).toBe('Hello, world!');
  });

  it('renders completion and chat prompts to token ids without generating', async () => {
    const t = (await post('/tokenize', { prompt: 'render me' })).json as { tokens: number[] };
    const c = (await post('/v1/completions/render', { model: MODEL, prompt: 'render me' })).json as {
      token_ids: number[];
      request_id: string;
    }[];
    expect(c).toHaveLength(1);
    expect(c[0]!.token_ids).toEqual(t.tokens);
    expect(c[0]!.request_id.startsWith('cmpl-')).toBe(true);
    const messages = [{ role: 'user', content: 'render me' }];
    const tc = (await post('/tokenize', { messages })).json as { tokens: number[] };
    const ch = (await post('/v1/chat/completions/render', { model: MODEL, messages })).json as {
      token_ids: number[];
    };
    expect(ch.token_ids).toEqual(tc.tokens);
  });

  it('exposes vLLM metrics that move with traffic', async () => {
    const text = await (await fetch(srv.url + '/metrics')).text();
    const value = (name: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
    };
    expect(value('vllm:num_requests_running')).toBe(0);
    expect(value('vllm:num_requests_waiting')).toBe(0);
    expect(value('vllm:kv_cache_usage_perc')).toBe(0);
    expect(value('vllm:prefix_cache_queries_total')).toBeGreaterThan(0);
    expect(value('vllm:prefix_cache_hits_total')).toBeGreaterThan(0);
    expect(value('vllm:prompt_tokens_total')).toBeGreaterThan(0);
    expect(value('vllm:generation_tokens_total')).toBeGreaterThan(0);
    expect(value('vllm:time_to_first_token_seconds_count')).toBeGreaterThan(0);
    expect(value('vllm:e2e_request_latency_seconds_count')).toBeGreaterThan(0);
    expect(text).toMatch(/vllm:request_success_total\{[^}]*finished_reason="length"/);
    expect(text).toMatch(/vllm:cache_config_info\{[^}]*block_size="16"[^}]*\} 1/);
    expect(text).toMatch(new RegExp(`vllm:cache_config_info\\{[^}]*num_gpu_blocks="${srv.numGpuBlocks}"`));
    expect(text).toContain('model_name="Qwen/Qwen3-0.6B"');
  });

  it('aborts a request whose client disconnects and frees its blocks', async () => {
    const ac = new AbortController();
    const res = await fetch(srv.url + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        prompt: LONG_PROMPT,
        max_tokens: 5000,
        ignore_eos: true,
        stream: true,
      }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    expect(srv.core.stats().numRunning).toBe(1);
    expect(srv.core.stats().kvCacheUsage).toBeGreaterThan(0);
    ac.abort();
    await waitFor(() => srv.core.stats().numRunning === 0 && srv.core.stats().numWaiting === 0);
    expect(srv.core.stats().kvCacheUsage).toBe(0);
  });
});

describe('llmd serve in echo mode', () => {
  let echo: RunningServe;
  beforeAll(async () => {
    echo = await startServe({
      model: 'echo-model',
      host: '127.0.0.1',
      port: 0,
      mode: 'echo',
      simFixedStepMs: 1,
      logLevel: 'silent',
    });
  });
  afterAll(async () => {
    await echo?.close();
  });

  it('returns the prompt as the completion and the last message as the chat answer', async () => {
    const c = new OpenAI({ baseURL: `${echo.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const r = await c.completions.create({ model: 'echo-model', prompt: 'repeat after me', max_tokens: 50 });
    expect(r.choices[0]!.text).toBe('repeat after me');
    const chat = await c.chat.completions.create({
      model: 'echo-model',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'Grüße, 世界!' },
      ],
      stream: true,
    });
    let text = '';
    for await (const chunk of chat) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('Grüße, 世界!');
  });
});
