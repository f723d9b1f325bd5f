/**
 * The ext_proc server over real gRPC on loopback, against real in-process `llmd serve` endpoints: the
 * routing header and metadata, chunked and large bodies, model rewrites both ways, streaming and
 * buffered responses, header-only requests, subset hints, error responses, cancellation and health.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../../src/engine/serve.js';
import { startEpp, type RunningEpp } from '../../../src/epp/epp.js';
import { protos } from '../../../src/epp/extproc/protocol.js';
import { INFLIGHT_LOAD_ATTR } from '../../../src/epp/framework/data-keys.js';
import { waitFor } from '../../helpers/wait.js';
import {
  bodiesOf,
  body,
  connect,
  exchange,
  headerMap,
  headers,
  metadataOf,
  responseBody,
  responseHeaders,
} from './client.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const SUBSET = 'envoy.lb.subset_hint';
const SUBSET_KEY = 'x-gateway-destination-endpoint-subset';

let serves: RunningServe[] = [];
let epp: RunningEpp;
let client: ReturnType<typeof connect>;
const cleanup: (() => Promise<void> | void)[] = [];

function hostPort(s: RunningServe, host: string): string {
  return `${host}:${s.port}`;
}

const HOSTS = ['127.0.0.1', '127.0.0.2'];

/** An EPP serving only ext_proc, on a free loopback port. */
const GRPC_ONLY = { gatewayPort: null, metricsPort: null, grpcHost: '127.0.0.1', grpcPort: 0 } as const;

beforeAll(async () => {
  serves = await Promise.all(
    HOSTS.map((host) => startServe({ port: 0, host, model: MODEL, logLevel: 'silent', simFixedStepMs: 1 })),
  );
  cleanup.push(...serves.map((s) => () => s.close()));
  epp = await startEpp({
    gatewayPort: null,
    metricsPort: null,
    grpcHost: '127.0.0.1',
    grpcPort: 0,
    grpcHealthPort: 0,
    endpoints: serves.map((s, i) => hostPort(s, HOSTS[i]!)),
    logLevel: 'silent',
    maxRequestBodyBytes: 4 * 1024 * 1024,
  });
  cleanup.push(() => epp.close());
  client = connect(epp.grpcPort!);
  cleanup.push(() => client.close());
  await waitFor(() => epp.datastore.list().every((e) => e.metrics.updateTime > 0), 5000);
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

const destinations = (): string[] => serves.map((s, i) => hostPort(s, HOSTS[i]!));

function reqHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ':method': 'POST',
    ':path': '/v1/completions',
    ':authority': 'gw',
    'content-type': 'application/json',
    ...extra,
  };
}

describe('ext_proc routing', () => {
  it('routes a request: destination header, clear_route_cache, envoy.lb metadata, body forwarded', async () => {
    const raw = JSON.stringify({ model: MODEL, prompt: 'hello', max_tokens: 2 });
    const r = await exchange(client, [headers(reqHeaders({ 'x-custom': 'yes' })), body(raw, true)]);
    expect(r.code).toBe(0);
    const [first, ...rest] = r.responses;
    const common = first!.request_headers!.response!;
    expect(common.clear_route_cache).toBe(true);
    const set = headerMap(common.header_mutation?.set_headers);
    const dest = set['x-gateway-destination-endpoint']!;
    expect(destinations()).toContain(dest);
    expect(set['content-length']).toBe(String(Buffer.byteLength(raw)));
    expect(set['x-custom']).toBe('yes');
    expect(set['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(set[':path']).toBeUndefined();
    expect(metadataOf(first!)).toEqual({ 'envoy.lb': { 'x-gateway-destination-endpoint': dest } });
    const b = bodiesOf(rest, 'request_body');
    expect(b.body.toString()).toBe(raw);
    expect(b.eos).toBe(true);
  });

  it('buffers a body split across many chunks and re-emits a large one in chunks of at most 62000 bytes', async () => {
    const raw = Buffer.from(JSON.stringify({ model: MODEL, prompt: 'word '.repeat(40_000), max_tokens: 1 }));
    expect(raw.length).toBeGreaterThan(62000 * 3);
    const msgs = [headers(reqHeaders())];
    for (let off = 0; off < raw.length; off += 1000) {
      const end = Math.min(off + 1000, raw.length);
      msgs.push(body(raw.subarray(off, end), end === raw.length));
    }
    const r = await exchange(client, msgs);
    expect(r.code).toBe(0);
    expect(r.responses[0]!.request_headers).toBeDefined();
    const b = bodiesOf(r.responses.slice(1), 'request_body');
    expect(b.body.equals(raw)).toBe(true);
    expect(b.chunks.length).toBe(Math.ceil(raw.length / 62000));
    expect(b.chunks.every((c) => c.length <= 62000)).toBe(true);
    expect(b.eos).toBe(true);
  });

  it('rewrites the model (new Content-Length) and rewrites it back in a buffered response, with usage', async () => {
    const raw = JSON.stringify({ model: 'alias', prompt: 'x', max_tokens: 1 });
    const out = JSON.stringify({
      id: 'c',
      object: 'text_completion',
      model: MODEL,
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
    const r = await exchange(client, [
      headers(reqHeaders({ 'x-llm-d-model-name-rewrite': MODEL })),
      body(raw, true),
      responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
      responseBody(out.slice(0, 20), false),
      responseBody(out.slice(20), true),
    ]);
    expect(r.code).toBe(0);
    const set = headerMap(r.responses[0]!.request_headers!.response!.header_mutation!.set_headers);
    const sent = bodiesOf(r.responses, 'request_body').body.toString();
    expect(JSON.parse(sent)).toMatchObject({ model: MODEL });
    expect(set['content-length']).toBe(String(Buffer.byteLength(sent)));
    expect(set['x-llm-d-model-name-rewrite']).toBeUndefined();
    const rh = r.responses.find((x) => x.response_headers)!;
    expect(headerMap(rh.response_headers!.response!.header_mutation!.set_headers)).toMatchObject({
      'x-went-into-resp-headers': 'true',
      'content-type': 'application/json',
    });
    const back = bodiesOf(r.responses, 'response_body');
    expect(back.chunks).toHaveLength(1);
    expect(JSON.parse(back.body.toString())).toMatchObject({ model: 'alias', usage: { prompt_tokens: 3 } });
  });

  it('echoes each chunk of a streaming response at once', async () => {
    const call = client.Process();
    const got: Array<Record<string, unknown>> = [];
    const next = (): Promise<Record<string, unknown>> =>
      new Promise((resolve) => {
        if (got.length > 0) return resolve(got.shift()!);
        call.once('data', () => resolve(got.shift()!));
      });
    call.on('data', (d: Record<string, unknown>) => got.push(d));
    call.write(headers(reqHeaders({ ':path': '/v1/chat/completions' })));
    call.write(
      body(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true }), true),
    );
    expect(await next()).toHaveProperty('request_headers');
    expect(await next()).toHaveProperty('request_body');
    call.write(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }));
    expect(await next()).toHaveProperty('response_headers');
    const ev = 'data: {"object":"chat.completion.chunk","model":"' + MODEL + '","choices":[]}\n\n';
    call.write(responseBody(ev, false));
    const c1 = (await next()) as {
      response_body: {
        response: { body_mutation: { streamed_response: { body: Buffer; end_of_stream: boolean } } };
      };
    };
    expect(c1.response_body.response.body_mutation.streamed_response.body.toString()).toBe(ev);
    expect(c1.response_body.response.body_mutation.streamed_response.end_of_stream).toBe(false);
    call.write(responseBody('data: [DONE]\n\n', true));
    const c2 = (await next()) as typeof c1;
    expect(c2.response_body.response.body_mutation.streamed_response.end_of_stream).toBe(true);
    const done = new Promise<void>((resolve) => call.on('status', () => resolve()));
    call.end();
    await done;
  });

  it('takes request trailers as the end of the body, and answers each trailer phase', async () => {
    const raw = JSON.stringify({ model: MODEL, prompt: 'trailers', max_tokens: 1 });
    const r = await exchange(client, [
      headers(reqHeaders()),
      body(raw, false),
      { request_trailers: { trailers: { headers: [] } } },
      responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
      responseBody('{}', false),
      { response_trailers: { trailers: { headers: [] } } },
    ]);
    expect(r.code).toBe(0);
    expect(r.responses.map((x) => Object.keys(x).filter((k) => k !== 'dynamic_metadata')[0])).toEqual([
      'request_headers',
      'request_body',
      'request_trailers',
      'response_headers',
      'response_body',
      'response_trailers',
    ]);
    expect(bodiesOf(r.responses, 'response_body').body.toString()).toBe('{}');
    expect(bodiesOf(r.responses, 'request_body').body.toString()).toBe(raw);
  });

  it('answers a header-only request at once with some endpoint', async () => {
    const r = await exchange(client, [headers({ ':method': 'GET', ':path': '/v1/models' }, true)]);
    expect(r.code).toBe(0);
    expect(r.responses).toHaveLength(1);
    const set = headerMap(r.responses[0]!.request_headers!.response!.header_mutation!.set_headers);
    expect(destinations()).toContain(set['x-gateway-destination-endpoint']);
    expect(set['content-length']).toBeUndefined();
  });
});

describe('ext_proc subset hints', () => {
  const prompt = JSON.stringify({ model: MODEL, prompt: 'subset', max_tokens: 1 });
  const routeWith = async (subset: string[]) => {
    const r = await exchange(client, [
      headers(reqHeaders()),
      body(prompt, true, { [SUBSET]: { [SUBSET_KEY]: subset } }),
    ]);
    return r;
  };

  it('routes only to endpoints whose IP is in the subset, ignoring the port', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await routeWith([`127.0.0.2:1`]);
      const set = headerMap(r.responses[0]!.request_headers!.response!.header_mutation!.set_headers);
      expect(set['x-gateway-destination-endpoint']).toBe(destinations()[1]);
    }
  });

  it('a partial subset keeps the endpoints it names', async () => {
    const r = await routeWith([destinations()[0]!, '10.9.9.9:8000']);
    const set = headerMap(r.responses[0]!.request_headers!.response!.header_mutation!.set_headers);
    expect(set['x-gateway-destination-endpoint']).toBe(destinations()[0]);
  });

  it('an empty subset is no candidates: 503 rejected-no-endpoints', async () => {
    const r = await routeWith([]);
    const im = r.responses[0]!.immediate_response!;
    expect(im.status!.code).toBe(503);
    expect(headerMap(im.headers!.set_headers)['x-llm-d-request-dropped-reason']).toBe(
      'rejected-no-endpoints',
    );
    expect(r.responses).toHaveLength(1);
  });
});

describe('ext_proc errors', () => {
  it('400 for a body that is not JSON, as an ImmediateResponse', async () => {
    const r = await exchange(client, [headers(reqHeaders()), body('{not json', true)]);
    expect(r.code).toBe(0);
    expect(r.responses).toHaveLength(1);
    const im = r.responses[0]!.immediate_response!;
    expect(im.status!.code).toBe(400);
    expect(im.body).toMatch(/^inference error: BadRequest - /);
  });

  it('429 rejected-saturated when every endpoint is filtered out', async () => {
    const e = await startEpp({
      ...GRPC_ONLY,
      endpoints: [hostPort(serves[0]!, HOSTS[0]!)],
      logLevel: 'silent',
      configText: `
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: label-selector-filter
  name: none
  parameters:
    matchLabels: { role: nobody }
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: none
  - pluginRef: max-score-picker
`,
    });
    const c = connect(e.grpcPort!);
    try {
      const r = await exchange(c, [
        headers(reqHeaders()),
        body(JSON.stringify({ model: MODEL, prompt: 'x' }), true),
      ]);
      const im = r.responses[0]!.immediate_response!;
      expect(im.status!.code).toBe(429);
      expect(headerMap(im.headers!.set_headers)['x-llm-d-request-dropped-reason']).toBe('rejected-saturated');
    } finally {
      c.close();
      await e.close();
    }
  });

  it('503 with an empty pool; 500 for a header-only request with an empty pool', async () => {
    const e = await startEpp({
      ...GRPC_ONLY,
      logLevel: 'silent',
    });
    const c = connect(e.grpcPort!);
    try {
      const r = await exchange(c, [
        headers(reqHeaders()),
        body(JSON.stringify({ model: MODEL, prompt: 'x' }), true),
      ]);
      expect(r.responses[0]!.immediate_response!.status!.code).toBe(503);
      const g = await exchange(c, [headers({ ':method': 'GET', ':path': '/' }, true)]);
      expect(g.responses[0]!.immediate_response!.status!.code).toBe(500);
    } finally {
      c.close();
      await e.close();
    }
  });

  it('a malformed message ends the stream with INVALID_ARGUMENT, and the server keeps serving', async () => {
    const r = await exchange(client, [{}]);
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
    const ok = await exchange(client, [
      headers(reqHeaders()),
      body(JSON.stringify({ model: MODEL, prompt: 'y' }), true),
    ]);
    expect(ok.responses[0]!.request_headers).toBeDefined();
  });

  it('a client that cancels mid-request leaves nothing behind', async () => {
    const call = client.Process();
    call.on('error', () => undefined);
    call.write(headers(reqHeaders()));
    call.write(body('{"model":', false));
    await new Promise((r) => setTimeout(r, 20));
    call.cancel();
    const routed = client.Process();
    const got: unknown[] = [];
    routed.on('data', (d) => got.push(d));
    routed.on('error', () => undefined);
    routed.write(headers(reqHeaders()));
    routed.write(body(JSON.stringify({ model: MODEL, prompt: 'z' }), true));
    await waitFor(() => got.length >= 2, 2000);
    routed.cancel();
    await waitFor(() => epp.extProc!.handler.active.size === 0, 2000);
  });
});

describe('ext_proc cancellation', () => {
  it('a stream cancelled after routing, or mid-response, releases its in-flight load', async () => {
    const e = await startEpp({
      ...GRPC_ONLY,
      endpoints: [hostPort(serves[0]!, HOSTS[0]!)],
      logLevel: 'silent',
      configText: `
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: max-score-picker
`,
    });
    const c = connect(e.grpcPort!);
    const inflight = () => e.datastore.list()[0]!.attributes.get(INFLIGHT_LOAD_ATTR)?.requests ?? 0;
    try {
      for (const midResponse of [false, true]) {
        const call = c.Process();
        call.on('error', () => undefined);
        const got: unknown[] = [];
        call.on('data', (d) => got.push(d));
        call.write(headers(reqHeaders()));
        call.write(body(JSON.stringify({ model: MODEL, prompt: 'c', max_tokens: 1 }), true));
        await waitFor(() => got.length >= 2, 2000);
        if (midResponse) {
          call.write(responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }));
          call.write(responseBody('data: {}\n\n', false));
          await waitFor(() => got.length >= 4, 2000);
        }
        expect(inflight()).toBe(1);
        call.cancel();
        await waitFor(() => inflight() === 0 && e.extProc!.handler.active.size === 0, 2000);
      }
    } finally {
      c.close();
      await e.close();
    }
  });
});

describe('gRPC health', () => {
  it('serves liveness, readiness, "" and the ext_proc service; unknown names are SERVICE_UNKNOWN', async () => {
    const Ctor = grpc.makeGenericClientConstructor(protos().health, 'Health');
    const h = new Ctor(
      `127.0.0.1:${epp.grpcHealthPort!}`,
      grpc.credentials.createInsecure(),
    ) as unknown as grpc.Client & {
      Check(req: { service: string }, cb: (err: Error | null, res: { status: number }) => void): void;
    };
    const check = (service: string) =>
      new Promise<number>((resolve, reject) =>
        h.Check({ service }, (err, res) => (err ? reject(err) : resolve(res.status))),
      );
    try {
      for (const s of ['liveness', 'readiness', '', 'envoy.service.ext_proc.v3.ExternalProcessor']) {
        expect(await check(s)).toBe(1);
      }
      expect(await check('nope')).toBe(3);
    } finally {
      h.close();
    }
  });
});
