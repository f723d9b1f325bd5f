/**
 * `npm run bench:gateway`: what the standalone gateway (`llmd epp`) costs on short non-streaming
 * requests, against two near-free backends (`bench/fast-backend.ts`):
 *  - added latency: one request at a time over a keep-alive connection, p50/p99 through the gateway
 *    minus the same straight to a backend (goal ≤ 0.3 ms at p50);
 *  - maximum request rate with 64 connections (wrk when installed, else a built-in load generator);
 *  - when nginx is installed, the same backends behind nginx as a plain reverse proxy (one worker,
 *    upstream keep-alive), measured in the same run, and the gateway's rate as a ratio of nginx's
 *    (goal ≥ 0.6×);
 *  - for scale, a bare `node:http` + undici relay with no routing at all (`bench/node-relay.ts`): what
 *    Node's standard HTTP stack manages on the same machine.
 * Everything shares this machine's cores, so compare the figures of one run with each other.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';

const BODY = JSON.stringify({ model: 'Qwen/Qwen3-8B', prompt: 'Hello, how are you today?', max_tokens: 1 });
const LATENCY_REQUESTS = 3000;
const RATE_SECONDS = 5;
const CONNECTIONS = 64;

const children: ChildProcess[] = [];
process.on('exit', () => {
  // SIGTERM: nginx's master takes its workers down with it; SIGKILL would orphan them.
  for (const c of children) c.kill('SIGTERM');
});

function start(cmd: string, args: string[], readyMsg: string): Promise<string> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (const line of buf.split('\n')) {
        if (line.includes(readyMsg)) resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    proc.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`)));
  });
}

function has(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function startNginx(backends: string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'llmd-bench-nginx-'));
  const port = await freePort();
  const conf = `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir};
  proxy_temp_path ${dir};
  upstream backends {
${backends.map((b) => `    server ${new URL(b).host};`).join('\n')}
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const proc = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'inherit' });
  children.push(proc);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + '/v1/models')).ok) return url;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nginx did not start');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Sequential requests over one keep-alive connection; µs per request. */
async function latency(url: string): Promise<{ p50: number; p99: number }> {
  const pool = new Pool(url, { connections: 1, pipelining: 1 });
  const send = async (): Promise<void> => {
    const res = await pool.request({
      path: '/v1/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: BODY,
    });
    if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}`);
    await res.body.dump();
  };
  for (let i = 0; i < 300; i++) await send();
  const t: number[] = [];
  for (let i = 0; i < LATENCY_REQUESTS; i++) {
    const t0 = performance.now();
    await send();
    t.push((performance.now() - t0) * 1000);
  }
  await pool.close();
  t.sort((a, b) => a - b);
  return { p50: percentile(t, 50), p99: percentile(t, 99) };
}

/** Requests per second at `CONNECTIONS` concurrent connections. */
async function rate(url: string): Promise<number> {
  if (has('wrk')) {
    const dir = mkdtempSync(join(tmpdir(), 'llmd-bench-wrk-'));
    const script = join(dir, 'post.lua');
    writeFileSync(
      script,
      `wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\nwrk.body = ${JSON.stringify(BODY)}\n`,
    );
    // Warm-up, then the measured run.
    execFileSync('wrk', ['-t1', `-c${CONNECTIONS}`, '-d1s', '-s', script, `${url}/v1/completions`]);
    const out = execFileSync(
      'wrk',
      ['-t1', `-c${CONNECTIONS}`, `-d${RATE_SECONDS}s`, '-s', script, `${url}/v1/completions`],
      {
        encoding: 'utf8',
      },
    );
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
    if (non2xx) throw new Error(`${url}: ${non2xx[1]} failed responses under load`);
    return Number(/Requests\/sec:\s+([\d.]+)/.exec(out)![1]);
  }
  const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 });
  let done = 0;
  const deadline = performance.now() + RATE_SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const res = await pool.request({
        path: '/v1/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: BODY,
      });
      await res.body.dump();
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const secs = (performance.now() - t0) / 1000;
  await pool.close();
  return done / secs;
}

const backends = await Promise.all(
  [0, 1].map(() => start(process.execPath, ['--import', 'tsx', 'bench/fast-backend.ts'], 'backend is ready')),
);
const gateway = await start(
  process.execPath,
  [
    'dist/cli.js',
    'epp',
    '--gateway-host',
    '127.0.0.1',
    '--gateway-port',
    '0',
    '--metrics-port',
    '0',
    ...backends.flatMap((b) => ['--endpoint', new URL(b).host]),
    '--log-level',
    'info',
  ],
  'llmd epp is ready',
);
const nginx = has('nginx') ? await startNginx(backends) : null;
const relay = await start(
  process.execPath,
  ['--import', 'tsx', 'bench/node-relay.ts', ...backends.map((b) => new URL(b).host)],
  'relay is ready',
);

console.log(
  `short non-streaming completions; two backends; load generator: ${has('wrk') ? 'wrk' : 'built-in'}, ${CONNECTIONS} connections`,
);
const direct = await latency(backends[0]!);
const viaGateway = await latency(gateway);
const viaNginx = nginx ? await latency(nginx) : null;
console.log(
  `latency, one request at a time (µs): direct p50 ${direct.p50.toFixed(0)}, p99 ${direct.p99.toFixed(0)}`,
);
console.log(
  `  llmd epp gateway: p50 ${viaGateway.p50.toFixed(0)}, p99 ${viaGateway.p99.toFixed(0)} → adds ` +
    `p50 ${((viaGateway.p50 - direct.p50) / 1000).toFixed(3)} ms, p99 ${((viaGateway.p99 - direct.p99) / 1000).toFixed(3)} ms (goal p50 ≤ 0.3 ms)`,
);
if (viaNginx) {
  console.log(
    `  nginx:            p50 ${viaNginx.p50.toFixed(0)}, p99 ${viaNginx.p99.toFixed(0)} → adds ` +
      `p50 ${((viaNginx.p50 - direct.p50) / 1000).toFixed(3)} ms, p99 ${((viaNginx.p99 - direct.p99) / 1000).toFixed(3)} ms`,
  );
}
const rateDirect = await rate(backends[0]!);
const rateGateway = await rate(gateway);
const rateNginx = nginx ? await rate(nginx) : null;
const rateRelay = await rate(relay);
console.log(`max request rate (req/s): direct to one backend ${rateDirect.toFixed(0)}`);
console.log(`  llmd epp gateway: ${rateGateway.toFixed(0)}`);
console.log(`  bare node:http + undici relay, no routing: ${rateRelay.toFixed(0)}`);
if (rateNginx !== null) {
  console.log(`  nginx:            ${rateNginx.toFixed(0)}`);
  console.log(`  gateway / nginx = ${(rateGateway / rateNginx).toFixed(2)}× (goal ≥ 0.6×)`);
} else {
  console.log('  nginx is not installed (apt-get install nginx): no comparison this run');
}
process.exit(0);
