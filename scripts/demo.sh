#!/usr/bin/env bash
# Start a simulated Qwen3-32B server (TP=2 on H100), send one completion, then keep serving until
# Ctrl-C. PORT overrides the port (default 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
npm run build --silent
node dist/cli.js serve Qwen/Qwen3-32B --tensor-parallel-size 2 --hardware H100 \
  --host 127.0.0.1 --port "$PORT" --enable-prompt-tokens-details --log-level warn &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "llmd serve failed to start" >&2; exit 1; }
  sleep 0.1
done
echo "\$ curl http://127.0.0.1:$PORT/v1/completions -d '{\"model\":\"Qwen/Qwen3-32B\",\"prompt\":\"San Francisco is a\",\"max_tokens\":24}'"
curl -s "http://127.0.0.1:$PORT/v1/completions" -H 'content-type: application/json' \
  -d '{"model":"Qwen/Qwen3-32B","prompt":"San Francisco is a","max_tokens":24}'
echo
echo
echo "llmd serve is running on http://127.0.0.1:$PORT (OpenAI API under /v1, metrics on /metrics). Ctrl-C stops it."
wait $SERVER
