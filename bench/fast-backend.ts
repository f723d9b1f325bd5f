/**
 * A model server stand-in for `bench/gateway.ts` that costs almost nothing per request, so the proxy in
 * front of it is what the benchmark measures: a fixed vLLM-shaped completion, `/v1/models`, and a
 * `/metrics` page with vLLM's names for the EPP's scraper.
 *
 * Run by the benches as a child process: `tsx bench/fast-backend.ts [--prefiller]`; prints its URL.
 * With `--prefiller` its answer carries NixlConnector `kv_transfer_params`, as a vLLM prefiller's does.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const PREFILLER = process.argv.includes('--prefiller');
const COMPLETION = JSON.stringify({
  id: 'cmpl-bench',
  object: 'text_completion',
  created: 1,
  model: 'Qwen/Qwen3-8B',
  choices: [{ index: 0, text: ' ok', logprobs: null, finish_reason: 'length', stop_reason: null }],
  usage: { prompt_tokens: 8, total_tokens: 9, completion_tokens: 1 },
  ...(PREFILLER
    ? {
        kv_transfer_params: {
          do_remote_prefill: true,
          do_remote_decode: false,
          remote_block_ids: [1],
          remote_engine_id: 'bench-prefiller',
          remote_request_id: 'cmpl-bench-0',
          remote_host: '127.0.0.1',
          remote_port: 5600,
          tp_size: 1,
        },
      }
    : {}),
});
const METRICS =
  '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="Qwen/Qwen3-8B"} 0\n' +
  '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="Qwen/Qwen3-8B"} 0\n' +
  '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name="Qwen/Qwen3-8B"} 0.1\n' +
  '# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{block_size="16",num_gpu_blocks="20000"} 1\n';
const MODELS = JSON.stringify({ object: 'list', data: [{ id: 'Qwen/Qwen3-8B', object: 'model' }] });

const server = createServer({ noDelay: true, keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.method === 'GET') {
    const body = req.url === '/metrics' ? METRICS : MODELS;
    res.writeHead(200, { 'content-type': req.url === '/metrics' ? 'text/plain' : 'application/json' });
    res.end(body);
    return;
  }
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': COMPLETION.length });
    res.end(COMPLETION);
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ msg: 'backend is ready', url: `http://127.0.0.1:${port}` }));
});
