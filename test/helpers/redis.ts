/**
 * A real `redis-server` for tests and benchmarks: on a free loopback port (found with a port-0
 * probe, never hard-coded), with no persistence (`--save "" --appendonly no`), in its own temporary
 * directory. `start` returns once the server answers PING; `stop` and `restart` (same port) let
 * resilience tests take Redis away and bring it back. Free of vitest so `bench/` can use it too:
 * test files call `afterAll(killAllRedis)`, and any server still running when the process exits is
 * killed then.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.js';

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Whether the process is running now. */
  readonly running: boolean;
  /** Stops the server (SIGTERM, then waits for its exit): clients see the connection close. */
  stop(): Promise<void>;
  /** Starts it again on the same port, with an empty keyspace and script cache. */
  restart(): Promise<void>;
  /**
   * Kills the process at once (SIGKILL), as a crash: replies in flight are lost and clients see the
   * connection reset. `restart` brings it back on the same port.
   */
  crash(): Promise<void>;
  /** Freezes the process (SIGSTOP): connections stay open, nothing answers, as a hung server. */
  pause(): void;
  /** Lets a paused server run again (SIGCONT). */
  resume(): void;
  /** Stops it for good and removes its directory. */
  kill(): Promise<void>;
}

const servers = new Set<RedisServerProcess>();

/** A free loopback TCP port: bind port 0, read the port the kernel chose, release it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from the probe'))));
    });
  });
}

/** One raw `PING` over TCP: true when the server answers `+PONG`. */
export function ping(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('error', () => done(false));
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.once('connect', () => sock.write('PING\r\n'));
  });
}

class RedisServerProcess implements RedisServer {
  readonly host = '127.0.0.1';
  readonly url: string;
  private proc: ChildProcess | null = null;
  private stderr = '';

  constructor(
    readonly port: number,
    private readonly dir: string,
  ) {
    this.url = `redis://${this.host}:${port}`;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(timeoutMs = 10_000): Promise<void> {
    if (this.running) return;
    this.stderr = '';
    const proc = spawn(
      REDIS_SERVER,
      [
        '--port',
        String(this.port),
        '--bind',
        this.host,
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString('utf8')));
    this.proc = proc;
    let spawnError: Error | null = null;
    proc.once('error', (err) => (spawnError = err));
    await waitFor(
      async () => {
        if (spawnError !== null) throw new Error(`cannot start ${REDIS_SERVER}: ${spawnError.message}`);
        if (!this.running) throw new Error(`redis-server exited on start: ${this.stderr}`);
        return ping(this.host, this.port);
      },
      timeoutMs,
      `redis-server on port ${this.port} to answer PING`,
    );
  }

  stop(): Promise<void> {
    const proc = this.proc;
    if (proc === null || !this.running) return Promise.resolve();
    return new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGCONT'); // a paused server cannot act on SIGTERM
      proc.kill('SIGTERM');
    });
  }

  crash(): Promise<void> {
    const proc = this.proc;
    if (proc === null || !this.running) return Promise.resolve();
    return new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }

  pause(): void {
    if (this.running) this.proc!.kill('SIGSTOP');
  }

  resume(): void {
    if (this.running) this.proc!.kill('SIGCONT');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async kill(): Promise<void> {
    servers.delete(this);
    const proc = this.proc;
    if (proc !== null && this.running) {
      await new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort, for the process 'exit' hook. */
  killNow(): void {
    if (this.running) this.proc!.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a fresh redis-server and waits until it answers PING. */
export async function startRedisServer(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'llmd-redis-'));
  const server = new RedisServerProcess(port, dir);
  servers.add(server);
  try {
    await server.start();
  } catch (err) {
    await server.kill();
    throw err;
  }
  return server;
}

/** Kills every server this process started (test files: `afterAll(killAllRedis)`). */
export async function killAllRedis(): Promise<void> {
  await Promise.all([...servers].map((s) => s.kill()));
}

process.once('exit', () => {
  for (const s of servers) s.killNow();
});
