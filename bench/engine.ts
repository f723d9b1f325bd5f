/**
 * `npm run bench:engine`: the model server's two speed figures.
 *  (a) engine-core speed in virtual time: steps/s with 256 running sequences (goal ≥ 5,000);
 *  (b) `llmd serve` at 256 concurrent streaming requests with a fixed 10 ms step: the delay our process
 *      adds to each token beyond the engine's exact schedule (p50, p99; goal p99 ≤ 2 ms), and the CPU
 *      the server used.
 *
 * For (b) every step takes exactly 10 ms, so token k of a request is due k × 10 ms after its first
 * token. For each request the least-delayed token sets the baseline; a token's extra delay is how much
 * later than that baseline it arrived. Client, kernel and server all count, so the figure is an upper
 * bound on the server's share; the server's own view (step end → socket write) is read from its
 * `llmd:token_delivery_lag_seconds` histogram.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { benchEngineCore } from './engine-core.js';

const STREAMS = 256;
const STEP_MS = 10;
const OUTPUT_TOKENS = 300;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}

async function startServer(): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(
    process.execPath,
    [
      'dist/cli.js',
      'serve',
      'Qwen/Qwen3-8B',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--sim-fixed-step-ms',
      String(STEP_MS),
      '--max-num-seqs',
      String(STREAMS),
      '--log-level',
      'info',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (const line of buf.split('\n')) {
        if (line.includes('llmd serve is ready')) resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  proc.stdout!.resume();
  return { proc, url };
}

interface StreamResult {
  arrivals: number[];
}

function streamOne(pool: Pool, i: number): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const arrivals: number[] = [];
    const body = JSON.stringify({
      model: 'Qwen/Qwen3-8B',
      prompt: `Request ${i}: tell me a long story about the sea.`,
      max_tokens: OUTPUT_TOKENS,
      ignore_eos: true,
      stream: true,
    });
    pool
      .request({
        path: '/v1/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      })
      .then(({ body: res }) => {
        res.on('data', (chunk: Buffer) => {
          const t = performance.now();
          // One token per chunk (stream interval 1); count the data lines that carry text.
          let idx = chunk.indexOf('"text"');
          while (idx >= 0) {
            arrivals.push(t);
            idx = chunk.indexOf('"text"', idx + 6);
          }
        });
        res.on('end', () => resolve({ arrivals }));
        res.on('error', reject);
      }, reject);
  });
}

function histogramQuantile(metrics: string, name: string, q: number): number {
  const buckets: [number, number][] = [];
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(name + '_bucket')) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (!le) continue;
    buckets.push([le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1))]);
  }
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  for (const [le, count] of buckets) if (count >= q * total) return le;
  return NaN;
}

async function benchServer(): Promise<void> {
  const { proc, url } = await startServer();
  const pool = new Pool(url, { connections: STREAMS, pipelining: 1 });
  try {
    // Warm-up: connections, JIT, tokenizer caches.
    await Promise.all(Array.from({ length: 32 }, (_, i) => streamOne(pool, i)));
    const cpu0 = cpuSeconds(proc.pid!);
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: STREAMS }, (_, i) => streamOne(pool, i)));
    const wall = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(proc.pid!) - cpu0;

    const extra: number[] = [];
    let tokens = 0;
    for (const r of results) {
      const a = r.arrivals;
      tokens += a.length;
      let base = Infinity;
      for (let k = 0; k < a.length; k++) base = Math.min(base, a[k]! - k * STEP_MS);
      for (let k = 0; k < a.length; k++) extra.push(a[k]! - k * STEP_MS - base);
    }
    extra.sort((x, y) => x - y);
    const metrics = await (await fetch(url + '/metrics')).text();
    const lag50 = histogramQuantile(metrics, 'llmd:token_delivery_lag_seconds', 0.5) * 1000;
    const lag99 = histogramQuantile(metrics, 'llmd:token_delivery_lag_seconds', 0.99) * 1000;
    console.log(
      `server: ${STREAMS} concurrent streams × ${OUTPUT_TOKENS} tokens at ${STEP_MS} ms/step: ` +
        `${tokens} tokens in ${wall.toFixed(2)} s (${Math.round(tokens / wall)} tokens/s)`,
    );
    console.log(
      `  extra delay per token (client-observed): p50 ${percentile(extra, 50).toFixed(3)} ms, ` +
        `p99 ${percentile(extra, 99).toFixed(3)} ms, max ${extra[extra.length - 1]!.toFixed(3)} ms (goal p99 ≤ 2 ms)`,
    );
    console.log(
      `  server step-end → delivery lag (histogram bucket bound): p50 ≤ ${lag50} ms, p99 ≤ ${lag99} ms`,
    );
    console.log(
      `  server CPU: ${cpu.toFixed(2)} s over ${wall.toFixed(2)} s = ${((cpu / wall) * 100).toFixed(0)} % of one core ` +
        `(${((cpu / tokens) * 1e6).toFixed(1)} µs per token)`,
    );
  } finally {
    await pool.close();
    proc.kill('SIGTERM');
  }
}

const core = await benchEngineCore();
console.log(
  `engine core: ${Math.round(core.stepsPerSecond)} steps/s at ${core.numSeqs} running sequences in virtual time ` +
    `(${Math.round(core.tokensPerSecond)} tokens/s; goal ≥ 5,000 steps/s)`,
);
await benchServer();
