/**
 * `llmd up`: a whole local stack — gateway/EPP, KV-cache indexer, decode servers (with sidecars when
 * P/D is on) and prefill servers — as real processes on loopback, from flags or `-f topology.yaml`.
 * Prints where to send requests, merges the components' logs, and stops everything on Ctrl-C.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../core/duration.js';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../core/log.js';
import { checkEppConfig } from './configs.js';
import { freePorts, INDEXER_URL_PLACEHOLDER, plan, portsNeeded, substitute, type StackPlan } from './plan.js';
import { ComponentFailedError, Supervisor, type RunningComponent } from './supervisor.js';
import { formatReady } from './table.js';
import {
  DEFAULT_DECODE,
  DEFAULT_MODEL,
  INDEXER_MODES,
  parseFlags,
  parseTopologyFile,
  resolveTopology,
  ROUTINGS,
  type Topology,
} from './topology.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const WATCHDOG = new URL('./watchdog.js', import.meta.url).href;

function durationMs(value: string): string {
  try {
    return String(parseDuration(value, 'duration'));
  } catch {
    throw new InvalidArgumentError('must be a duration such as 30s or 2m');
  }
}

/** Reads flags and the topology file into a Topology; every input error is a ConfigError. */
export function loadTopology(raw: Record<string, unknown>, cwd = process.cwd()): Topology {
  const flags = parseFlags(raw);
  let file: { path: string; doc: ReturnType<typeof parseTopologyFile> } | undefined;
  if (flags.file !== undefined) {
    const path = resolve(cwd, flags.file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new InvalidArgumentError(`-f ${flags.file}: ${(err as Error).message}`);
    }
    file = { path, doc: parseTopologyFile(text, flags.file) };
  }
  return resolveTopology({
    flags,
    file,
    readText: (p) => readFileSync(p, 'utf8'),
    resolvePath: (p, relativeTo) => resolve(relativeTo === null ? cwd : dirname(relativeTo), p),
  });
}

function printTail(err: ComponentFailedError): void {
  const lines = err.tail.length === 0 ? ['(no output)'] : err.tail;
  process.stderr.write(
    `llmd up: ${err.component} ${err.reason}; its last lines:\n${lines.map((l) => `  ${l}`).join('\n')}\n`,
  );
}

export interface UpResult {
  readonly plan: StackPlan;
  readonly components: readonly RunningComponent[];
  readonly gatewayUrl: string;
  readonly supervisor: Supervisor;
}

/** Where the components' entry point and watchdog are (default: next to this module, in dist/). */
export interface StackPaths {
  readonly cli?: string;
  readonly preload?: string | null;
}

/** Starts the stack; on a component that fails to come up, stops what started and rethrows. */
export async function startStack(t: Topology, logger: Logger, paths: StackPaths = {}): Promise<UpResult> {
  const ports = await freePorts(portsNeeded(t));
  const p = plan(t, ports);
  await checkEppConfig(substitute([p.eppConfig], INDEXER_URL_PLACEHOLDER, 'http://127.0.0.1:1')[0]!);
  const supervisor = new Supervisor(
    {
      cli: paths.cli ?? CLI,
      preload: paths.preload === undefined ? WATCHDOG : paths.preload,
      logger,
      write: (line) => process.stderr.write(line + '\n'),
      shownLevel: t.logLevel,
      startTimeoutMs: t.startTimeoutMs,
    },
    p.components.map((c) => c.name),
  );
  try {
    const components = await supervisor.start(p.components, (spec, up) => {
      const indexer = up.find((c) => c.spec.kind === 'kv-indexer');
      if (spec.kind !== 'epp' || indexer === undefined) return spec;
      return { ...spec, args: substitute(spec.args, INDEXER_URL_PLACEHOLDER, indexer.url) };
    });
    await warmUp(components, t.model, logger);
    const epp = components.find((c) => c.spec.kind === 'epp')!;
    return { plan: p, components, gatewayUrl: epp.url, supervisor };
  } catch (err) {
    await supervisor.stop();
    throw err;
  }
}

/**
 * Each model server renders one prompt, so its tokenizer is loaded before the first real request:
 * the EPP's precise producer asks them for token ids under a short deadline.
 */
async function warmUp(components: readonly RunningComponent[], model: string, logger: Logger): Promise<void> {
  const servers = components.filter((c) => c.spec.kind === 'decode' || c.spec.kind === 'prefill');
  await Promise.all(
    servers.map(async (c) => {
      const bodies: [string, object][] = [
        ['/v1/completions/render', { model, prompt: 'warm-up' }],
        ['/v1/chat/completions/render', { model, messages: [{ role: 'user', content: 'warm-up' }] }],
      ];
      try {
        for (const [path, body] of bodies) {
          const res = await fetch(c.url + path, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(10_000),
          });
          await res.arrayBuffer();
        }
      } catch (err) {
        logger.debug({ component: c.spec.name, err: (err as Error).message }, 'warm-up render failed');
      }
    }),
  );
}

export function upCommand(): Command {
  return new Command('up')
    .description(
      'Start a local stack: gateway/EPP, KV-cache indexer, decode (and prefill) model servers, as processes on loopback',
    )
    .option('-f, --file <topology.yaml>', 'topology file (flags given here override it)')
    .option('--port <port>', "the gateway's port (0 picks a free one) (default: 8080)")
    .option('--host <host>', 'address the gateway listens on (default: 127.0.0.1)')
    .option('--decode <n>', `decode model servers (default: ${DEFAULT_DECODE})`)
    .option('--prefill <n>', 'prefill model servers; > 0 turns P/D on (default: 0)')
    .option('--model <name>', `model served by every server (default: ${DEFAULT_MODEL})`)
    .option('--hardware <name>', 'simulated accelerator: H100, H200, A100-80G, L40S, B200 (default: H100)')
    .addOption(
      new Option('--routing <name>', 'routing preset (default: precise; approx with --indexer off)').choices([
        ...ROUTINGS,
      ]),
    )
    .option('--config <epp.yaml>', 'your own EndpointPickerConfig instead of a routing preset')
    .addOption(
      new Option('--indexer <mode>', 'KV-cache indexer for precise routing (default: embedded)').choices([
        ...INDEXER_MODES,
      ]),
    )
    .option('--redis <url>', 'keep the KV-cache index in Redis (redis://host:port)')
    .addOption(
      new Option('--log-level <level>', 'level of the components’ logs shown (default: warn)').choices([
        ...LOG_LEVELS,
      ]),
    )
    .option(
      '--start-timeout <duration>',
      'how long each component may take to be ready (default: 60s)',
      durationMs,
    )
    .action(async (raw: Record<string, unknown>) => {
      const t = loadTopology(raw);
      const logger = createLogger(ownLevel(t.logLevel), 'up', process.stderr);
      let up: UpResult;
      try {
        up = await startStack(t, logger);
      } catch (err) {
        if (err instanceof ComponentFailedError) {
          printTail(err);
          throw new Error(`llmd up: ${err.message}; the stack was stopped`, { cause: err });
        }
        throw err;
      }
      const { supervisor, components } = up;
      process.stdout.write(formatReady(t, up.plan, components, up.gatewayUrl));
      logger.info(
        {
          url: up.gatewayUrl,
          components: components.map((c) => ({
            name: c.spec.name,
            kind: c.spec.kind,
            pid: c.pid,
            url: c.url,
          })),
          routing: up.plan.routingLabel,
        },
        'llmd up is ready',
      );

      let signals = 0;
      const shutdown = (signal: string, code: number): void => {
        if (++signals > 1) {
          supervisor.killAllNow();
          process.exit(130);
        }
        logger.info({ signal }, 'stopping the stack');
        void supervisor.stop().then(() => {
          logger.info('stopped');
          process.exit(code);
        });
      };
      supervisor.onFailure((err) => {
        printTail(err);
        logger.error(
          { component: err.component, reason: err.reason },
          'a component went down; stopping the stack',
        );
        shutdown('component-failed', 1);
      });
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => shutdown(s, 0));
    });
}

/** llmd up's own few lines (ready, stopping) are shown at info unless more detail was asked for. */
function ownLevel(shown: LogLevel): LogLevel {
  return shown === 'debug' || shown === 'trace' ? shown : 'info';
}
