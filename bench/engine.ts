/**
 * `npm run bench:engine`: the model server's two speed figures.
 *  (a) engine-core speed in virtual time: steps/s with 256 running sequences (goal ≥ 5,000);
 *  (b) `llmd serve` at 256 concurrent streaming requests with a fixed 10 ms step: the delay our process
 *      adds to each token (p50, p99; goal p99 ≤ 2 ms), and the CPU the server used.
 *
 * For (b) the figures are taken in the steady state — from the moment the last stream got its first
 * token until the first stream finished, all 256 streams decode together — and come from two sides:
 *  - the server's own: for every output, the time from its step's end to the moment it was handed to
 *    the client's socket (`llmd:token_delivery_lag_seconds`, scraped at both ends of the window);
 *  - the client's: token k of a request is due k × 10 ms after its first, the least-delayed token of
 *    each request sets its baseline, and a token's extra delay is how much later it arrived. Client and
 *    kernel count too, so this is an upper bound on the server's share.
 * The same client runs first against a floor (`bench/sse-floor.ts`: a bare Node server writing the same
 * events on the same timeline with nothing behind it), so the run shows what the machine itself costs
 * and how much llmd adds above it. The admission burst before the steady state (256 requests sent at
 * once) is reported as TTFT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { benchEngineCore } from './engine-core.js';

const STREAMS = 256;
const STEP_MS = 10;
/**
 * Tokens per measured stream: 1000 steps (10 s), so that one host stall of a few steps moves the
 * p99 of ~250,000 tokens little. The warm-up streams are shorter.
 */
const OUTPUT_TOKENS = 1000;
const WARMUP_TOKENS = 300;
const LAG = 'llmd:token_delivery_lag_seconds';

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Spawns a server that logs one JSON line with `url` once it listens. */
async function start(args: string[], readyMsg: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (const line of buf.split('\n')) {
        if (line.includes(readyMsg)) resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
  proc.stdout!.resume();
  return { proc, url };
}

function startLlmd(): Promise<{ proc: ChildProcess; url: string }> {
  return start(
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
    'llmd serve is ready',
  );
}

function startFloor(): Promise<{ proc: ChildProcess; url: string }> {
  return start(['--import', 'tsx', 'bench/sse-floor.ts', String(STEP_MS)], 'floor is ready');
}

interface StreamResult {
  /** When the request was written (ms, performance.now()). */
  sentAt: number;
  /** When each SSE event arrived (ms). */
  arrivals: number[];
}

/** Hooks the run uses to find the steady state as it happens. */
interface StreamEvents {
  firstToken(): void;
  finished(): void;
}

const DATA = Buffer.from('data: {');
const END = Buffer.from('data: [DONE]');
const NO_EVENTS: StreamEvents = { firstToken() {}, finished() {} };

/**
 * One streaming request over a raw socket: the client must cost far less than the server it
 * measures, so there is no HTTP client library here — a hand-written request and a byte scan for
 * SSE events, each timestamped as its bytes arrive.
 */
function streamOne(
  host: string,
  port: number,
  i: number,
  events: StreamEvents,
  maxTokens = OUTPUT_TOKENS,
): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const arrivals: number[] = [];
    let sentAt = 0;
    const body = JSON.stringify({
      model: 'Qwen/Qwen3-8B',
      prompt: `Request ${i}: tell me a long story about the sea.`,
      max_tokens: maxTokens,
      ignore_eos: true,
      stream: true,
    });
    const sock = connect({ host, port, noDelay: true }, () => {
      sentAt = performance.now();
      sock.write(
        `POST /v1/completions HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
    let done = false;
    sock.on('data', (chunk: Buffer) => {
      const t = performance.now();
      const before = arrivals.length;
      let idx = chunk.indexOf(DATA);
      while (idx >= 0) {
        arrivals.push(t);
        idx = chunk.indexOf(DATA, idx + DATA.length);
      }
      if (before === 0 && arrivals.length > 0) events.firstToken();
      if (!done && chunk.indexOf(END) >= 0) {
        done = true;
        events.finished();
      }
    });
    sock.on('close', () =>
      done ? resolve({ sentAt, arrivals }) : reject(new Error(`stream ${i} ended early`)),
    );
    sock.on('error', reject);
  });
}

/** Cumulative bucket counts of one histogram in a Prometheus text page, by upper bound. */
function histogramBuckets(metrics: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(name + '_bucket')) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (!le) continue;
    out.set(le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** Quantile of the observations between two scrapes, interpolated linearly inside its bucket. */
function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const target = q * ((after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0));
  let prevBound = 0;
  let prevCount = 0;
  for (const b of bounds) {
    const count = (after.get(b) ?? 0) - (before.get(b) ?? 0);
    if (count >= target) {
      if (b === Infinity) return prevBound;
      return prevBound + ((b - prevBound) * (target - prevCount)) / Math.max(count - prevCount, 1);
    }
    prevBound = b;
    prevCount = count;
  }
  return NaN;
}

interface Figures {
  wall: number;
  tokens: number;
  cpu: number;
  ttft50: number;
  ttft99: number;
  steadySeconds: number;
  steadyTokens: number;
  /** Server side, step end → socket, steady state (ms). */
  lag50: number;
  lag99: number;
  /** Client side, steady state (ms). */
  extra50: number;
  extra99: number;
}

/** STREAMS concurrent streams against one server; figures in the steady state. */
async function measure(proc: ChildProcess, url: string): Promise<Figures> {
  const { hostname, port } = new URL(url);
  const target = Number(port);
  const scrape = async (): Promise<string> => (await fetch(url + '/metrics')).text();
  // Warm-up at full concurrency, so the measured run sees the steady state rather than start-up
  // transients: the write path's optimised code (compiled on a background thread that competes for
  // the two cores), a young generation grown to its working size, tokenizer caches.
  await Promise.all(
    Array.from({ length: STREAMS }, (_, i) => streamOne(hostname, target, i, NO_EVENTS, WARMUP_TOKENS)),
  );

  let started = 0;
  let atSteadyStart: Promise<string> | null = null;
  let atSteadyEnd: Promise<string> | null = null;
  const events: StreamEvents = {
    firstToken() {
      if (++started === STREAMS) atSteadyStart = scrape();
    },
    finished() {
      atSteadyEnd ??= scrape();
    },
  };
  const cpu0 = cpuSeconds(proc.pid!);
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: STREAMS }, (_, i) => streamOne(hostname, target, i, events)),
  );
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(proc.pid!) - cpu0;

  let steadyFrom = -Infinity;
  let steadyTo = Infinity;
  const ttft: number[] = [];
  let tokens = 0;
  for (const r of results) {
    const a = r.arrivals;
    tokens += a.length;
    steadyFrom = Math.max(steadyFrom, a[0]!);
    steadyTo = Math.min(steadyTo, a[a.length - 1]!);
    ttft.push(a[0]! - r.sentAt);
  }
  ttft.sort((x, y) => x - y);
  const extra: number[] = [];
  for (const r of results) {
    const a = r.arrivals;
    let base = Infinity;
    for (let k = 0; k < a.length; k++) {
      if (a[k]! > steadyFrom && a[k]! < steadyTo) base = Math.min(base, a[k]! - k * STEP_MS);
    }
    for (let k = 0; k < a.length; k++) {
      if (a[k]! > steadyFrom && a[k]! < steadyTo) extra.push(a[k]! - k * STEP_MS - base);
    }
  }
  extra.sort((x, y) => x - y);
  const lagFrom = histogramBuckets(await atSteadyStart!, LAG);
  const lagTo = histogramBuckets(await atSteadyEnd!, LAG);
  return {
    wall,
    tokens,
    cpu,
    ttft50: percentile(ttft, 50),
    ttft99: percentile(ttft, 99),
    steadySeconds: (steadyTo - steadyFrom) / 1000,
    steadyTokens: extra.length,
    lag50: quantileBetween(lagFrom, lagTo, 0.5) * 1000,
    lag99: quantileBetween(lagFrom, lagTo, 0.99) * 1000,
    extra50: percentile(extra, 50),
    extra99: percentile(extra, 99),
  };
}

async function run(starter: () => Promise<{ proc: ChildProcess; url: string }>): Promise<Figures> {
  const { proc, url } = await starter();
  try {
    return await measure(proc, url);
  } finally {
    proc.kill('SIGTERM');
  }
}

function report(name: string, f: Figures): void {
  console.log(
    `${name}: ${f.tokens} tokens in ${f.wall.toFixed(2)} s; admission TTFT p50 ${f.ttft50.toFixed(1)} ms, ` +
      `p99 ${f.ttft99.toFixed(1)} ms; steady state ${f.steadySeconds.toFixed(2)} s, ${f.steadyTokens} tokens`,
  );
  console.log(
    `  step end → token handed to its socket (server's own clock): p50 ${f.lag50.toFixed(2)} ms, ` +
      `p99 ${f.lag99.toFixed(2)} ms`,
  );
  console.log(
    `  extra delay per token as the client sees it: p50 ${f.extra50.toFixed(2)} ms, p99 ${f.extra99.toFixed(2)} ms`,
  );
  console.log(
    `  CPU: ${f.cpu.toFixed(2)} s over ${f.wall.toFixed(2)} s = ${((f.cpu / f.wall) * 100).toFixed(0)} % of one core ` +
      `(${((f.cpu / f.tokens) * 1e6).toFixed(1)} µs per token)`,
  );
}

const core = await benchEngineCore();
console.log(
  `engine core: ${Math.round(core.stepsPerSecond)} steps/s at ${core.numSeqs} running sequences in virtual time ` +
    `(${Math.round(core.tokensPerSecond)} tokens/s; goal ≥ 5,000 steps/s)`,
);
console.log(
  `${STREAMS} concurrent streams × ${OUTPUT_TOKENS} tokens, one token per stream every ${STEP_MS} ms:`,
);
const floor = await run(startFloor);
report('floor (bare Node server, same events, nothing behind them)', floor);
const llmd = await run(startLlmd);
report('llmd serve', llmd);
console.log(
  `llmd serve: delay its own code adds per token (step end → socket): p50 ${llmd.lag50.toFixed(2)} ms, ` +
    `p99 ${llmd.lag99.toFixed(2)} ms (goal p99 ≤ 2 ms); above the floor: ` +
    `p50 +${(llmd.lag50 - floor.lag50).toFixed(2)} ms, p99 +${(llmd.lag99 - floor.lag99).toFixed(2)} ms; ` +
    `CPU ${(llmd.cpu / floor.cpu).toFixed(2)}× the floor's`,
);
