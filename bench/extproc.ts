/**
 * `npm run bench:extproc`: what one Envoy ext_proc exchange costs for a request with an ~8k-token
 * prompt, in process against two real `llmd serve` endpoints, one request at a time over one gRPC
 * channel (as Envoy keeps one to the EPP):
 *  - request phase: request headers, then the body in 16 KiB messages, until the routing reply and the
 *    re-emitted body (≤ 62000-byte chunks) are back — the time Envoy holds the request;
 *  - full exchange: the same plus response headers and a small JSON body through the response phase;
 *  - the director alone (parse, tokenize, prefix hashing, scheduling) on the same bodies, in process;
 *  - for scale, a bare grpc-js server on the same service that, at the body's end, sends back an empty
 *    headers response and the body in the same chunks, with no parsing or scheduling: the floor that a
 *    gRPC stream per request and the body's round trip cost on this machine.
 * p50 and p99 in milliseconds.
 */
import * as grpc from '@grpc/grpc-js';
import { startServe, type RunningServe } from '../src/engine/serve.js';
import { startEpp } from '../src/epp/epp.js';
import { bodyChunks, protos } from '../src/epp/extproc/protocol.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const WARMUP = 50;
const REQUESTS = 400;
const MESSAGE_BYTES = 16 * 1024;
const WORDS =
  'the of and to in is that for it as with was on be by at this have from or one had not but what all were when we there can an your which their said if do will each about how up out them then she many some so these would other into has more her two like him see time could no make than first been its who now people my made over did down only way find use may water long little very after words called just where most know'.split(
    ' ',
  );

/** ~8192 tokens of common English words, distinct from the first word on. */
function prompt(i: number): string {
  const out: string[] = [`request${i}`];
  for (let k = 0; k < 8191; k++) out.push(WORDS[(k * 7 + i) % WORDS.length]!);
  return out.join(' ');
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summary(xs: number[]): { p50: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
}

type Duplex = grpc.ClientDuplexStream<Record<string, unknown>, Record<string, unknown>>;

function hv(h: Record<string, string>): { headers: { key: string; raw_value: Buffer }[] } {
  return { headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) };
}

async function main(): Promise<void> {
  const serves: RunningServe[] = await Promise.all(
    ['127.0.0.1', '127.0.0.2'].map((host) =>
      startServe({ port: 0, host, model: MODEL, logLevel: 'silent', simFixedStepMs: 1 }),
    ),
  );
  const epp = await startEpp({
    gatewayPort: null,
    metricsPort: null,
    grpcHost: '127.0.0.1',
    grpcPort: 0,
    endpoints: serves.map((s, i) => `127.0.0.${i + 1}:${s.port}`),
    logLevel: 'silent',
  });
  const Ctor = grpc.makeGenericClientConstructor(protos().extProc, 'ExternalProcessor');
  const client = new Ctor(`127.0.0.1:${epp.grpcPort!}`, grpc.credentials.createInsecure()) as unknown as {
    Process(): Duplex;
    close(): void;
  };
  const bodies = Array.from({ length: WARMUP + REQUESTS }, (_, i) =>
    Buffer.from(JSON.stringify({ model: MODEL, prompt: prompt(i), max_tokens: 1 })),
  );
  const responseBody = Buffer.from(
    JSON.stringify({
      id: 'x',
      object: 'text_completion',
      model: MODEL,
      choices: [{ index: 0, text: '!', finish_reason: 'length' }],
      usage: { prompt_tokens: 8192, completion_tokens: 1, total_tokens: 8193 },
    }),
  );

  const one = (body: Buffer): Promise<{ request: number; total: number }> =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      let request = 0;
      const call = client.Process();
      call.on('error', reject);
      call.on('data', (r: Record<string, unknown>) => {
        const sr = (
          r.request_body as {
            response?: { body_mutation?: { streamed_response?: { end_of_stream?: boolean } } };
          }
        )?.response?.body_mutation?.streamed_response;
        if (r.immediate_response) reject(new Error('immediate response'));
        if (sr?.end_of_stream) {
          request = performance.now() - t0;
          call.write({
            response_headers: { headers: hv({ ':status': '200', 'content-type': 'application/json' }) },
          });
          call.write({ response_body: { body: responseBody, end_of_stream: true } });
          call.end();
        }
      });
      call.on('status', (s: grpc.StatusObject) => {
        if (s.code === grpc.status.OK) resolve({ request, total: performance.now() - t0 });
      });
      call.write({
        request_headers: {
          headers: hv({ ':method': 'POST', ':path': '/v1/completions', 'content-type': 'application/json' }),
        },
      });
      for (let off = 0; off < body.length; off += MESSAGE_BYTES) {
        const end = Math.min(off + MESSAGE_BYTES, body.length);
        call.write({ request_body: { body: body.subarray(off, end), end_of_stream: end === body.length } });
      }
    });

  const req: number[] = [];
  const total: number[] = [];
  for (let i = 0; i < bodies.length; i++) {
    const r = await one(bodies[i]!);
    if (i >= WARMUP) {
      req.push(r.request);
      total.push(r.total);
    }
  }

  // The director alone, on fresh bodies of the same shape (no prefix already indexed).
  const director: number[] = [];
  for (let i = 0; i < WARMUP + REQUESTS; i++) {
    const body = Buffer.from(JSON.stringify({ model: MODEL, prompt: prompt(100_000 + i), max_tokens: 1 }));
    const t0 = performance.now();
    const ireq = epp.director.buildRequest({
      path: '/v1/completions',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const s = await epp.director.schedule(ireq);
    epp.director.responseComplete(ireq, {
      status: 200,
      headers: {},
      endpoint: s.targets[0] ?? null,
      streaming: false,
      usage: null,
      aborted: false,
    });
    if (i >= WARMUP) director.push(performance.now() - t0);
  }

  // The floor: a bare server that answers the body's end at once, no parsing or scheduling.
  const bare = new grpc.Server();
  bare.addService(protos().extProc, {
    Process: (call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>) => {
      const held: Buffer[] = [];
      call.on('data', (m: Record<string, unknown>) => {
        const b = m.request_body as { body?: Buffer; end_of_stream?: boolean } | undefined;
        if (b?.body) held.push(b.body);
        if (b?.end_of_stream) {
          call.write({ request_headers: { response: { clear_route_cache: true } } });
          for (const c of bodyChunks(Buffer.concat(held), true)) {
            call.write({ request_body: { response: { body_mutation: { streamed_response: c } } } });
          }
        }
        if (m.response_body) call.end();
      });
      call.on('end', () => call.end());
    },
  });
  const barePort = await new Promise<number>((resolve, reject) =>
    bare.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const bareClient = new Ctor(`127.0.0.1:${barePort}`, grpc.credentials.createInsecure()) as unknown as {
    Process(): Duplex;
    close(): void;
  };
  const floorReq: number[] = [];
  const floorTotal: number[] = [];
  const saved = client.Process.bind(client);
  client.Process = () => bareClient.Process();
  for (let i = 0; i < bodies.length; i++) {
    const r = await one(bodies[i]!);
    if (i >= WARMUP) {
      floorReq.push(r.request);
      floorTotal.push(r.total);
    }
  }
  client.Process = saved;
  bareClient.close();
  bare.forceShutdown();

  client.close();
  await epp.close();
  await Promise.all(serves.map((s) => s.close()));

  const r = summary(req);
  const t = summary(total);
  const d = summary(director);
  const fr = summary(floorReq);
  const ft = summary(floorTotal);
  const fmt = (x: number): string => x.toFixed(3).padStart(8);
  const bytes = bodies[0]!.length;
  process.stdout.write(
    `ext_proc exchange, ~8192-token prompt (${bytes} B body in ${Math.ceil(bytes / MESSAGE_BYTES)} messages), ${REQUESTS} sequential requests\n` +
      `                          p50 ms   p99 ms\n` +
      `request phase          ${fmt(r.p50)} ${fmt(r.p99)}\n` +
      `full exchange          ${fmt(t.p50)} ${fmt(t.p99)}\n` +
      `director alone         ${fmt(d.p50)} ${fmt(d.p99)}\n` +
      `bare gRPC stream floor ${fmt(fr.p50)} ${fmt(fr.p99)}   (full: ${fmt(ft.p50)} ${fmt(ft.p99)})\n` +
      `ext_proc handling      ${fmt(r.p50 - d.p50 - fr.p50)}            (request phase − director − floor, p50)\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
