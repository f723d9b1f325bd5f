/**
 * Stopping the EPP with a drain (SIGTERM in a rolling update): health turns NOT_SERVING at once, new
 * ext_proc streams are refused, a stream in flight may finish, and one that does not is cut when the
 * drain time is up.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../../src/engine/serve.js';
import { startEpp, type RunningEpp } from '../../../src/epp/epp.js';
import { protos } from '../../../src/epp/extproc/protocol.js';
import { waitFor } from '../../helpers/wait.js';
import { body, connect, exchange, headers, responseBody, responseHeaders, type Decoded } from './client.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const NOT_SERVING = 2;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function start(): Promise<{ epp: RunningEpp; client: ReturnType<typeof connect> }> {
  const serve: RunningServe = await startServe({
    port: 0,
    host: '127.0.0.1',
    model: MODEL,
    logLevel: 'silent',
    simFixedStepMs: 1,
  });
  cleanup.push(() => serve.close());
  const epp = await startEpp({
    gatewayPort: null,
    metricsPort: null,
    grpcHost: '127.0.0.1',
    grpcPort: 0,
    grpcHealthPort: 0,
    secureServing: false,
    endpoints: [`127.0.0.1:${serve.port}`],
    logLevel: 'silent',
  });
  cleanup.push(() => epp.close());
  await waitFor(() => epp.datastore.list().every((e) => e.metrics.updateTime > 0), 5000);
  const client = connect(epp.grpcPort!);
  cleanup.push(() => client.close());
  return { epp, client };
}

function readiness(port: number): Promise<number> {
  const Ctor = grpc.makeGenericClientConstructor(protos().health, 'Health');
  const h = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(req: { service: string }, cb: (err: Error | null, res: { status: number }) => void): void;
  };
  return new Promise<number>((resolve, reject) =>
    h.Check({ service: 'readiness' }, (err, res) => {
      h.close();
      if (err) reject(err);
      else resolve(res.status);
    }),
  ).finally(() => h.close());
}

const request = JSON.stringify({ model: MODEL, prompt: 'hello', max_tokens: 2 });
const reqHeaders = { ':method': 'POST', ':path': '/v1/completions', 'content-type': 'application/json' };

/** A stream routed and waiting for its response phases; resolves with the call and its end. */
async function routedStream(client: ReturnType<typeof connect>): Promise<{
  call: grpc.ClientDuplexStream<Record<string, unknown>, Decoded>;
  ended: Promise<number>;
}> {
  const call = client.Process();
  const responses: Decoded[] = [];
  const ended = new Promise<number>((resolve) => {
    call.on('error', (e: grpc.ServiceError) => resolve(e.code));
    call.on('status', (s: grpc.StatusObject) => resolve(s.code));
  });
  call.on('data', (r: Decoded) => responses.push(r));
  call.write(headers(reqHeaders));
  call.write(body(request, true));
  await waitFor(() => responses.some((r) => r.request_body !== undefined), 5000, 'the request routed');
  return { call, ended };
}

describe('ext_proc drain', () => {
  it('reports NOT_SERVING, refuses new streams and lets the one in flight finish', async () => {
    const { epp, client } = await start();
    const { call, ended } = await routedStream(client);
    let closed = false;
    const closing = epp.close(10_000).then(() => (closed = true));
    await waitFor(async () => (await readiness(epp.grpcHealthPort!)) === NOT_SERVING, 5000, 'NOT_SERVING');
    const late = await exchange(client, [headers(reqHeaders), body(request, true)]);
    expect(late.code).not.toBe(grpc.status.OK);
    expect(closed).toBe(false);
    call.write(responseHeaders({ ':status': '200', 'content-type': 'application/json' }));
    call.write(responseBody('{"choices":[]}', true));
    call.end();
    expect(await ended).toBe(grpc.status.OK);
    await closing;
  });

  it('cuts a stream still open when the drain time is up', async () => {
    const { epp, client } = await start();
    const { ended } = await routedStream(client);
    const t0 = performance.now();
    await epp.close(300);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await ended).not.toBe(grpc.status.OK);
  });
});
