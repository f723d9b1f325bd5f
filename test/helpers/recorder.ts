/**
 * A stand-in model server that records what reaches it (path, headers, body) and answers like vLLM:
 * a small completion, or an SSE stream when asked, and a `/metrics` page with vLLM's names. For
 * checking what a router forwards, where a real `llmd serve` would not show it.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Recorded {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface Recorder {
  readonly url: string;
  readonly port: number;
  readonly requests: Recorded[];
  close(): Promise<void>;
}

export async function startRecorder(): Promise<Recorder> {
  const requests: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(
        'vllm:num_requests_waiting{model_name="m"} 0\n' +
          'vllm:num_requests_running{model_name="m"} 0\n' +
          'vllm:kv_cache_usage_perc{model_name="m"} 0\n' +
          'vllm:cache_config_info{block_size="16",num_gpu_blocks="1000"} 1\n',
      );
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ path: req.url ?? '', headers: req.headers, body });
      let stream = false;
      try {
        stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
      } catch {
        // Not JSON: answer as for a plain request.
      }
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"id":"r","object":"text_completion","choices":[{"index":0,"text":"ok"}]}\n\n');
        res.end('data: [DONE]\n\n');
        return;
      }
      const out = JSON.stringify({
        id: 'r',
        object: 'text_completion',
        model: 'm',
        choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
