/**
 * `llmd sidecar` as a process, started with the seed's Go-style command line (plus a free port and a
 * loopback address): it logs its ready line, answers /health, applies SSRF protection, and stops on
 * SIGTERM. Run from the TypeScript sources, so it needs no build.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const procs: ChildProcess[] = [];

afterEach(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  procs.length = 0;
});

function run(args: string[]): { proc: ChildProcess; out: string[]; err: () => string } {
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, 'sidecar', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  const out: string[] = [];
  let err = '';
  let buf = '';
  proc.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      out.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return { proc, out, err: () => err };
}

describe('llmd sidecar', () => {
  it("starts from the seed's command line and serves", async () => {
    const { proc, out } = run(
      '-port=0 -vllm-port=8001 -connector=nixlv2 -enable-ssrf-protection=true -host 127.0.0.1'.split(' '),
    );
    await waitFor(() => out.some((l) => l.includes('llmd sidecar is ready')), 20_000, 'the ready line');
    const ready = JSON.parse(out.find((l) => l.includes('llmd sidecar is ready'))!) as Record<
      string,
      unknown
    >;
    expect(ready).toMatchObject({
      connector: 'nixlv2',
      model_server: '127.0.0.1:8001',
      ssrf_protection: true,
    });
    const url = ready.url as string;
    expect((await fetch(url + '/health')).status).toBe(200);
    const denied = await fetch(url + '/v1/completions', {
      method: 'POST',
      headers: { 'x-prefiller-host-port': '10.0.0.1:8000' },
      body: '{}',
    });
    expect(denied.status).toBe(403);
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('exits 1 naming a bad flag', async () => {
    const { proc, err } = run(['-port=abc']);
    const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    expect(code).toBe(1);
    expect(err()).toMatch(/--port: "abc" is not an integer/);
  });

  it('prints its help', async () => {
    const { proc, out } = run(['-help']);
    const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    expect(code).toBe(0);
    expect(out.join('\n')).toContain('--prefill-failure-policy');
  });
});
