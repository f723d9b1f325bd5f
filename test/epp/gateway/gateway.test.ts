/**
 * The standalone gateway's edges, in-process against small loopback servers: error mapping, request
 * ids, model rewrites, pass-through of upstream statuses, streaming without buffering, client
 * disconnects, mid-stream failures and retries.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startEpp, type RunningEpp } from '../../../src/epp/epp.js';
import { waitFor } from '../../helpers/wait.js';

const METRICS =
  'vllm:num_requests_waiting{model_name="m"} 0\nvllm:num_requests_running{model_name="m"} 0\nvllm:kv_cache_usage_perc{model_name="m"} 0\n';

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

async function upstream(
  handler: Handler,
): Promise<{ port: number; seen: { headers: IncomingMessage['headers']; body: string }[] }> {
  const seen: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.end(METRICS);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { port: (server.address() as AddressInfo).port, seen };
}

const ok: Handler = (_req, _body, res) => {
  const out =
    '{"id":"x","object":"text_completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}';
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
  res.end(out);
};

async function epp(
  ports: number[],
  extra: Partial<Parameters<typeof startEpp>[0]> = {},
): Promise<RunningEpp> {
  const e = await startEpp({
    gatewayHost: '127.0.0.1',
    gatewayPort: 0,
    metricsPort: 0,
    metricsHost: '127.0.0.1',
    endpoints: ports.map((p) => `127.0.0.1:${p}`),
    logLevel: 'silent',
    ...extra,
  });
  cleanup.push(() => e.close());
  return e;
}

function post(e: RunningEpp, body: unknown, headers: Record<string, string> = {}, path = '/v1/completions') {
  return fetch(e.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('the standalone gateway', () => {
  it('answers 503 with the dropped reason when the pool is empty, and is not healthy', async () => {
    const e = await epp([]);
    const res = await post(e, { model: 'm', prompt: 'x' });
    expect(res.status).toBe(503);
    expect(res.headers.get('x-llm-d-request-dropped-reason')).toBe('rejected-no-endpoints');
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('ServiceUnavailableError');
    expect((await fetch(e.url + '/health')).status).toBe(503);
  });

  it('answers 400 for a body that is not JSON or has no model, 413 for one too large', async () => {
    const u = await upstream(ok);
    const e = await epp([u.port], { maxRequestBodyBytes: 1000 });
    const bad = await post(e, '{not json');
    expect(bad.status).toBe(400);
    const noModel = await post(e, { prompt: 'x' });
    expect(noModel.status).toBe(400);
    expect(((await noModel.json()) as { error: { message: string } }).error.message).toMatch(
      /model not found/,
    );
    const big = await post(e, { model: 'm', prompt: 'x'.repeat(5000) });
    expect(big.status).toBe(413);
    expect(u.seen).toHaveLength(0);
    expect((await fetch(e.url + '/health')).status).toBe(200);
  });

  it('forwards the body unchanged with a request id, and returns that id', async () => {
    const u = await upstream(ok);
    const e = await epp([u.port]);
    const raw = '{"model":"m",   "prompt":"spacing kept"}';
    const res = await post(e, raw, { 'x-custom': 'yes', connection: 'keep-alive' });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id')!;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(u.seen[0]!.body).toBe(raw);
    expect(u.seen[0]!.headers['x-request-id']).toBe(id);
    expect(u.seen[0]!.headers['x-custom']).toBe('yes');
    const again = await post(e, raw, { 'x-request-id': 'mine-1' });
    expect(again.headers.get('x-request-id')).toBe('mine-1');
    expect(u.seen[1]!.headers['x-request-id']).toBe('mine-1');
  });

  it('rewrites the model when asked, and only then', async () => {
    const u = await upstream(ok);
    const e = await epp([u.port]);
    await post(e, { model: 'public', prompt: 'p' }, { 'x-llm-d-model-name-rewrite': 'internal-v2' }).then(
      (r) => r.text(),
    );
    expect(JSON.parse(u.seen[0]!.body)).toEqual({ model: 'internal-v2', prompt: 'p' });
  });

  it("passes the model server's errors through as they are", async () => {
    const u = await upstream((_q, _b, res) => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"queue full","type":"TooManyRequestsError","param":null,"code":429}}');
    });
    const e = await epp([u.port]);
    const res = await post(e, { model: 'm', prompt: 'x' });
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('queue full');
  });

  it('streams each event as the model server sends it, without buffering', async () => {
    let release: (() => void) | null = null;
    const u = await upstream((_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      release = () => res.end('data: {"n":2}\n\ndata: [DONE]\n\n');
    });
    const e = await epp([u.port]);
    const res = await post(e, { model: 'm', prompt: 'x', stream: true });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toBe('data: {"n":1}\n\n');
    expect(release).not.toBeNull();
    release!();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe('data: {"n":2}\n\ndata: [DONE]\n\n');
  });

  it('aborts the upstream request when the client goes away', async () => {
    let upstreamClosed = false;
    const u = await upstream((_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      res.on('close', () => (upstreamClosed = true));
    });
    const e = await epp([u.port]);
    const { port } = new URL(e.url!);
    const body = '{"model":"m","prompt":"x","stream":true}';
    const sock = connect(Number(port), '127.0.0.1', () =>
      sock.write(
        `POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    await new Promise<void>((r) => sock.once('data', () => r()));
    sock.destroy();
    await waitFor(() => upstreamClosed, 5000, 'the upstream request to be aborted');
  });

  it('cuts the client off when the model server fails mid-stream', async () => {
    const u = await upstream((req, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      setTimeout(() => req.socket.destroy(), 20);
    });
    const e = await epp([u.port]);
    const res = await post(e, { model: 'm', prompt: 'x', stream: true });
    await expect(res.text()).rejects.toThrow();
  });

  it('retries a refused connection on another endpoint', async () => {
    const u = await upstream(ok);
    // A port that was free a moment ago: nothing listens there.
    const dead = await upstream(ok);
    const deadPort = dead.port;
    await cleanup.pop()!();
    const e = await epp([deadPort, u.port], { seed: 1 });
    for (let i = 0; i < 6; i++) {
      const res = await post(e, { model: 'm', prompt: `p${i}` });
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(u.seen).toHaveLength(6);
  });

  it('answers 503 when no endpoint can be reached', async () => {
    const dead = await upstream(ok);
    const deadPort = dead.port;
    await cleanup.pop()!();
    const e = await epp([deadPort]);
    const res = await post(e, { model: 'm', prompt: 'x' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /Could not reach a model server/,
    );
  });

  it('keeps recent decisions on /debug/decisions and counts requests in its metrics', async () => {
    const u = await upstream(ok);
    const e = await epp([u.port]);
    await post(
      e,
      { model: 'm', prompt: 'x' },
      { 'x-request-id': 'dbg-1', 'x-llm-d-decision-record': 'true' },
    ).then((r) => r.text());
    const list = (await (await fetch(e.url + '/debug/decisions?request_id=dbg-1')).json()) as {
      requestId: string;
      destination: string[];
    }[];
    expect(list).toHaveLength(1);
    expect(list[0]!.destination).toEqual([`127.0.0.1:${u.port}`]);
    const metrics = await (await fetch(e.metricsUrl + '/metrics')).text();
    expect(metrics).toMatch(
      /llm_d_epp_request_total\{model_name="m",target_model_name="m",fairness_id="default-flow",priority="0"\} 1/,
    );
    expect(metrics).toMatch(
      /inference_objective_request_total\{model_name="m",target_model_name="m",priority="0"\} 1/,
    );
    expect(metrics).toMatch(/llm_d_epp_request_input_tokens_sum\{[^}]*\} 3/);
  });
});
