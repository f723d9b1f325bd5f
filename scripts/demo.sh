#!/usr/bin/env bash
# Start a local llm-d stack with `llmd up` (the gateway/EPP with precise prefix-cache routing and its
# embedded KV-cache indexer, 4 simulated Qwen3-8B decode servers), send one completion through the
# gateway, then keep the stack running until Ctrl-C. PORT sets the gateway's port (default 8080);
# arguments go to `llmd up`, e.g. `npm run demo -- --prefill 1` for P/D.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8080}"
MODEL=Qwen/Qwen3-8B
npm run build --silent
LOG="$(mktemp "${TMPDIR:-/tmp}/llmd-up.XXXXXX")"
node dist/cli.js up --port "$PORT" --model "$MODEL" "$@" 2> >(tee "$LOG" >&2) &
UP=$!
stop() {
  kill -INT "$UP" 2>/dev/null || true
  while kill -0 "$UP" 2>/dev/null; do wait "$UP" 2>/dev/null || true; done
  rm -f "$LOG"
}
trap stop EXIT
# Ctrl-C reaches llmd up as well, which stops the stack; the script waits for it below.
trap ':' INT
trap 'exit 143' TERM
until grep -q '"llmd up is ready"' "$LOG"; do
  if ! kill -0 "$UP" 2>/dev/null; then
    wait "$UP" || exit $?
    exit 1
  fi
  sleep 0.1
done
BODY="{\"model\":\"$MODEL\",\"prompt\":\"San Francisco is a\",\"max_tokens\":24}"
echo "\$ curl http://127.0.0.1:$PORT/v1/completions -H 'content-type: application/json' -d '$BODY'"
curl -sS "http://127.0.0.1:$PORT/v1/completions" -H 'content-type: application/json' -d "$BODY"
echo
echo
echo "The stack is running; the gateway is http://127.0.0.1:$PORT (OpenAI API under /v1). Ctrl-C stops it."
while kill -0 "$UP" 2>/dev/null; do wait "$UP" 2>/dev/null || true; done
trap - EXIT
rm -f "$LOG"
