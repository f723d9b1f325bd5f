/**
 * The floor for `bench/engine.ts`: the least a Node process can do to stream one SSE event per
 * stream every `STEP_MS` — accept a completion request, send SSE headers, then on a fixed timeline
 * write one pre-shaped chunk per open stream per step through llmd's own SSE writer, with no
 * engine, tokenizer or exchange behind it. It measures its own step end → socket lag into the same
 * histogram `llmd serve` exposes, so the bench can put the two side by side: what remains above the
 * floor is what llmd's code adds.
 *
 * Run by the bench as a child process: `tsx bench/sse-floor.ts <stepMs>`; prints its URL. Each
 * stream gets its request's `max_tokens` events.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { FastHistogram } from '../src/core/metrics.js';
import { SseWriter } from '../src/core/sse-writer.js';

const STEP_S = Number(process.argv[2] ?? 10) / 1000;
/** Tokens per stream when the request names no `max_tokens`. */
const DEFAULT_TOKENS = 300;
const MAX_CATCH_UP_S = 0.25;

const registry = new Registry();
const lag = new FastHistogram(
  'llmd:token_delivery_lag_seconds',
  'Step end to socket, floor server.',
  [
    0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0012, 0.0014, 0.0016,
    0.0018, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
  ],
  {},
  registry,
);

interface Stream {
  sse: SseWriter;
  head: string;
  /** `head` encoded: the bytes before the text in every mid-stream chunk. */
  prefix: Buffer;
  sent: number;
  tokens: number;
}

const SUFFIX = Buffer.from(',"logprobs":null,"finish_reason":null}]}\n\n');

const streams: Stream[] = [];
let running = false;
let lastEnd = -Infinity;
const now = (): number => performance.now() / 1000;

function step(): void {
  const t = now();
  const start = t - lastEnd < MAX_CATCH_UP_S ? lastEnd : t;
  const end = start + STEP_S;
  const wait = (end - now()) * 1000;
  setTimeout(() => deliver(end), Math.max(0, wait));
}

function deliver(end: number): void {
  lastEnd = end;
  // Counted as llmd counts it: from the step end, or from the moment the timer fired if that was earlier.
  const from = Math.min(end, now());
  let w = 0;
  for (let i = 0; i < streams.length; i++) {
    const s = streams[i]!;
    s.sent++;
    const text = JSON.stringify(' word' + s.sent);
    if (s.sent >= s.tokens) {
      s.sse.end(s.head + text + ',"logprobs":null,"finish_reason":"length"}]}\n\ndata: [DONE]\n\n');
    } else {
      // llmd's own write path (one framed buffer per event), so the floor is what it costs alone.
      s.sse.writeParts(s.prefix, text, SUFFIX);
      streams[w++] = s;
    }
    lag.observe(now() - from);
  }
  streams.length = w;
  if (streams.length > 0) step();
  else running = false;
}

function completion(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { max_tokens?: unknown };
    const tokens = typeof body.max_tokens === 'number' ? body.max_tokens : DEFAULT_TOKENS;
    const sse = new SseWriter(res);
    sse.begin({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    const id = Math.random().toString(16).slice(2);
    const head = `data: {"id":"cmpl-${id}","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":`;
    streams.push({ sse, head, prefix: Buffer.from(head), sent: 0, tokens });
    if (!running) {
      running = true;
      step();
    }
  });
}

const server = createServer({ noDelay: true }, (req, res) => {
  if (req.method === 'POST') return completion(req, res);
  void registry.metrics().then((body) => {
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(body);
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ msg: 'floor is ready', url: `http://127.0.0.1:${port}` }));
});
