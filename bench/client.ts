/**
 * The bench client is not the bottleneck: `llmd bench`'s own client (runBench: workload generation,
 * request bodies, the keep-alive pool, SSE scanning and metric recording) against a streaming server
 * that costs almost nothing per token, in a child process so that the figures are the client's alone.
 *
 * Prints the request and output-token rates the client sustains on its one thread, its CPU use, and the
 * ratio to what the headline run needs (the optimized-baseline ladder: at most ~50 req/s and ~5,000
 * output tok/s at the client).
 *
 * Run: `npx tsx bench/client.ts [--seconds N] [--concurrency N]`.
 */
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { runBench } from '../src/bench/run.js';
import type { BenchOptionsInput } from '../src/bench/options.js';

const NEED_REQ_S = 50;
const NEED_TOK_S = 5000;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** The stand-in server: every response is a precomputed SSE stream of `max_tokens` one-token events. */
function serve(): void {
  const cache = new Map<number, Buffer[]>();
  const streamOf = (n: number): Buffer[] => {
    let s = cache.get(n);
    if (s === undefined) {
      const events: string[] = [];
      for (let i = 0; i < n; i++) {
        events.push(
          `data: {"id":"cmpl-b","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" tok","logprobs":null,"finish_reason":${i === n - 1 ? '"length"' : 'null'},"stop_reason":null}],"usage":null}\n\n`,
        );
      }
      // Four writes a response: the client still handles one event per token.
      const q = Math.ceil(n / 4);
      s = [0, 1, 2, 3].map((k) => Buffer.from(events.slice(k * q, (k + 1) * q).join('')));
      s.push(
        Buffer.from(
          `data: {"id":"cmpl-b","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":100,"total_tokens":${100 + n},"completion_tokens":${n},"prompt_tokens_details":{"cached_tokens":0}}}\n\ndata: [DONE]\n\n`,
        ),
      );
      cache.set(n, s);
    }
    return s;
  };
  const server = createServer({ noDelay: true, keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const m = /"max_tokens":(\d+)/.exec(body);
      const parts = streamOf(m === null ? 16 : Number(m[1]));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let k = 0;
      const next = (): void => {
        if (k === parts.length - 1) {
          res.end(parts[k]);
          return;
        }
        res.write(parts[k++]);
        setImmediate(next);
      };
      next();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ port: (server.address() as AddressInfo).port });
  });
}

async function measure(
  name: string,
  url: string,
  workload: BenchOptionsInput['workload'],
  seconds: number,
  concurrency: number,
) {
  const opts: BenchOptionsInput = {
    url,
    model: 'm',
    seed: 1,
    workload,
    load: { type: 'concurrency', stages: [{ concurrency, duration: seconds }], warmup: 1 },
  };
  // CPU over the measured stage, from its first progress report (steady state) to its last.
  let cpu0: NodeJS.CpuUsage | null = null;
  let t0 = 0;
  let cpuShare = NaN;
  const s = await runBench(opts, {
    onProgress: (p) => {
      if (p.warmup) return;
      if (cpu0 === null) {
        cpu0 = process.cpuUsage();
        t0 = performance.now();
        return;
      }
      const d = process.cpuUsage(cpu0);
      cpuShare = (d.user + d.system) / 1000 / (performance.now() - t0);
    },
  });
  const a = s.aggregate;
  const reqS = a.throughput.requests_per_sec;
  const tokS = a.throughput.output_tokens_per_sec;
  const ratio = Math.min(reqS / NEED_REQ_S, tokS / NEED_TOK_S);
  console.log(
    `${name}: ${a.requests.successes} requests (${a.requests.failures} failed), ` +
      `sustains ${reqS.toFixed(0)} req/s, ${tokS.toFixed(0)} output tok/s ` +
      `= ${ratio.toFixed(1)}× the headline's need (${NEED_REQ_S} req/s, ${NEED_TOK_S} tok/s); ` +
      `client CPU ${(100 * cpuShare).toFixed(0)}% of one core ` +
      `(schedule delay p99 ${(a.schedule_delay.p99 * 1000).toFixed(1)} ms)`,
  );
  return ratio;
}

async function main(): Promise<void> {
  const seconds = arg('--seconds', 4);
  const concurrency = arg('--concurrency', 128);
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve) =>
    child.once('message', (m: { port: number }) => resolve(m.port)),
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    console.log(
      `bench client vs a near-free streaming server (child process), ${concurrency} in flight, ${seconds} s each`,
    );
    await measure(
      'random 128 in / 100 out',
      url,
      { type: 'random', input_len: 128, output_len: 100 },
      seconds,
      concurrency,
    );
    await measure(
      'shared-prefix 6000+1200 in / 100 out',
      url,
      {
        type: 'shared-prefix',
        num_groups: 150,
        num_prompts_per_group: 5,
        system_prompt_len: 6000,
        question_len: 1200,
        output_len: 100,
      },
      seconds,
      concurrency,
    );
    await measure(
      'shared-prefix 6000+1200 in / 1000 out (headline shape)',
      url,
      {
        type: 'shared-prefix',
        num_groups: 150,
        num_prompts_per_group: 5,
        system_prompt_len: 6000,
        question_len: 1200,
        output_len: 1000,
      },
      seconds,
      concurrency,
    );
  } finally {
    child.kill();
  }
}

if (process.argv.includes('--serve')) serve();
else await main();
