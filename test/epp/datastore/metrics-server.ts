/** A real HTTP server on a free loopback port whose `/metrics` answer a test can change at will. */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface MetricsServer {
  readonly port: number;
  readonly address: string;
  /** Requests received so far. */
  readonly requests: number;
  /** Requests received and not yet answered or closed. */
  readonly open: number;
  /** TCP connections accepted so far. */
  readonly connections: number;
  handler: Handler;
  /** Serve `text` as a 200 Prometheus page. */
  serve(text: string): void;
  close(): Promise<void>;
}

export function page(text: string): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(text);
  };
}

export async function startMetricsServer(
  initial: Handler = page(''),
  tls?: { key: Buffer; cert: Buffer },
): Promise<MetricsServer> {
  let requests = 0;
  let open = 0;
  let connections = 0;
  const state = {
    handler: initial,
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    requests++;
    open++;
    res.on('close', () => open--);
    try {
      state.handler(req, res);
    } catch {
      res.destroy();
    }
  };
  const server = tls ? createTlsServer(tls, onRequest) : createServer(onRequest);
  server.on(tls ? 'secureConnection' : 'connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    address: '127.0.0.1',
    get requests() {
      return requests;
    },
    get open() {
      return open;
    },
    get connections() {
      return connections;
    },
    get handler() {
      return state.handler;
    },
    set handler(h: Handler) {
      state.handler = h;
    },
    serve(text: string) {
      state.handler = page(text);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

export function vllmPage(m: {
  waiting?: number;
  running?: number;
  kv?: number;
  blockSize?: number;
  blocks?: number;
}): string {
  return [
    '# HELP vllm:num_requests_running Number of requests in model execution batches.',
    '# TYPE vllm:num_requests_running gauge',
    `vllm:num_requests_running{model_name="m",engine="0"} ${m.running ?? 0}`,
    '# TYPE vllm:num_requests_waiting gauge',
    `vllm:num_requests_waiting{model_name="m",engine="0"} ${m.waiting ?? 0}`,
    '# TYPE vllm:kv_cache_usage_perc gauge',
    `vllm:kv_cache_usage_perc{model_name="m",engine="0"} ${m.kv ?? 0}`,
    '# TYPE vllm:cache_config_info gauge',
    `vllm:cache_config_info{engine="0",block_size="${m.blockSize ?? 16}",num_gpu_blocks="${m.blocks ?? 1000}"} 1`,
    '',
  ].join('\n');
}
