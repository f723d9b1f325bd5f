/**
 * `npm run bench:pd`: the two speeds of P/D.
 *  (a) KV transfer throughput over loopback: a decoder pulling one prefill's blocks through the side
 *      channel (handshake once, framed reads, every block verified), against a plain TCP socket copy of
 *      the same bytes in the same block-sized pieces, both from a peer process, in the same run
 *      (goal: ratio ≥ 0.7);
 *  (b) the latency the routing sidecar (`llmd sidecar`, a child process) adds (p50, p99) to a request,
 *      against calling the decode server directly — near-free stand-in servers
 *      (`bench/fast-backend.ts`) play the decoder and the prefiller so that the sidecar is what is
 *      measured: a plain proxied request, and a P/D request against the same two legs sent by hand.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { Pool } from 'undici';
import { KvTransferClient } from '../src/engine/kv-transfer/client.js';
import { blockSeeds } from '../src/engine/kv-transfer/payload.js';

const BLOCKS = 512;
const BLOCK_BYTES = 1 << 20;
const BLOCK_SIZE = 16;
const MODEL = 'bench-model';
const ROUNDS = 5;

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGTERM');
});

function startPeer(): Promise<{ kvPort: number; plainPort: number }> {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/pd-peer.ts', String(BLOCKS), String(BLOCK_BYTES)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      const line = buf.split('\n').find((l) => l.includes('peer is ready'));
      if (line) resolve(JSON.parse(line) as { kvPort: number; plainPort: number });
    });
    proc.once('exit', (code) => reject(new Error(`peer exited with ${code}`)));
  });
}

/** Reads BLOCKS × BLOCK_BYTES from the plain server; seconds. */
function plainCopy(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const total = BLOCKS * BLOCK_BYTES;
    let got = 0;
    const t0 = performance.now();
    const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => s.write('go'));
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= total) {
        const secs = (performance.now() - t0) / 1000;
        s.destroy();
        resolve(secs);
      }
    });
    s.on('error', reject);
  });
}

const peer = await startPeer();
const prompt = Array.from({ length: BLOCKS * BLOCK_SIZE }, (_, i) => (i * 7919) % 150_000);
const seeds = blockSeeds(MODEL, prompt, BLOCK_SIZE);
const blockIds = Array.from({ length: BLOCKS }, (_, i) => i + 1);
const client = new KvTransferClient({
  compatibilityHash: 'bench',
  blockSize: BLOCK_SIZE,
  blockBytes: BLOCK_BYTES,
  handshakeTimeoutMs: 5000,
});
const pull = async (): Promise<number> => {
  const r = await client.pull({
    host: '127.0.0.1',
    port: peer.kvPort,
    engineId: 'bench-prefiller',
    requestId: 'bench',
    blockIds,
    seeds,
    timeoutMs: 60_000,
  });
  if (r.blocks !== BLOCKS) throw new Error(`pulled ${r.blocks} blocks`);
  return r.seconds;
};

// Warm-up both paths (connections, JIT), then alternate so both see the same machine.
await pull();
await plainCopy(peer.plainPort);
const kvTimes: number[] = [];
const plainTimes: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  kvTimes.push(await pull());
  plainTimes.push(await plainCopy(peer.plainPort));
}
const best = (xs: number[]): number => Math.min(...xs);
const mb = (BLOCKS * BLOCK_BYTES) / 1e6;
const kvRate = mb / best(kvTimes);
const plainRate = mb / best(plainTimes);
console.log(
  `KV transfer over loopback: ${BLOCKS} blocks × ${BLOCK_BYTES / 1024} KiB = ${mb.toFixed(0)} MB, best of ${ROUNDS}`,
);
console.log(`  side channel (framed, verified): ${kvRate.toFixed(0)} MB/s`);
console.log(`  plain TCP copy of the same bytes: ${plainRate.toFixed(0)} MB/s`);
console.log(`  ratio ${(kvRate / plainRate).toFixed(2)} (goal ≥ 0.7)`);
client.close();

// ---- (b) the sidecar's added latency ----

const LATENCY_REQUESTS = 3000;
const BODY = JSON.stringify({ model: 'Qwen/Qwen3-8B', prompt: 'Hello, how are you today?', max_tokens: 8 });

function start(args: string[], readyMsg: string): Promise<string> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (const line of buf.split('\n')) {
        if (line.includes(readyMsg)) resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

type Send = () => Promise<void>;

function sender(
  url: string,
  headers: Record<string, string> = {},
): { send: Send; close: () => Promise<void> } {
  const pool = new Pool(url, { connections: 1, pipelining: 1 });
  const all = { 'content-type': 'application/json', ...headers };
  return {
    send: async () => {
      const res = await pool.request({ path: '/v1/completions', method: 'POST', headers: all, body: BODY });
      if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}`);
      await res.body.dump();
    },
    close: () => pool.close(),
  };
}

/** Sequential calls of `send`; µs each. */
async function latency(send: Send): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 300; i++) await send();
  const t: number[] = [];
  for (let i = 0; i < LATENCY_REQUESTS; i++) {
    const t0 = performance.now();
    await send();
    t.push((performance.now() - t0) * 1000);
  }
  t.sort((a, b) => a - b);
  return { p50: percentile(t, 50), p99: percentile(t, 99) };
}

const [decoderUrl, prefillerUrl] = await Promise.all([
  start(['--import', 'tsx', 'bench/fast-backend.ts'], 'backend is ready'),
  start(['--import', 'tsx', 'bench/fast-backend.ts', '--prefiller'], 'backend is ready'),
]);
const sidecarUrl = await start(
  [
    'dist/cli.js',
    'sidecar',
    '--host=127.0.0.1',
    '--port=0',
    `--vllm-port=${new URL(decoderUrl).port}`,
    '--log-level=info',
  ],
  'llmd sidecar is ready',
);
const decoder = sender(decoderUrl);
const prefiller = sender(prefillerUrl);
const proxied = sender(sidecarUrl);
const pdSidecar = sender(sidecarUrl, { 'x-prefiller-host-port': new URL(prefillerUrl).host });

const direct = await latency(decoder.send);
const viaSidecar = await latency(proxied.send);
const byHand = await latency(async () => {
  await prefiller.send();
  await decoder.send();
});
const pd = await latency(pdSidecar.send);
await Promise.all([decoder.close(), prefiller.close(), proxied.close(), pdSidecar.close()]);

const us = (n: number): string => n.toFixed(0);
const ms = (n: number): string => (n / 1000).toFixed(3);
console.log(`\nllmd sidecar, one request at a time (µs), ${LATENCY_REQUESTS} requests each`);
console.log(`  decode server directly:        p50 ${us(direct.p50)}, p99 ${us(direct.p99)}`);
console.log(
  `  through the sidecar:           p50 ${us(viaSidecar.p50)}, p99 ${us(viaSidecar.p99)} → adds ` +
    `p50 ${ms(viaSidecar.p50 - direct.p50)} ms, p99 ${ms(viaSidecar.p99 - direct.p99)} ms`,
);
console.log(`  P/D legs sent by hand:         p50 ${us(byHand.p50)}, p99 ${us(byHand.p99)}`);
console.log(
  `  P/D through the sidecar:       p50 ${us(pd.p50)}, p99 ${us(pd.p99)} → adds ` +
    `p50 ${ms(pd.p50 - byHand.p50)} ms, p99 ${ms(pd.p99 - byHand.p99)} ms`,
);
process.exit(0);
