import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../../../../src/engine/serve.js';
import { renderChat } from '../../../../../src/engine/tokenizer/chat-template.js';
import { loadTokenizer, type LlmdTokenizer } from '../../../../../src/engine/tokenizer/tokenizer.js';
import { TOKENIZED_REQUEST, type TokenizedRequest } from '../../../../../src/epp/framework/data-keys.js';
import type { Endpoint } from '../../../../../src/epp/framework/endpoint.js';
import type { InferenceRequest, RequestKind } from '../../../../../src/epp/framework/request.js';
import { definition, TokenProducer } from '../../../../../src/epp/plugins/producer/token.js';
import { create, makeEndpoint, makeRequest } from '../../../helpers.js';

const MODEL = 'Qwen/Qwen3-0.6B';
let serve: RunningServe;
let tk: LlmdTokenizer;

beforeAll(async () => {
  serve = await startServe({ model: MODEL, port: 0, host: '127.0.0.1', logLevel: 'silent' });
  tk = await loadTokenizer();
});
afterAll(async () => {
  await serve?.close();
});

function req(kind: RequestKind, json: Record<string, unknown>, init: Parameters<typeof makeRequest>[0] = {}) {
  return makeRequest({
    model: MODEL,
    ...init,
    json: { model: MODEL, ...json },
    body: { kind, prompt: undefined },
  });
}

async function produce(
  p: TokenProducer,
  r: InferenceRequest,
  endpoints: Endpoint[] = [],
): Promise<TokenizedRequest> {
  await p.produce(r, endpoints);
  return r.state.read(TOKENIZED_REQUEST)!;
}

const ids = (t: TokenizedRequest): number[][] => t.prompts.map((p) => Array.from(p));

describe('token-producer with the vllm backend against llmd serve', () => {
  let producer: TokenProducer;
  beforeAll(() => {
    producer = create<TokenProducer>(definition, { backend: 'vllm', url: serve.url });
  });
  afterAll(async () => {
    await producer.close();
  });

  it('gets a completion’s real token ids from /v1/completions/render', async () => {
    const t = await produce(producer, req('completions', { prompt: 'The quick brown fox' }));
    expect(t.backend).toBe('vllm');
    expect(ids(t)).toEqual([tk.encode('The quick brown fox', { addSpecialTokens: true })]);
  });

  it('gets one prompt per string of a multi-prompt completion', async () => {
    const t = await produce(producer, req('completions', { prompt: ['one', 'two'] }));
    expect(ids(t)).toEqual([tk.encode('one'), tk.encode('two')]);
    expect(t.tokenCount).toBe(t.prompts[0]!.length + t.prompts[1]!.length);
  });

  it('gets a chat’s rendered token ids from /v1/chat/completions/render', async () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi!' },
    ];
    const t = await produce(producer, req('chat-completions', { messages }));
    const text = renderChat(tk, { messages, addGenerationPrompt: true });
    expect(t.backend).toBe('vllm');
    expect(ids(t)).toEqual([tk.encode(text, { addSpecialTokens: false })]);
  });

  it('renders on the first candidate endpoint when no url is configured', async () => {
    const p = create<TokenProducer>(definition, { backend: 'vllm' });
    const ep = makeEndpoint({ address: '127.0.0.1', port: serve.port });
    const t = await produce(p, req('completions', { prompt: 'hello' }), [ep]);
    expect(t.backend).toBe('vllm');
    expect(ids(t)).toEqual([tk.encode('hello')]);
    // No candidates and no url: nowhere to render.
    expect((await produce(p, req('completions', { prompt: 'hello' }))).backend).toBe('estimate');
    await p.close();
  });

  it('estimates the APIs that have no render route', async () => {
    expect((await produce(producer, req('embeddings', { input: 'x' }))).backend).toBe('estimate');
    expect((await produce(producer, req('responses', { input: 'x' }))).backend).toBe('estimate');
  });

  it('falls back to estimating when the server rejects the request', async () => {
    const t = await produce(producer, req('chat-completions', { messages: 'not a list' }));
    expect(t.backend).toBe('estimate');
  });
});

describe('token-producer with the vllm backend: failures and the wire', () => {
  let server: Server;
  let url: string;
  let handler: (req: IncomingMessage, body: string, res: ServerResponse) => void;
  const seen: { url: string; headers: IncomingMessage['headers']; body: string }[] = [];
  const hanging: ServerResponse[] = [];

  beforeAll(async () => {
    server = createServer((r, res) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        seen.push({ url: r.url ?? '', headers: r.headers, body });
        handler(r, body, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const res of hanging) res.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const reply = (status: number, body: unknown) => (_r: IncomingMessage, _b: string, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  it('sends the body as received, with the client’s authorization', async () => {
    handler = reply(200, { token_ids: [1, 2, 3] });
    const p = create<TokenProducer>(definition, { backend: 'vllm', url: url + '/' });
    const r = req(
      'chat-completions',
      { messages: [{ role: 'user', content: 'x' }] },
      { headers: { authorization: 'Bearer k' } },
    );
    const t = await produce(p, r);
    expect(ids(t)).toEqual([[1, 2, 3]]);
    const last = seen.at(-1)!;
    expect(last.url).toBe('/v1/chat/completions/render');
    expect(last.body).toBe(r.body.raw.toString('utf8'));
    expect(last.headers.authorization).toBe('Bearer k');
    expect(last.headers['content-type']).toBe('application/json');
    await p.close();
  });

  it('renders with the routed model when the model was rewritten, or modelName when none was sent', async () => {
    handler = reply(200, [{ token_ids: [4] }]);
    const p = create<TokenProducer>(definition, { backend: 'vllm', url, modelName: 'fallback' });
    await produce(p, req('completions', { prompt: 'x' }, { model: 'alias', targetModel: 'real' }));
    expect(JSON.parse(seen.at(-1)!.body)).toMatchObject({ model: 'real', prompt: 'x' });
    expect(seen.at(-1)!.url).toBe('/v1/completions/render');
    const noModel = makeRequest({ model: '', json: { prompt: 'y' } });
    await produce(p, noModel);
    expect(JSON.parse(seen.at(-1)!.body)).toEqual({ prompt: 'y', model: 'fallback' });
    await p.close();
  });

  it('falls back to estimating on an error status, a bad response shape or invalid JSON', async () => {
    const p = create<TokenProducer>(definition, { backend: 'vllm', url });
    for (const h of [
      reply(500, { error: 'boom' }),
      reply(200, { tokens: [1] }),
      reply(200, [{ token_ids: [1, -2] }]),
      (_r: IncomingMessage, _b: string, res: ServerResponse) => res.end('not json'),
    ]) {
      handler = h;
      const t = await produce(p, req('completions', { prompt: 'abcd' }));
      expect(t).toMatchObject({ backend: 'estimate', tokenCount: 1 });
    }
    await p.close();
  });

  it('falls back to estimating when the server does not answer in time', async () => {
    handler = (_r, _b, res) => void hanging.push(res);
    const p = create<TokenProducer>(definition, { backend: 'vllm', url, timeoutMs: 50 });
    const t = await produce(p, req('completions', { prompt: 'abcd' }));
    expect(t.backend).toBe('estimate');
    await p.close();
  });

  it('falls back to estimating when the server is down', async () => {
    const down = createServer();
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    const port = (down.address() as AddressInfo).port;
    await new Promise<void>((resolve) => down.close(() => resolve()));
    const p = create<TokenProducer>(definition, { backend: 'vllm', url: `http://127.0.0.1:${port}` });
    const t = await produce(p, req('completions', { prompt: 'abcdefgh' }));
    expect(t).toMatchObject({ backend: 'estimate', tokenCount: 2 });
    await p.close();
  });
});

describe('token-producer: the local backend computes exactly the model server’s ids', () => {
  const cases: [RequestKind, Record<string, unknown>][] = [
    ['completions', { prompt: 'Plain text with punctuation, numbers 12345 and émojis 🚀.' }],
    ['completions', { prompt: ['first prompt', 'second, longer prompt with more words'] }],
    ['completions', { prompt: 'no special tokens', add_special_tokens: false }],
    ['chat-completions', { messages: [{ role: 'user', content: 'Hello there' }] }],
    [
      'chat-completions',
      {
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'What is a KV cache?' },
          { role: 'assistant', content: 'Keys and values of past tokens.' },
          { role: 'user', content: [{ type: 'text', text: 'And prefix caching?' }] },
        ],
      },
    ],
    [
      'chat-completions',
      {
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [
          {
            type: 'function',
            function: { name: 'weather', description: 'Get weather', parameters: { type: 'object' } },
          },
        ],
      },
    ],
    [
      'chat-completions',
      {
        messages: [{ role: 'user', content: 'Think first.' }],
        chat_template_kwargs: { enable_thinking: false },
      },
    ],
  ];
  let local: TokenProducer;
  let vllm: TokenProducer;
  beforeAll(() => {
    local = create<TokenProducer>(definition, { backend: 'local' });
    local.init();
    vllm = create<TokenProducer>(definition, { backend: 'vllm', url: serve.url });
  });
  afterAll(async () => {
    await vllm.close();
  });

  it.each(cases.map((c, i) => [i, ...c] as const))('case %i (%s)', async (_i, kind, json) => {
    const fromServer = await produce(vllm, req(kind, json));
    const fromLocal = await produce(local, req(kind, json));
    expect(fromServer.backend).toBe('vllm');
    expect(fromLocal.backend).toBe('local');
    expect(ids(fromLocal)).toEqual(ids(fromServer));
  });
});
