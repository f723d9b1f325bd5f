import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BenchClient, newRecord, type ApiKind } from '../../src/bench/client.js';
import type { RequestRecord } from '../../src/bench/metrics.js';
import type { WorkloadRequest } from '../../src/bench/workload/workload.js';

type Handler = (req: IncomingMessage, body: Record<string, unknown>, res: ServerResponse) => void;
let handler: Handler;
let server: Server;
let url: string;
const bodies: Record<string, unknown>[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      bodies.push(body);
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const wreq: WorkloadRequest = {
  index: 0,
  messages: [
    { role: 'system', content: 'sys' },
    { role: 'user', content: ' q' },
  ],
  promptTokens: 7,
  questionTokens: 1,
  maxTokens: 3,
  group: 0,
  session: 0,
  turn: 0,
};

function send(
  api: ApiKind,
  wantText = false,
  timeoutMs = 5000,
): Promise<{ r: RequestRecord; text: string | null; client: BenchClient }> {
  const client = new BenchClient({
    url,
    model: 'm',
    api,
    connections: 4,
    requestTimeoutMs: timeoutMs,
    ignoreEos: true,
  });
  return new Promise((resolve) => {
    client.send(wreq, newRecord(0, 0, false, 0, wreq), wantText, (r, text) => resolve({ r, text, client }));
  });
}

const tick = () => new Promise((r) => setTimeout(r, 2));

/** Writes events with pauses, splitting the stream at awkward byte boundaries. */
async function stream(res: ServerResponse, pieces: string[]): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const p of pieces) {
    res.write(p);
    await tick();
  }
  res.end();
}

const usage = (cached: number) =>
  `data: {"id":"x","choices":[],"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":${cached}}}}\n\n`;

describe('bench client', () => {
  it('sends a streaming completion and times each non-empty chunk, even split mid-line', async () => {
    handler = (_req, _body, res) => {
      void stream(res, [
        'data: {"id":"x","choices":[{"index":0,"text":"","finish_reason":null}]}\n\n',
        'data: {"id":"x","choices":[{"index":0,"te',
        'xt":" a\\"b","finish_reason":null}]}\n\ndata: {"id":"x","choices":[{"index":0,"text":" c"}]}\r\n\r\n',
        'data: {"id":"x","choices":[{"index":0,"text":" d","finish_reason":"length"}]}\n\n',
        usage(4),
        'data: [DONE]\n\n',
      ]);
    };
    const { r, text, client } = await send('completions', true);
    await client.close();
    const body = bodies[bodies.length - 1]!;
    expect(body).toMatchObject({
      model: 'm',
      prompt: 'sys q',
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    });
    expect(r.ok).toBe(true);
    expect(r.status).toBe(200);
    expect(r.outputTokens).toBe(3);
    expect(r.promptTokens).toBe(7);
    expect(r.cachedReported).toBe(true);
    expect(r.cachedTokens).toBe(4);
    expect(r.itlCount).toBe(2);
    expect(r.firstTokenMs).toBeGreaterThanOrEqual(r.sentMs);
    expect(r.endMs).toBeGreaterThanOrEqual(r.firstTokenMs);
    expect(text).toBe(' a"b c d');
  });

  it('chat: reads delta.content, skips the empty role chunk, parses JSON written with spaces', async () => {
    handler = (_req, _body, res) => {
      void stream(res, [
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
        'data: {"choices": [{"index": 0, "delta": {"content": " hi"}}]}\n\n',
        'data: {"choices":[{"index":0,"delta":{"content":" there"}}]}\n\n',
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        'data: [DONE]\n\n',
      ]);
    };
    const { r, text, client } = await send('chat', true);
    await client.close();
    expect(bodies[bodies.length - 1]!.messages).toEqual(wreq.messages);
    expect(r.ok).toBe(true);
    // No usage chunk: output tokens are the non-empty chunks, prompt tokens the workload's count.
    expect(r.outputTokens).toBe(2);
    expect(r.promptTokens).toBe(7);
    expect(r.cachedReported).toBe(false);
    expect(r.itlCount).toBe(1);
    expect(text).toBe(' hi there');
  });

  it('labels an HTTP error with its status', async () => {
    handler = (_req, _body, res) => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"queue full"}}');
    };
    const { r, client } = await send('completions');
    await client.close();
    expect(r.ok).toBe(false);
    expect(r.status).toBe(429);
    expect(r.error).toBe('429 - Too Many Requests');
  });

  it('an error event in the stream fails the request', async () => {
    handler = (_req, _body, res) => {
      void stream(res, ['data: {"error":{"message":"boom","code":500}}\n\n', 'data: [DONE]\n\n']);
    };
    const { r, client } = await send('completions');
    await client.close();
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/stream error: boom/);
  });

  it('abandons a request after the timeout', async () => {
    handler = (_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"choices":[{"text":" a"}]}\n\n');
    };
    const { r, client } = await send('completions', false, 150);
    await client.destroy();
    expect(r.ok).toBe(false);
    expect(r.error).toBe('timeout');
    expect(Number.isNaN(r.firstTokenMs)).toBe(false);
  });

  it('reports a refused connection', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const client = new BenchClient({
      url: `http://127.0.0.1:${port}/v1`,
      model: 'm',
      api: 'completions',
      connections: 1,
      requestTimeoutMs: 2000,
      ignoreEos: false,
    });
    const r = await new Promise<RequestRecord>((resolve) =>
      client.send(wreq, newRecord(0, 0, false, 0, wreq), false, (x) => resolve(x)),
    );
    await client.close();
    expect(r.ok).toBe(false);
    expect(r.status).toBe(0);
    expect(r.error).toMatch(/^connection error/);
  });
});
