/**
 * Runs the stack's processes: spawns each component as `node dist/cli.js <command> …` in its own
 * process group, waits for its ready log line, merges every log line into one stream with a prefix
 * per component (only lines at the shown level or above), and stops everything in reverse start
 * order. Each child also loads `watchdog.js`, which stops it when this process goes away, even when
 * it is killed outright; what is still alive when this process exits is killed on the way out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger, LogLevel } from '../core/log.js';
import type { ComponentSpec } from './plan.js';

const PINO_LEVELS: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

const TAIL_LINES = 40;

export interface SupervisorOptions {
  /** The `llmd` entry point (dist/cli.js). */
  readonly cli: string;
  /** A module every child preloads with `--import` (the watchdog), or null. */
  readonly preload: string | null;
  readonly logger: Logger;
  /** Receives every shown log line of every child, prefixed. */
  readonly write: (line: string) => void;
  readonly shownLevel: LogLevel;
  readonly startTimeoutMs: number;
  /** How long a child has to exit after SIGTERM before it gets SIGKILL. */
  readonly stopTimeoutMs?: number;
}

export interface RunningComponent {
  readonly spec: ComponentSpec;
  readonly pid: number;
  /** The JSON of its ready line. */
  readonly ready: Readonly<Record<string, unknown>>;
  readonly url: string;
}

/** A component that did not come up, or went down: its name and the last lines it wrote. */
export class ComponentFailedError extends Error {
  constructor(
    readonly component: string,
    readonly reason: string,
    readonly tail: readonly string[],
  ) {
    super(`${component} ${reason}`);
    this.name = 'ComponentFailedError';
  }
}

class Child {
  readonly tail: string[] = [];
  readonly exited: Promise<void>;
  ready: RunningComponent | null = null;
  private exitInfo: string | null = null;

  constructor(
    readonly spec: ComponentSpec,
    readonly proc: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitInfo = signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}`;
        resolve();
      });
      proc.once('error', (err) => {
        this.exitInfo = `could not start: ${err.message}`;
        resolve();
      });
    });
  }

  get alive(): boolean {
    return this.exitInfo === null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get exitReason(): string {
    return this.exitInfo ?? 'is running';
  }

  remember(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.alive || this.proc.pid === undefined) return;
    try {
      // The whole group: the child leads one of its own.
      process.kill(-this.proc.pid, sig);
    } catch {
      try {
        this.proc.kill(sig);
      } catch {
        // Already gone.
      }
    }
  }
}

export class Supervisor {
  private readonly children: Child[] = [];
  private stopping: Promise<void> | null = null;
  private readonly failureListeners: ((err: ComponentFailedError) => void)[] = [];
  private readonly width: number;
  private readonly onExit = (): void => this.killAllNow();

  constructor(
    private readonly o: SupervisorOptions,
    names: readonly string[] = [],
  ) {
    this.width = Math.max(8, ...names.map((n) => n.length));
    process.on('exit', this.onExit);
  }

  /** Called once when a started component exits while the stack is not stopping. */
  onFailure(listener: (err: ComponentFailedError) => void): void {
    this.failureListeners.push(listener);
  }

  get pids(): number[] {
    return this.children.flatMap((c) => (c.proc.pid === undefined ? [] : [c.proc.pid]));
  }

  /**
   * Starts the components stage by stage; `prepare` may rewrite a spec from what earlier stages
   * reported (e.g. a URL). Rejects with a ComponentFailedError when one fails to come up.
   */
  async start(
    specs: readonly ComponentSpec[],
    prepare: (spec: ComponentSpec, up: readonly RunningComponent[]) => ComponentSpec = (s) => s,
  ): Promise<RunningComponent[]> {
    const stages = [...new Set(specs.map((s) => s.stage))].sort((a, b) => a - b);
    const up: RunningComponent[] = [];
    for (const stage of stages) {
      const batch = specs.filter((s) => s.stage === stage).map((s) => prepare(s, up));
      up.push(...(await Promise.all(batch.map((s) => this.spawnOne(s)))));
    }
    return up;
  }

  private spawnOne(spec: ComponentSpec): Promise<RunningComponent> {
    if (this.stopping !== null) return Promise.reject(new Error('the stack is stopping'));
    const nodeArgs = this.o.preload === null ? [] : ['--import', this.o.preload];
    const proc = spawn(process.execPath, [...nodeArgs, this.o.cli, ...spec.args], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...spec.env },
      detached: true,
    });
    const child = new Child(spec, proc);
    this.children.push(child);
    this.o.logger.debug({ component: spec.name, pid: proc.pid, args: spec.args }, 'starting');
    const shown = PINO_LEVELS[this.o.shownLevel];
    const prefix = `${spec.name.padEnd(this.width)} | `;

    return new Promise<RunningComponent>((resolve, reject) => {
      let settled = false;
      const fail = (reason: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new ComponentFailedError(spec.name, reason, [...child.tail]));
      };
      const timer = setTimeout(
        () => fail(`was not ready within ${this.o.startTimeoutMs} ms`),
        this.o.startTimeoutMs,
      );
      const onLine = (line: string, fromStderr: boolean): void => {
        child.remember(line);
        let rec: Record<string, unknown> | null = null;
        if (line.startsWith('{')) {
          try {
            const parsed: unknown = JSON.parse(line);
            if (typeof parsed === 'object' && parsed !== null) rec = parsed as Record<string, unknown>;
          } catch {
            rec = null;
          }
        }
        const level = rec !== null && typeof rec.level === 'number' ? rec.level : fromStderr ? 50 : 30;
        if (level >= shown) this.o.write(prefix + line);
        if (!settled && rec !== null && rec.msg === spec.readyMsg) {
          settled = true;
          clearTimeout(timer);
          const url = typeof rec.url === 'string' ? rec.url : '';
          const running: RunningComponent = { spec, pid: proc.pid ?? -1, ready: rec, url };
          child.ready = running;
          resolve(running);
        }
      };
      createInterface({ input: proc.stdout! }).on('line', (l) => onLine(l, false));
      createInterface({ input: proc.stderr! }).on('line', (l) => onLine(l, true));
      void child.exited.then(() => {
        if (!settled) {
          // Let the last lines in the pipes arrive before reporting them.
          setImmediate(() => fail(child.exitReason));
          return;
        }
        if (this.stopping === null) {
          const err = new ComponentFailedError(spec.name, child.exitReason, [...child.tail]);
          for (const l of this.failureListeners.splice(0)) l(err);
        }
      });
    });
  }

  /** SIGTERM in reverse start order, stage by stage; SIGKILL for whatever outlives the timeout. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const timeout = this.o.stopTimeoutMs ?? 5000;
      const stages = [...new Set(this.children.map((c) => c.spec.stage))].sort((a, b) => b - a);
      for (const stage of stages) {
        const batch = this.children.filter((c) => c.spec.stage === stage);
        await Promise.all(
          batch.map(async (c) => {
            if (!c.alive) return;
            c.signal('SIGTERM');
            let timer: NodeJS.Timeout | undefined;
            const killed = new Promise<void>((resolve) => {
              timer = setTimeout(() => {
                this.o.logger.warn({ component: c.spec.name }, 'did not stop in time; killing it');
                c.signal('SIGKILL');
                resolve();
              }, timeout);
            });
            await Promise.race([c.exited, killed]);
            clearTimeout(timer);
            await c.exited;
          }),
        );
      }
      process.off('exit', this.onExit);
    })();
    return this.stopping;
  }

  /** Synchronous last resort (process exit, a second Ctrl-C): SIGKILL to every live child. */
  killAllNow(): void {
    for (const c of this.children) c.signal('SIGKILL');
  }
}
