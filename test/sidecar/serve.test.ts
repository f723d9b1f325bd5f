/**
 * The sidecar in front of a real `llmd serve` (in-process), driven by the openai npm client: plain
 * requests proxied as they are, streaming included, and a P/D request whose decode body the real
 * server accepts (a stand-in prefiller that, like a vLLM prefiller whose request finished early,
 * returns no KV parameters).
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../src/engine/serve.js';
import type { RunningSidecar } from '../../src/sidecar/sidecar.js';
import { closeAll, json, prefillAnswer, sidecar, standIn, type StandIn } from './helpers.js';

let serve: RunningServe;
let side: RunningSidecar;
let prefiller: StandIn;

beforeAll(async () => {
  serve = await startServe({
    model: 'Qwen/Qwen3-0.6B',
    host: '127.0.0.1',
    port: 0,
    logLevel: 'silent',
    enablePromptTokensDetails: true,
    simFixedStepMs: 1,
  });
  side = await sidecar({ modelServerPort: serve.port });
  prefiller = await standIn((_q, _b, res) => json(res, 200, prefillAnswer(null, 5)));
});

afterAll(async () => {
  await closeAll();
  await serve.close();
});

describe('the sidecar in front of llmd serve', () => {
  it('proxies plain requests from the openai client, streaming or not', async () => {
    const client = new OpenAI({ baseURL: side.url + '/v1', apiKey: 'none', maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain('Qwen/Qwen3-0.6B');
    const chat = await client.chat.completions.create({
      model: 'Qwen/Qwen3-0.6B',
      messages: [{ role: 'user', content: 'Say hi' }],
      max_tokens: 5,
      seed: 7,
    });
    expect(chat.choices[0]!.message.content).toBeTypeOf('string');
    expect(chat.usage!.completion_tokens).toBeLessThanOrEqual(5);
    const stream = await client.completions.create({
      model: 'Qwen/Qwen3-0.6B',
      prompt: 'Once upon a time',
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeLessThanOrEqual(4);
  });

  it("gets a P/D request decoded by the real server, with the prefiller's cached tokens reported", async () => {
    const client = new OpenAI({
      baseURL: side.url + '/v1',
      apiKey: 'none',
      maxRetries: 0,
      defaultHeaders: { 'x-prefiller-host-port': `127.0.0.1:${prefiller.port}` },
    });
    const chat = await client.chat.completions.create({
      model: 'Qwen/Qwen3-0.6B',
      messages: [{ role: 'user', content: 'Tell me a story' }],
      max_tokens: 6,
    });
    expect(chat.choices[0]!.message.content).toBeTypeOf('string');
    expect(chat.usage!.prompt_tokens_details?.cached_tokens).toBe(5);
    expect(prefiller.seen).toHaveLength(1);
    expect(JSON.parse(prefiller.seen[0]!.body)).toMatchObject({ max_tokens: 1, stream: false });
  });
});
