/**
 * Real llmd processes for integration tests: `node dist/cli.js <command>` on port 0, ready when it logs
 * its ready line (which carries the URLs it bound). Every process is killed when the test file ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface LlmdProcess {
  readonly proc: ChildProcess;
  /** The JSON of the ready log line. */
  readonly ready: Record<string, unknown>;
  readonly url: string;
  /** Every log line so far. */
  readonly logs: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<ChildProcess>();

export async function startLlmd(
  args: string[],
  readyMsg: string,
  timeoutMs = 20_000,
  env: Record<string, string> = {},
): Promise<LlmdProcess> {
  const proc = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  running.add(proc);
  const logs: string[] = [];
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`llmd ${args[0]} not ready: ${stderr}`)), timeoutMs);
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        if (line.includes(readyMsg)) {
          clearTimeout(timer);
          resolve(JSON.parse(line) as Record<string, unknown>);
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`llmd ${args.join(' ')} exited with ${code}: ${stderr}`));
    });
  });
  return {
    proc,
    ready,
    url: ready.url as string,
    logs,
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill(signal);
      });
    },
  };
}

export interface ServeProcessOptions {
  /** Default Qwen/Qwen3-0.6B. */
  readonly model?: string;
  readonly env?: Record<string, string>;
}

/** `llmd serve` on a free port, with `extra` flags. */
export function startServeProcess(extra: string[] = [], o: ServeProcessOptions = {}): Promise<LlmdProcess> {
  return startLlmd(
    [
      'serve',
      o.model ?? 'Qwen/Qwen3-0.6B',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--enable-prompt-tokens-details',
      '--log-level',
      'info',
      ...extra,
    ],
    'llmd serve is ready',
    20_000,
    o.env,
  );
}

/** `llmd sidecar` on a free port in front of the model server on `modelServerPort`. */
export function startSidecarProcess(modelServerPort: number, extra: string[] = []): Promise<LlmdProcess> {
  return startLlmd(
    [
      'sidecar',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      `--vllm-port=${modelServerPort}`,
      '--log-level',
      'info',
      ...extra,
    ],
    'llmd sidecar is ready',
  );
}

export function startEppProcess(args: string[]): Promise<LlmdProcess> {
  return startLlmd(
    [
      'epp',
      '--gateway-host',
      '127.0.0.1',
      '--gateway-port',
      '0',
      '--metrics-port',
      '0',
      '--log-level',
      'info',
      ...args,
    ],
    'llmd epp is ready',
  );
}

export function killAll(): void {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  running.clear();
}
