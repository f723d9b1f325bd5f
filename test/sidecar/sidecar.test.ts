/**
 * The sidecar end to end on loopback, in-process, between stand-in prefillers and decoders that
 * record what they receive: the transparent proxy, the P/D legs' bodies and headers, streaming,
 * the cached-tokens rewrite, every row of the error matrix, retries, timeouts, dead prefillers,
 * client disconnects and the SSRF gate.
 */
import { spawn } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { startSidecar } from '../../src/sidecar/sidecar.js';
import { loadServerCertificate } from '../../src/sidecar/tls.js';
import { waitFor } from '../helpers/wait.js';
import {
  KV,
  closeAll,
  deadPort,
  decodeOk,
  json,
  post,
  prefillAnswer,
  prefillOk,
  sidecar,
  standIn,
  type Seen,
  type StandIn,
  type StandInHandler,
} from './helpers.js';

afterEach(closeAll);

const BIG = '1152921504606846976';
const CHAT = `{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":20,"seed":${BIG}}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Flat = { object: string; message: string; type: string; param: string; code: number };

async function pd(
  opts: Parameters<typeof sidecar>[0] = {},
  prefillHandler = prefillOk,
  decodeHandler = decodeOk,
) {
  const p = await standIn(prefillHandler);
  const d = await standIn(decodeHandler);
  const s = await sidecar({ modelServerPort: d.port, ...opts });
  return { p, d, s, hdr: { 'x-prefiller-host-port': `127.0.0.1:${p.port}` } };
}

function parse(seen: Seen): Record<string, unknown> {
  return JSON.parse(seen.body) as Record<string, unknown>;
}

describe('the transparent proxy', () => {
  it('relays requests without the header byte for byte, and answers /health itself', async () => {
    const d = await standIn((req, body, res) =>
      json(res, 201, `{"path":${JSON.stringify(req.url)},"len":${body.length}}`, { 'x-from': 'decoder' }),
    );
    const s = await sidecar({ modelServerPort: d.port });
    const raw = `{"model":"m",  "prompt":"kept as is", "seed":${BIG}}`;
    const res = await post(
      s.url,
      raw,
      { authorization: 'Bearer k', 'x-custom': '1', 'x-encoder-hosts-ports': 'e:1' },
      '/v1/completions?a=b',
    );
    expect(res.status).toBe(201);
    expect(res.headers.get('x-from')).toBe('decoder');
    expect(await res.json()).toEqual({ path: '/v1/completions?a=b', len: raw.length });
    expect(d.seen[0]!.body).toBe(raw);
    expect(d.seen[0]!.headers).toMatchObject({ authorization: 'Bearer k', 'x-custom': '1' });
    expect(d.seen[0]!.headers).not.toHaveProperty('x-encoder-hosts-ports');
    // Anything else goes through too.
    const models = await fetch(s.url + '/v1/models');
    expect(models.status).toBe(201);
    expect(d.seen[1]).toMatchObject({ method: 'GET', path: '/v1/models' });
    // An empty prefiller header means no disaggregation.
    await post(s.url, raw, { 'x-prefiller-host-port': ' , ' });
    expect(d.seen[2]!.body).toBe(raw);
    expect(d.seen[2]!.headers).not.toHaveProperty('x-prefiller-host-port');
    // /health is local, even when the decoder is gone.
    await d.close();
    const h = await fetch(s.url + '/health');
    expect(h.status).toBe(200);
    expect(await h.text()).toBe('');
  });

  it('streams SSE through without buffering', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const d = await standIn((_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      void released.then(() => res.end('data: {"n":2}\n\ndata: [DONE]\n\n'));
    });
    const s = await sidecar({ modelServerPort: d.port });
    const res = await post(s.url, '{"stream":true}');
    const reader = res.body!.getReader();
    const first = await withDeadline(reader.read());
    expect(new TextDecoder().decode(first.value)).toBe('data: {"n":1}\n\n');
    release();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe('data: {"n":2}\n\ndata: [DONE]\n\n');
  });

  it("passes the decoder's errors through and maps a refused connection to llm-d's 503", async () => {
    const d = await standIn((_q, _b, res) => json(res, 429, '{"error":{"message":"busy"}}'));
    const s = await sidecar({ modelServerPort: d.port });
    const res = await post(s.url, CHAT);
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({ error: { message: 'busy' } });
    await d.close();
    const down = await post(s.url, CHAT);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({
      object: 'error',
      message:
        'The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.',
      type: 'ServiceUnavailable',
      param: '',
      code: 503,
    });
  });

  it('answers 502 BadGateway when the decoder breaks off before answering', async () => {
    const d = await standIn((req) => req.socket.destroy());
    const s = await sidecar({ modelServerPort: d.port });
    const res = await post(s.url, CHAT);
    expect(res.status).toBe(502);
    expect(((await res.json()) as Flat).type).toBe('BadGateway');
  });
});

describe('the P/D flow (nixlv2)', () => {
  it('sends the prefill leg one token, non-streaming, with the null-filled kv_transfer_params', async () => {
    const { p, d, s, hdr } = await pd();
    const client = `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false,"stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":4,"seed":${BIG},"kv_transfer_params":{"x":1}}`;
    const res = await post(s.url, client, {
      ...hdr,
      authorization: 'Bearer secret',
      'x-tenant': 't1',
      'x-kv-cache-source-host-port': '10.0.0.9:7777',
      'x-encoder-hosts-ports': '10.0.0.8:8000',
    });
    expect(res.status).toBe(200);
    await res.text();
    const prefill = p.seen[0]!;
    expect(prefill.path).toBe('/v1/chat/completions');
    expect(parse(prefill)).toMatchObject({
      stream: false,
      max_tokens: 1,
      max_completion_tokens: 1,
      min_tokens: 1,
      kv_transfer_params: {
        do_remote_decode: true,
        do_remote_prefill: false,
        remote_engine_id: null,
        remote_block_ids: null,
        remote_host: null,
        remote_port: null,
      },
    });
    expect(parse(prefill)).not.toHaveProperty('stream_options');
    expect(prefill.body).toContain(`"seed":${BIG}`);
    // Both legs: the client's headers, one x-request-id (a UUID), no routing header.
    for (const leg of [prefill, d.seen[0]!]) {
      expect(leg.headers).toMatchObject({ authorization: 'Bearer secret', 'x-tenant': 't1' });
      for (const h of ['x-prefiller-host-port', 'x-kv-cache-source-host-port', 'x-encoder-hosts-ports'])
        expect(leg.headers).not.toHaveProperty(h);
      expect(leg.rawHeaders.filter((h) => h.toLowerCase() === 'x-request-id')).toHaveLength(1);
    }
    expect(prefill.headers['x-request-id']).toMatch(UUID);
    expect(d.seen[0]!.headers['x-request-id']).toBe(prefill.headers['x-request-id']);
    // The decode leg: the client's body exactly, with the prefiller's kv_transfer_params.
    expect(d.seen[0]!.body).toBe(client.replace('{"x":1}', KV));
  });

  it("keeps the client's request id on both legs when it sent one", async () => {
    const { p, d, s, hdr } = await pd();
    await (await post(s.url, CHAT, { ...hdr, 'x-request-id': 'epp-123' })).text();
    expect(p.seen[0]!.headers['x-request-id']).toBe('epp-123');
    expect(d.seen[0]!.headers['x-request-id']).toBe('epp-123');
  });

  it('keeps integers beyond 2^53 exact on both legs and in the answer', async () => {
    const { p, d, s, hdr } = await pd();
    const res = await post(s.url, CHAT, hdr);
    const text = await res.text();
    expect(p.seen[0]!.body).toContain(`"seed":${BIG}`);
    expect(d.seen[0]!.body).toContain(`"seed":${BIG}`);
    expect(d.seen[0]!.body).toContain('"opaque":18446744073709551615');
    expect(text).toContain(`"seed_echo":${BIG}`);
  });

  it("sets the prefiller's cached tokens in a JSON answer, with a correct length", async () => {
    const { s, hdr } = await pd({}, (_q, _b, res) => json(res, 200, prefillAnswer(KV, 7)));
    const res = await post(s.url, CHAT, hdr);
    const text = await res.text();
    expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(text));
    const body = JSON.parse(text) as { usage: { prompt_tokens_details: { cached_tokens: number } } };
    expect(body.usage.prompt_tokens_details.cached_tokens).toBe(7);
    expect(text).toContain(`"seed_echo":${BIG}`);
  });

  it('streams the decode leg, rewriting the usage event and nothing else, event by event', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const events = [
      'data: {"id":"d","choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
      'data: {"id":"d","choices":[],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":9}}}\n\n',
      'data: [DONE]\n\n',
    ];
    const prefill: StandInHandler = (_q, _b, res) => json(res, 200, prefillAnswer(KV, 123));
    // Length-delimited on purpose: the rewrite changes the size, so the length must not be relayed.
    const { s, hdr, p, d } = await pd({}, prefill, (_q, _b, res) => {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'content-length': Buffer.byteLength(events.join('')),
      });
      res.write(events[0]);
      void released.then(() => {
        res.write(events[1]);
        res.end(events[2]);
      });
    });
    const res = await post(s.url, CHAT.replace('"max_tokens":20', '"stream":true,"max_tokens":20'), hdr);
    expect(res.headers.get('content-length')).toBeNull();
    expect(parse(p.seen[0]!).stream).toBe(false);
    const reader = res.body!.getReader();
    const first = await withDeadline(reader.read());
    expect(new TextDecoder().decode(first.value)).toBe(
      'data: {"id":"d","choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
    );
    expect(parse(d.seen[0]!).stream).toBe(true);
    release();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe(
      'data: {"id":"d","choices":[],"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":123}}}\n\n' +
        'data: [DONE]\n\n',
    );
  });

  it('handles the other P/D routes with their own token fields', async () => {
    const { p, d, s, hdr } = await pd();
    await (await post(s.url, '{"model":"m","prompt":"x","max_tokens":9}', hdr, '/v1/completions')).text();
    await (await post(s.url, '{"model":"m","input":"x","max_output_tokens":9}', hdr, '/v1/responses')).text();
    await (await post(s.url, '{"model":"m","messages":[],"max_tokens":9}', hdr, '/v1/messages')).text();
    await (
      await post(s.url, '{"token_ids":[1],"sampling_params":{"max_tokens":9}}', hdr, '/inference/v1/generate')
    ).text();
    expect(p.seen.map((x) => x.path)).toEqual([
      '/v1/completions',
      '/v1/responses',
      '/v1/messages',
      '/inference/v1/generate',
    ]);
    expect(parse(p.seen[1]!)).toMatchObject({ max_output_tokens: 1 });
    expect(parse(p.seen[3]!).sampling_params).toEqual({ max_tokens: 1, min_tokens: 1 });
    expect(parse(d.seen[3]!).sampling_params).toEqual({ max_tokens: 9 });
    // A GET to a P/D path is plain proxying.
    await fetch(s.url + '/v1/completions', { headers: hdr });
    expect(p.seen).toHaveLength(4);
    expect(d.seen[4]!.method).toBe('GET');
  });

  it('decodes with kv_transfer_params null when the prefiller sent none', async () => {
    const { d, s, hdr } = await pd({}, (_q, _b, res) => json(res, 200, prefillAnswer(null)));
    expect((await post(s.url, CHAT, hdr)).status).toBe(200);
    expect(parse(d.seen[0]!).kv_transfer_params).toBeNull();
  });

  it('picks the first prefiller, or a seeded random one with sampling', async () => {
    const ps = await Promise.all([standIn(prefillOk), standIn(prefillOk), standIn(prefillOk)]);
    const d = await standIn(decodeOk);
    const list = ps.map((x) => ` 127.0.0.1:${x.port}`).join(',');
    const plain = await sidecar({ modelServerPort: d.port });
    for (let i = 0; i < 5; i++) await (await post(plain.url, CHAT, { 'x-prefiller-host-port': list })).text();
    expect(ps.map((x) => x.seen.length)).toEqual([5, 0, 0]);
    const sampling = await sidecar({ modelServerPort: d.port, enablePrefillerSampling: true, seed: 42 });
    for (let i = 0; i < 30; i++)
      await (await post(sampling.url, CHAT, { 'x-prefiller-host-port': list })).text();
    expect(ps.filter((x) => x.seen.length > 0).length).toBe(3);
  });

  it('tolerates a leading http:// without SSRF protection', async () => {
    const { p, s } = await pd();
    const res = await post(s.url, CHAT, { 'x-prefiller-host-port': `http://127.0.0.1:${p.port}` });
    expect(res.status).toBe(200);
    expect(p.seen).toHaveLength(1);
  });
});

describe('the error matrix', () => {
  it('answers 400 BadRequestError for a body that is not JSON, sending nothing', async () => {
    const { p, d, s, hdr } = await pd();
    for (const body of ['{not json', '[1,2]', '"str"', '', '{"a":1}{']) {
      const res = await post(s.url, body, hdr);
      expect(res.status, body).toBe(400);
      const e = (await res.json()) as Flat;
      expect(e).toMatchObject({ object: 'error', type: 'BadRequestError', param: '', code: 400 });
    }
    expect(p.seen).toHaveLength(0);
    expect(d.seen).toHaveLength(0);
  });

  it('answers 400 for a prefill target that is not host:port, sending nothing', async () => {
    const { p, d, s } = await pd();
    for (const v of [
      '10.0.0.1:80/x',
      'file:///etc/passwd',
      'a@127.0.0.1:80',
      'fd00::1',
      '[::1]',
      'x'.repeat(9000),
      'h:0',
    ]) {
      const res = await post(s.url, CHAT, { 'x-prefiller-host-port': v });
      expect(res.status, v.slice(0, 40)).toBe(400);
      expect(((await res.json()) as Flat).message.length).toBeLessThan(200);
    }
    expect(p.seen).toHaveLength(0);
    expect(d.seen).toHaveLength(0);
  });

  it('relays a 4xx from the prefiller, headers and body, under either policy', async () => {
    for (const policy of ['fallback', 'fail'] as const) {
      const { d, s, hdr } = await pd({ prefillFailurePolicy: policy }, (_q, _b, res) =>
        json(res, 400, '{"error":{"message":"min_tokens too big","code":400}}', { 'x-vllm': 'p' }),
      );
      const res = await post(s.url, CHAT, hdr);
      expect(res.status).toBe(400);
      expect(res.headers.get('x-vllm')).toBe('p');
      expect(await res.json()).toEqual({ error: { message: 'min_tokens too big', code: 400 } });
      expect(d.seen).toHaveLength(0);
    }
  });

  it("falls back to a local decode of the client's body when the prefiller answers 5xx", async () => {
    const { d, s, hdr } = await pd({}, (_q, _b, res) => json(res, 500, '{"error":"boom"}'));
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(200);
    expect(d.seen[0]!.body).toBe(CHAT);
    expect(d.seen[0]!.headers['x-request-id']).toMatch(UUID);
  });

  it('relays the 5xx with the fail policy', async () => {
    const { d, s, hdr } = await pd({ prefillFailurePolicy: 'fail' }, (_q, _b, res) =>
      json(res, 500, '{"error":"boom"}'),
    );
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'boom' });
    expect(d.seen).toHaveLength(0);
  });

  it('falls back, or answers 502 BadGateway, when the prefiller is unreachable', async () => {
    const d = await standIn(decodeOk);
    const hdr = { 'x-prefiller-host-port': `127.0.0.1:${await deadPort()}` };
    const fallback = await sidecar({ modelServerPort: d.port });
    expect((await post(fallback.url, CHAT, hdr)).status).toBe(200);
    expect(d.seen[0]!.body).toBe(CHAT);
    const fail = await sidecar({ modelServerPort: d.port, prefillFailurePolicy: 'fail' });
    const res = await post(fail.url, CHAT, hdr);
    expect(res.status).toBe(502);
    expect((await res.json()) as Flat).toMatchObject({
      object: 'error',
      type: 'BadGateway',
      param: '',
      code: 502,
    });
    expect(d.seen).toHaveLength(1);
  });

  it('falls back, or answers 502, when the prefiller answers 2xx with something that is not JSON', async () => {
    const bad = (_q: unknown, _b: string, res: import('node:http').ServerResponse) =>
      json(res, 200, '<html>gateway</html>', { 'content-type': 'text/html' });
    const fb = await pd({}, bad);
    expect((await post(fb.s.url, CHAT, fb.hdr)).status).toBe(200);
    expect(fb.d.seen[0]!.body).toBe(CHAT);
    const fail = await pd({ prefillFailurePolicy: 'fail' }, bad);
    const res = await post(fail.s.url, CHAT, fail.hdr);
    expect(res.status).toBe(502);
    expect(((await res.json()) as Flat).message).toMatch(/not a JSON object/);
    expect(fail.d.seen).toHaveLength(0);
  });

  it("passes the decoder's non-2xx answer through after a prefill", async () => {
    const { s, hdr } = await pd({}, prefillOk, (_q, _b, res) =>
      json(res, 500, '{"error":{"message":"kv load failed","type":"InternalServerError","code":500}}'),
    );
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('kv load failed');
  });

  it('answers 503 ServiceUnavailable after a prefill when the decoder is not listening', async () => {
    const p = await standIn(prefillOk);
    const s = await sidecar({ modelServerPort: await deadPort() });
    const res = await post(s.url, CHAT, { 'x-prefiller-host-port': `127.0.0.1:${p.port}` });
    expect(res.status).toBe(503);
    expect(((await res.json()) as Flat).type).toBe('ServiceUnavailable');
  });
});

describe('retries and timeouts', () => {
  it('retries 502/503/504 with the back-off, then decodes with the answer that came', async () => {
    let n = 0;
    const { p, d, s, hdr } = await pd({ prefillMaxRetries: 3, prefillRetryBackoffMs: 20 }, (_q, _b, res) => {
      n++;
      if (n === 1) json(res, 503, '{}');
      else if (n === 2) json(res, 502, '{}');
      else json(res, 200, prefillAnswer());
    });
    expect((await post(s.url, CHAT, hdr)).status).toBe(200);
    expect(p.seen).toHaveLength(3);
    expect(new Set(p.seen.map((x) => x.headers['x-request-id'])).size).toBe(1);
    expect(d.seen[0]!.body).toContain(`"kv_transfer_params":${KV}`);
  });

  it('stops retrying when the retries are spent, and applies the policy', async () => {
    const { p, s, hdr } = await pd(
      { prefillMaxRetries: 1, prefillRetryBackoffMs: 5, prefillFailurePolicy: 'fail' },
      (_q, _b, res) => json(res, 504, '{"e":1}'),
    );
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(504);
    expect(p.seen).toHaveLength(2);
  });

  it('does not retry other statuses', async () => {
    const { p, s, hdr } = await pd(
      { prefillMaxRetries: 3, prefillRetryBackoffMs: 5, prefillFailurePolicy: 'fail' },
      (_q, _b, res) => json(res, 500, '{}'),
    );
    expect((await post(s.url, CHAT, hdr)).status).toBe(500);
    expect(p.seen).toHaveLength(1);
  });

  it('retries a prefiller that drops the connection', async () => {
    let n = 0;
    const { p, s, hdr } = await pd({ prefillMaxRetries: 2, prefillRetryBackoffMs: 5 }, (req, _b, res) => {
      if (++n < 3) req.socket.destroy();
      else json(res, 200, prefillAnswer());
    });
    expect((await post(s.url, CHAT, hdr)).status).toBe(200);
    expect(p.seen).toHaveLength(3);
  });

  it('bounds a hanging prefiller by --prefill-timeout, then falls back', async () => {
    const { p, d, s, hdr } = await pd({ prefillTimeoutMs: 300 }, () => undefined);
    const t0 = performance.now();
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(d.seen[0]!.body).toBe(CHAT);
    await waitFor(() => p.seen[0]!.closedEarly, 5_000, 'the prefill connection to close');
  });

  it('answers 504 for a hanging prefiller with the fail policy, retries and back-off included', async () => {
    let n = 0;
    const { p, d, s, hdr } = await pd(
      {
        prefillTimeoutMs: 300,
        prefillMaxRetries: 5,
        prefillRetryBackoffMs: 10_000,
        prefillFailurePolicy: 'fail',
      },
      (_q, _b, res) => {
        if (++n === 1) json(res, 503, '{}');
      },
    );
    const t0 = performance.now();
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(504);
    expect((await res.json()) as Flat).toMatchObject({ type: 'GatewayTimeoutError', code: 504 });
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(p.seen).toHaveLength(1);
    expect(d.seen).toHaveLength(0);
  });

  it('survives a prefiller process killed mid-request', async () => {
    // A prefiller that takes requests and never answers, and says when one arrived.
    const child = spawn(
      process.execPath,
      [
        '-e',
        "require('node:http').createServer((q) => q.on('end', () => console.log('req')).resume())" +
          ".listen(0, '127.0.0.1', function () { console.log(this.address().port) })",
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const lines: string[] = [];
    child.stdout!.on('data', (c: Buffer) =>
      lines.push(
        ...String(c)
          .split('\n')
          .filter((l) => l !== ''),
      ),
    );
    await waitFor(() => lines.length > 0, 10_000, 'the prefiller process');
    const port = Number(lines[0]);
    const d = await standIn(decodeOk);
    const s = await sidecar({ modelServerPort: d.port, prefillFailurePolicy: 'fail' });
    const pending = post(s.url, CHAT, { 'x-prefiller-host-port': `127.0.0.1:${port}` });
    await waitFor(() => lines.includes('req'), 5_000, 'the prefill to arrive');
    child.kill('SIGKILL');
    const res = await pending;
    expect(res.status).toBe(502);
    expect(d.seen).toHaveLength(0);
    const again = await sidecar({ modelServerPort: d.port });
    expect((await post(again.url, CHAT, { 'x-prefiller-host-port': `127.0.0.1:${port}` })).status).toBe(200);
  });
});

describe('client disconnects', () => {
  it('during the prefill: the prefill connection is closed and no decode is sent', async () => {
    const { p, d, s, hdr } = await pd({}, () => undefined);
    const ac = new AbortController();
    const pending = post(s.url, CHAT, hdr, '/v1/chat/completions', ac.signal).catch(() => null);
    await waitFor(() => p.seen.length === 1, 5_000, 'the prefill');
    ac.abort();
    await pending;
    await waitFor(() => p.seen[0]!.closedEarly, 5_000, 'the prefill connection to close');
    // The next request through the same sidecar is the first the decoder sees.
    expect((await post(s.url, '{"after":1}')).status).toBe(200);
    expect(d.seen.map((x) => x.body)).toEqual(['{"after":1}']);
  });

  it('during the decode: the decode connection is closed', async () => {
    const { d, s, hdr } = await pd({}, prefillOk, (_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
    });
    const ac = new AbortController();
    const res = await post(
      s.url,
      CHAT.replace('"max_tokens"', '"stream":true,"max_tokens"'),
      hdr,
      '/v1/chat/completions',
      ac.signal,
    );
    const reader = res.body!.getReader();
    await withDeadline(reader.read());
    ac.abort();
    await waitFor(() => d.seen[0]!.closedEarly, 5_000, 'the decode connection to close');
  });

  it('during a transparent proxy: the upstream connection is closed', async () => {
    const d = await standIn(() => undefined);
    const s = await sidecar({ modelServerPort: d.port });
    const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
    sock.write('POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}');
    await waitFor(() => d.seen.length === 1, 5_000, 'the request');
    sock.destroy();
    await waitFor(() => d.seen[0]!.closedEarly, 5_000, 'the upstream connection to close');
  });
});

describe('SSRF protection', () => {
  const hostile = (port: number): string[] => [
    `10.9.9.9:${port}`,
    `http://127.0.0.1:${port}`,
    `https://127.0.0.1:${port}`,
    `file://127.0.0.1:${port}`,
    `file:///etc/passwd`,
    `a@127.0.0.1:${port}`,
    `localhost:${port}`,
    `[::1]:${port}`,
    `::1`,
    `127.0.0.1.nip.io:${port}`,
    `127.0.0.2:${port}`,
    '   ',
    'x'.repeat(9000),
  ];

  it('contacts only allowed hosts, any port, and refuses the rest with the exact 403 text', async () => {
    const { p, d, s } = await pd({ enableSsrfProtection: true, allowedPrefillHosts: ['127.0.0.1'] });
    const ok = await post(s.url, CHAT, { 'x-prefiller-host-port': `127.0.0.1:${p.port}` });
    expect(ok.status).toBe(200);
    expect(p.seen).toHaveLength(1);
    for (const v of hostile(p.port)) {
      const res = await post(s.url, CHAT, { 'x-prefiller-host-port': v });
      if (v.trim() === '') {
        // Empty: no disaggregation, straight to the decoder.
        expect(res.status).toBe(200);
        continue;
      }
      expect(res.status, v.slice(0, 40)).toBe(v.length > 8192 ? 400 : 403);
      if (res.status === 403) {
        expect(await res.text()).toBe('Forbidden: prefill target not allowed by SSRF protection\n');
        expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      }
    }
    expect(p.seen).toHaveLength(1);
    expect(d.seen).toHaveLength(2);
  });

  it('checks the chosen entry of a list, and brackets IPv6 hosts', async () => {
    const { p, s } = await pd({ enableSsrfProtection: true, allowedPrefillHosts: ['127.0.0.1', '::1'] });
    expect(
      (await post(s.url, CHAT, { 'x-prefiller-host-port': `10.0.0.1:1,127.0.0.1:${p.port}` })).status,
    ).toBe(403);
    expect(
      (await post(s.url, CHAT, { 'x-prefiller-host-port': `, 127.0.0.1:${p.port}, 10.0.0.1:1` })).status,
    ).toBe(200);
    const commas = ','.repeat(4000) + ` 127.0.0.1:${p.port} ` + ','.repeat(4000);
    expect((await post(s.url, CHAT, { 'x-prefiller-host-port': commas })).status).toBe(200);
    const v6 = await post(s.url, CHAT, { 'x-prefiller-host-port': `[::1]:${await deadPort()}` });
    // Allowed, and nothing listens there: the fallback decodes.
    expect(v6.status).toBe(200);
    expect(p.seen).toHaveLength(2);
  });

  it('refuses every prefill with an empty allowlist, and still proxies the rest', async () => {
    const { p, d, s, hdr } = await pd({ enableSsrfProtection: true });
    expect((await post(s.url, CHAT, hdr)).status).toBe(403);
    expect((await post(s.url, CHAT)).status).toBe(200);
    expect(p.seen).toHaveLength(0);
    expect(d.seen).toHaveLength(1);
  });

  it('checks the allowlist before the body', async () => {
    const { s } = await pd({ enableSsrfProtection: true });
    expect((await post(s.url, '{bad', { 'x-prefiller-host-port': '10.0.0.1:80' })).status).toBe(403);
  });
});

describe('the other connectors', () => {
  it("shared-storage: one-token prefill, then the client's body untouched", async () => {
    const { p, d, s, hdr } = await pd({ connector: 'lmcache' });
    const res = await post(s.url, CHAT, hdr);
    const body = (await res.json()) as { usage: { prompt_tokens_details: { cached_tokens: number } } };
    expect(parse(p.seen[0]!)).toMatchObject({ max_tokens: 1, max_completion_tokens: 1, stream: false });
    expect(parse(p.seen[0]!)).not.toHaveProperty('kv_transfer_params');
    expect(d.seen[0]!.body).toBe(CHAT);
    expect(body.usage.prompt_tokens_details.cached_tokens).toBe(3);
  });

  it('nixl v1: top-level transfer fields', async () => {
    const { p, d, s, hdr } = await pd({ connector: 'nixl' }, (_q, _b, res) =>
      json(res, 200, '{"remote_block_ids":[1],"remote_engine_id":"e","remote_host":"h","remote_port":5600}'),
    );
    expect((await post(s.url, CHAT, hdr)).status).toBe(200);
    expect(parse(p.seen[0]!)).toMatchObject({ do_remote_decode: true, stream: false, max_tokens: 20 });
    expect(parse(d.seen[0]!)).toMatchObject({
      do_remote_prefill: true,
      remote_block_ids: [1],
      remote_port: 5600,
    });
    expect(parse(d.seen[0]!)).not.toHaveProperty('do_remote_decode');
  });

  it('sglang: both legs at once with the same bootstrap fields; the decode answers the client', async () => {
    let releasePrefill!: () => void;
    const prefillHeld = new Promise<void>((r) => (releasePrefill = r));
    const { p, d, s, hdr } = await pd({ connector: 'sglang', sglangBootstrapPort: 9100 }, (_q, _b, res) => {
      void prefillHeld.then(() => json(res, 200, '{"discarded":true}'));
    });
    // The decode completes while the prefill is still held.
    const res = await post(s.url, CHAT, hdr);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('"id":"d"');
    expect(p.seen).toHaveLength(1);
    releasePrefill();
    expect(p.seen[0]!.body).toBe(d.seen[0]!.body);
    expect(parse(d.seen[0]!)).toMatchObject({
      bootstrap_host: '127.0.0.1',
      bootstrap_port: 9100,
      max_tokens: 20,
    });
    expect(d.seen[0]!.body).toMatch(/"bootstrap_room":\d{18,19}[,}]/);
    expect(d.seen[0]!.body).toContain(`"seed":${BIG}`);
  });

  it('sglang: a client that goes away cancels both legs', async () => {
    const { p, d, s, hdr } = await pd(
      { connector: 'sglang' },
      () => undefined,
      () => undefined,
    );
    const ac = new AbortController();
    const pending = post(s.url, CHAT, hdr, '/v1/chat/completions', ac.signal).catch(() => null);
    await waitFor(() => p.seen.length === 1 && d.seen.length === 1, 5_000, 'both legs');
    ac.abort();
    await pending;
    await waitFor(() => p.seen[0]!.closedEarly && d.seen[0]!.closedEarly, 5_000, 'both legs to close');
  });
});

describe('listeners and TLS', () => {
  it('serves one listener per data-parallel rank, each with its own model server port', async () => {
    const [d0] = (await adjacentStandIns([
      (_q, _b, res) => json(res, 200, '{"rank":0}'),
      (_q, _b, res) => json(res, 200, '{"rank":1}'),
    ])) as [StandIn, StandIn];
    const s = await sidecar({ modelServerPort: d0.port, dataParallelSize: 2 });
    expect(s.urls).toHaveLength(2);
    expect(await (await post(s.urls[1]!, '{}')).json()).toEqual({ rank: 1 });
    expect(await (await post(s.urls[0]!, '{}')).json()).toEqual({ rank: 0 });
  });

  it('serves HTTPS with a self-signed certificate when asked', async () => {
    const d = await standIn(decodeOk);
    const s = await sidecar({ modelServerPort: d.port, secureProxy: true });
    expect(s.url).toMatch(/^https:/);
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = httpsRequest(s.url + '/v1/models', { rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      r.on('error', reject);
      r.end();
    });
    expect(status).toBe(200);
    expect(body).toContain('"id":"d"');
    await expect(
      startSidecar({ port: 0, secureProxy: true, certPath: '/nonexistent', logLevel: 'silent' }),
    ).rejects.toThrow(ConfigError);
  });

  it('reaches a TLS prefiller with --enable-tls, verifying its certificate unless told not to', async () => {
    const pair = await loadServerCertificate(undefined);
    const p = await standIn(prefillOk, pair);
    const d = await standIn(decodeOk);
    const hdr = { 'x-prefiller-host-port': `127.0.0.1:${p.port}` };
    const insecure = await sidecar({
      modelServerPort: d.port,
      enableTls: ['prefiller'],
      tlsInsecureSkipVerify: ['prefiller'],
    });
    expect((await post(insecure.url, CHAT, hdr)).status).toBe(200);
    expect(p.seen).toHaveLength(1);
    expect(d.seen[0]!.body).toContain('"remote_engine_id":"0f7c-uuid"');
    const strict = await sidecar({
      modelServerPort: d.port,
      enableTls: ['prefiller'],
      prefillFailurePolicy: 'fail',
    });
    expect((await post(strict.url, CHAT, hdr)).status).toBe(502);
    expect(p.seen).toHaveLength(1);
  });
});

function withDeadline<T>(p: Promise<T>, ms = 5_000): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error('no data before the deadline: buffered?')), ms),
    ),
  ]);
}

/** Stand-ins on consecutive ports, as data-parallel ranks of one model server listen. */
async function adjacentStandIns(handlers: StandInHandler[]): Promise<StandIn[]> {
  for (let tries = 0; tries < 50; tries++) {
    const first = await standIn(handlers[0]!);
    const rest: StandIn[] = [];
    try {
      for (let i = 1; i < handlers.length; i++)
        rest.push(await standIn(handlers[i]!, undefined, first.port + i));
      return [first, ...rest];
    } catch {
      await Promise.all([first, ...rest].map((x) => x.close()));
    }
  }
  throw new Error('no consecutive free ports');
}
