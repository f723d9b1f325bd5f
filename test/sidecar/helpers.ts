/**
 * Stand-in prefillers and decoders for the sidecar's tests: small node:http servers that record what
 * reaches them (headers, raw body, whether the connection was closed on them) and answer like vLLM.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { startSidecar, type RunningSidecar } from '../../src/sidecar/sidecar.js';
import type { SidecarOptionsInput } from '../../src/sidecar/options.js';

export interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** Header lines exactly as received (names as sent, duplicates kept). */
  readonly rawHeaders: string[];
  readonly body: string;
  /** The connection was closed before the stand-in finished answering. */
  closedEarly: boolean;
}

export type StandInHandler = (req: IncomingMessage, body: string, res: ServerResponse, seen: Seen) => void;

export interface StandIn {
  readonly port: number;
  readonly seen: Seen[];
  /** Closes the listener and cuts every connection. */
  close(): Promise<void>;
}

const closers: (() => Promise<void>)[] = [];

/** Closes everything the helpers started; call from afterEach. */
export async function closeAll(): Promise<void> {
  while (closers.length > 0) await closers.pop()!();
}

export async function standIn(
  handler: StandInHandler,
  tls?: { cert: Buffer; key: Buffer },
  port = 0,
): Promise<StandIn> {
  const seen: Seen[] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
        closedEarly: false,
      };
      seen.push(s);
      res.on('close', () => {
        if (!res.writableFinished) s.closedEarly = true;
      });
      handler(req, s.body, res, s);
    });
  };
  const server: Server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, onRequest)
    : createServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closed = false;
  const close = (): Promise<void> =>
    new Promise<void>((r) => {
      if (closed) return r();
      closed = true;
      server.close(() => r());
      server.closeAllConnections();
    });
  closers.push(close);
  return { port: (server.address() as AddressInfo).port, seen, close };
}

export async function sidecar(input: SidecarOptionsInput): Promise<RunningSidecar> {
  const s = await startSidecar({ host: '127.0.0.1', port: 0, logLevel: 'silent', ...input });
  closers.push(() => s.close());
  return s;
}

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function json(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** What vLLM's NixlConnector prefiller returns in `kv_transfer_params` (§7.3), with a uint64 in it. */
export const KV =
  '{"do_remote_prefill":true,"do_remote_decode":false,"remote_block_ids":[12,13,14],' +
  '"remote_engine_id":"0f7c-uuid","remote_request_id":"chatcmpl-x-1","remote_host":"10.0.3.7",' +
  '"remote_port":5600,"tp_size":1,"opaque":18446744073709551615}';

/** A vLLM-style prefill answer: one token, usage with the prefiller's cached tokens, the KV params. */
export function prefillAnswer(kv: string | null = KV, cached = 3): string {
  return (
    '{"id":"chatcmpl-p","object":"chat.completion","model":"m",' +
    '"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"length"}],' +
    `"usage":{"prompt_tokens":10,"completion_tokens":1,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":${cached}}}` +
    (kv === null ? '' : `,"kv_transfer_params":${kv}`) +
    '}'
  );
}

export const prefillOk: StandInHandler = (_req, _body, res) => json(res, 200, prefillAnswer());

/** A vLLM-style decode answer: JSON, or SSE when the body asks to stream. */
export const decodeOk: StandInHandler = (_req, body, res) => {
  let stream = false;
  try {
    stream = (JSON.parse(body) as { stream?: unknown }).stream === true;
  } catch {
    // not JSON: answer plainly
  }
  if (stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"id":"d","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n');
    res.write(
      'data: {"id":"d","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":9}}}\n\n',
    );
    res.end('data: [DONE]\n\n');
    return;
  }
  json(
    res,
    200,
    '{"id":"d","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},' +
      '"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,' +
      '"prompt_tokens_details":{"cached_tokens":9}},"seed_echo":1152921504606846976}',
  );
};

export function post(
  url: string,
  body: string,
  headers: Record<string, string> = {},
  path = '/v1/chat/completions',
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    signal,
  });
}
