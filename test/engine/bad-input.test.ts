/**
 * What `llmd serve` does with bad input: malformed, truncated, oversized, wrong-typed and hostile
 * bodies get the documented errors, and a seeded fuzz loop never produces a 5xx or a crash.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../src/core/rng.js';
import { startServe, type RunningServe } from '../../src/engine/serve.js';
import { waitFor } from '../helpers/wait.js';

let srv: RunningServe;

beforeAll(async () => {
  srv = await startServe({
    model: 'Qwen/Qwen3-0.6B',
    servedModelName: ['qwen', 'qwen-alias'],
    host: '127.0.0.1',
    port: 0,
    maxModelLen: 256,
    maxRequestBodyBytes: 64 * 1024,
    simFixedStepMs: 0.2,
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await srv?.close();
});

interface Reply {
  status: number;
  body: string;
}

/** Raw HTTP, so that bodies the fetch API would refuse to build can be sent too. */
function send(
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      srv.url + path,
      { method, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

function errorOf(r: Reply): { message: string; type: string; param: string | null; code: number } {
  return (
    JSON.parse(r.body) as { error: { message: string; type: string; param: string | null; code: number } }
  ).error;
}

describe('llmd serve rejects bad requests with vLLM-style errors', () => {
  it('rejects a body that is not JSON', async () => {
    const r = await send('POST', '/v1/completions', '{"model": "qwen", "prompt": ');
    expect(r.status).toBe(400);
    const e = errorOf(r);
    expect(e.type).toBe('BadRequestError');
    expect(e.code).toBe(400);
    expect(e.message).toMatch(/not valid JSON/);
  });

  it('rejects an empty body and a JSON value that is not an object', async () => {
    expect((await send('POST', '/v1/completions', '')).status).toBe(400);
    for (const body of ['[]', '"text"', '42', 'null', 'true']) {
      const r = await send('POST', '/v1/chat/completions', body);
      expect(r.status).toBe(400);
      expect(errorOf(r).message).toMatch(/JSON object/);
    }
  });

  it('names the field that has the wrong type', async () => {
    const r = await send(
      'POST',
      '/v1/completions',
      JSON.stringify({ model: 'qwen', prompt: 'x', max_tokens: 'ten' }),
    );
    expect(r.status).toBe(400);
    expect(errorOf(r).message).toContain('max_tokens');
    expect(errorOf(r).param).toBe('max_tokens');
    const m = await send(
      'POST',
      '/v1/chat/completions',
      JSON.stringify({ messages: [{ role: 'robot', content: 'x' }] }),
    );
    expect(m.status).toBe(400);
    expect(errorOf(m).param).toBe('messages[0].role');
    const p = await send('POST', '/v1/completions', JSON.stringify({ prompt: [1, 'two'] }));
    expect(p.status).toBe(400);
    expect(errorOf(p).message).toContain('prompt');
  });

  it('rejects missing required fields and out-of-range values', async () => {
    expect((await send('POST', '/v1/completions', JSON.stringify({ model: 'qwen' }))).status).toBe(400);
    expect((await send('POST', '/v1/chat/completions', JSON.stringify({ messages: [] }))).status).toBe(400);
    for (const bad of [
      { n: 0 },
      { max_tokens: 0 },
      { temperature: -1 },
      { top_p: 0 },
      { n: 1.5 },
      { prompt: '' },
    ]) {
      const r = await send('POST', '/v1/completions', JSON.stringify({ prompt: 'x', ...bad }));
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
    const ids = await send('POST', '/v1/completions', JSON.stringify({ prompt: [1, 2, 999_999_999] }));
    expect(ids.status).toBe(400);
    expect(errorOf(ids).message).toMatch(/vocabulary/);
  });

  it('answers 404 for an unknown model and accepts every served name', async () => {
    const r = await send('POST', '/v1/completions', JSON.stringify({ model: 'gpt-9', prompt: 'x' }));
    expect(r.status).toBe(404);
    expect(errorOf(r)).toMatchObject({
      type: 'NotFoundError',
      code: 404,
      message: 'The model `gpt-9` does not exist.',
    });
    for (const model of ['qwen', 'qwen-alias']) {
      const ok = await send('POST', '/v1/completions', JSON.stringify({ model, prompt: 'x', max_tokens: 2 }));
      expect(ok.status).toBe(200);
      expect((JSON.parse(ok.body) as { model: string }).model).toBe(model);
    }
  });

  it('rejects a prompt plus max_tokens over max_model_len', async () => {
    const r = await send('POST', '/v1/completions', JSON.stringify({ prompt: 'hello', max_tokens: 300 }));
    expect(r.status).toBe(400);
    expect(errorOf(r).message).toMatch(/maximum context length is 256/);
    const long = await send('POST', '/v1/completions', JSON.stringify({ prompt: 'word '.repeat(400) }));
    expect(long.status).toBe(400);
  });

  it('answers 413 for a body over the size limit', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(100 * 1024) });
    const r = await send('POST', '/v1/completions', big);
    expect(r.status).toBe(413);
    expect(errorOf(r).type).toBe('PayloadTooLargeError');
    // Chunked upload without a content-length is cut off the same way.
    const chunked = await send('POST', '/v1/completions', Buffer.from(big), {
      'transfer-encoding': 'chunked',
    });
    expect(chunked.status).toBe(413);
  });

  it('answers 404 for an unknown route and 405 for a wrong method', async () => {
    expect((await send('GET', '/v2/nothing')).status).toBe(404);
    expect((await send('GET', '/v1/completions')).status).toBe(405);
    expect((await send('POST', '/health', '{}')).status).toBe(405);
  });

  it('still serves after all of that', async () => {
    expect((await send('GET', '/health')).status).toBe(200);
    expect(srv.core.stats().numRunning).toBe(0);
  });
});

describe('llmd serve under a full waiting queue', () => {
  it('answers 429 once the waiting queue is full', async () => {
    const busy = await startServe({
      model: 'tiny',
      host: '127.0.0.1',
      port: 0,
      maxNumSeqs: 1,
      maxWaitingQueueLength: 1,
      simFixedStepMs: 50,
      logLevel: 'silent',
    });
    try {
      const body = JSON.stringify({ prompt: 'x', max_tokens: 50, ignore_eos: true });
      const first = fetch(busy.url + '/v1/completions', { method: 'POST', body });
      await waitFor(() => busy.core.stats().numRunning === 1, 10_000, 'the first request to run');
      const second = fetch(busy.url + '/v1/completions', { method: 'POST', body });
      // One runs and one waits: the queue is at its limit.
      await waitFor(() => busy.core.stats().numWaiting === 1, 10_000, 'the second request to wait');
      const third = await fetch(busy.url + '/v1/completions', { method: 'POST', body });
      expect(third.status).toBe(429);
      const e = ((await third.json()) as { error: { type: string; code: number } }).error;
      expect(e.code).toBe(429);
      await busy.close();
      await Promise.allSettled([first, second]);
    } finally {
      await busy.close();
    }
  });
});

describe('llmd serve under fuzzed bodies', () => {
  const VALID: Record<string, unknown>[] = [
    { model: 'qwen', prompt: 'hello there', max_tokens: 4 },
    { prompt: [1, 2, 3], max_tokens: 3, n: 2, stream: true },
    { messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
    { messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], stream: true, max_tokens: 2 },
    { prompt: ['a', 'b'], max_tokens: 2, stop: ['x'], seed: 4 },
  ];
  const PATHS = [
    '/v1/completions',
    '/v1/chat/completions',
    '/tokenize',
    '/detokenize',
    '/v1/completions/render',
  ];
  const WEIRD: unknown[] = [
    null,
    true,
    -1,
    0,
    1e308,
    -0.5,
    2 ** 53 + 1,
    '',
    'x'.repeat(300),
    '\u0000\uffff\ud800',
    [],
    [null],
    [[[[[]]]]],
    {},
    { __proto__: { polluted: true } },
    { constructor: { prototype: {} } },
    [1, 'a', null],
    Array.from({ length: 40 }, (_, i) => i * 1000),
  ];

  function mutate(rng: Rng, v: unknown, depth: number): unknown {
    if (depth > 4 || rng.next() < 0.15) return WEIRD[rng.int(0, WEIRD.length - 1)];
    if (Array.isArray(v)) return v.map((x) => mutate(rng, x, depth + 1));
    if (v !== null && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        const r = rng.next();
        if (r < 0.1) continue;
        out[rng.next() < 0.05 ? k + '_' : k] = r < 0.5 ? mutate(rng, x, depth + 1) : x;
      }
      if (rng.next() < 0.2)
        out[['n', 'max_tokens', 'temperature', 'stop', 'messages', 'prompt', 'tokens'][rng.int(0, 6)]!] =
          WEIRD[rng.int(0, WEIRD.length - 1)];
      return out;
    }
    return v;
  }

  function body(rng: Rng): string {
    const r = rng.next();
    if (r < 0.1) {
      // Random bytes, including invalid UTF-8.
      const len = rng.int(0, 64);
      return Buffer.from(Array.from({ length: len }, () => rng.int(0, 255))).toString('latin1');
    }
    const text = JSON.stringify(mutate(rng, VALID[rng.int(0, VALID.length - 1)], 0)) ?? 'null';
    if (r < 0.2) return text.slice(0, rng.int(0, text.length)); // truncated
    return text;
  }

  it('never answers a 5xx and never crashes over 10,000 random bodies', async () => {
    const rng = new Rng(20261124);
    const statuses = new Map<number, number>();
    const total = 10_000;
    const concurrency = 16;
    let next = 0;
    async function worker(): Promise<void> {
      while (next < total) {
        const i = next++;
        const path = PATHS[i % PATHS.length]!;
        const r = await send('POST', path, body(rng));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status >= 500) throw new Error(`5xx for body #${i}: ${r.body}`);
        if (r.status >= 400) {
          const e = errorOf(r);
          expect(typeof e.message).toBe('string');
          expect(e.message).not.toMatch(/\n\s+at /);
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker));
    let count = 0;
    for (const c of statuses.values()) count += c;
    expect(count).toBe(total);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(100);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(1000);
    expect((await send('GET', '/health')).status).toBe(200);
  }, 120_000);
});
