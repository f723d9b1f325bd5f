/**
 * The stack as a list of processes: which `llmd` subcommand each runs, with which flags, environment
 * and ports, and in which start stage. Pure: ports are handed in (see `freePorts`), so the plan is
 * tested without starting anything.
 */
import { createServer } from 'node:net';
import { LOG_LEVELS, type LogLevel } from '../core/log.js';
import {
  parseUserConfig,
  presetDoc,
  presetFor,
  renderConfig,
  usesPrecise,
  wireConfig,
  type ConfigDoc,
  type IndexWiring,
} from './configs.js';
import { isPd, type Topology } from './topology.js';

export type ComponentKind = 'kv-indexer' | 'prefill' | 'decode' | 'sidecar' | 'epp';

export interface ComponentSpec {
  /** Unique, as the log prefix and in the table: `decode-0`, `decode-0-sidecar`, `epp`. */
  readonly name: string;
  readonly kind: ComponentKind;
  /** Arguments after `node dist/cli.js`. */
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** The message of the ready log line. */
  readonly readyMsg: string;
  /** Components of a stage start together, once every earlier stage is ready. */
  readonly stage: number;
  /** The port it was given (null when it picks its own and reports it in its ready line). */
  readonly port: number | null;
}

export interface StackPlan {
  readonly components: readonly ComponentSpec[];
  /** The EPP config the stack runs, as YAML. */
  readonly eppConfig: string;
  /** What the table says about routing: `precise`, `approx (config: my.yaml)`, … */
  readonly routingLabel: string;
  readonly precise: boolean;
  readonly zmqEndpoint: string | null;
}

/** How many internal ports `plan` needs. */
export function portsNeeded(t: Topology): number {
  const servers = t.decode.replicas + t.prefill.replicas;
  const sidecars = isPd(t) ? t.decode.replicas : 0;
  return servers + sidecars + 1; // + the ZMQ endpoint of the KV events
}

const ROLE_LABEL = 'llm-d.ai/role';

const ROUTING_LABELS: Record<Topology['routing'], string> = {
  random: 'random',
  load: 'load-aware (queue, KV-cache utilisation)',
  approx: 'approximate prefix cache',
  precise: 'precise prefix cache (KV events)',
};

/** Children log at least at info, so that their ready lines reach the supervisor; it filters what is shown. */
export function childLogLevel(shown: LogLevel): LogLevel {
  const order = LOG_LEVELS.indexOf(shown);
  return order >= 0 && order > LOG_LEVELS.indexOf('info') && shown !== 'silent' ? shown : 'info';
}

export function plan(t: Topology, ports: readonly number[]): StackPlan {
  if (ports.length < portsNeeded(t)) {
    throw new Error(`plan needs ${portsNeeded(t)} ports, got ${ports.length}`);
  }
  let next = 0;
  const take = (): number => ports[next++]!;
  const pdOn = isPd(t);
  const level = childLogLevel(t.logLevel);
  const loopback = '127.0.0.1';

  let doc: ConfigDoc;
  let routingLabel: string;
  if (t.eppConfig !== null) {
    doc = parseUserConfig(t.eppConfig.text, t.eppConfig.path);
    routingLabel = `config ${t.eppConfig.path}`;
  } else {
    doc = presetDoc(presetFor(t.routing, pdOn));
    routingLabel = ROUTING_LABELS[t.routing];
    if (pdOn) routingLabel += ', P/D';
  }
  const precise = usesPrecise(doc) && t.indexer !== 'off';
  const zmqPort = take();
  const zmqEndpoint = precise ? `tcp://${loopback}:${zmqPort}` : null;

  const components: ComponentSpec[] = [];
  let wiring: IndexWiring = { kind: 'none' };
  if (precise && t.indexer === 'standalone') {
    components.push({
      name: 'kv-indexer',
      kind: 'kv-indexer',
      args: [
        'kv-indexer',
        '--host',
        loopback,
        '--port',
        '0',
        '--zmq-endpoint',
        zmqEndpoint!,
        '--model',
        t.model,
        ...(t.redis !== null ? ['--redis', t.redis] : []),
        '--log-level',
        level,
        ...t.indexerArgs,
      ],
      env: {},
      readyMsg: 'llmd kv-indexer is ready',
      stage: 0,
      port: null,
    });
    // The URL is known once the indexer is ready; the supervisor substitutes it.
    wiring = { kind: 'remote', url: INDEXER_URL_PLACEHOLDER };
  } else if (precise) {
    wiring = { kind: 'embedded', zmqEndpoint: zmqEndpoint!, redis: t.redis };
  }
  const eppConfig = renderConfig(wireConfig(doc, wiring));

  const endpoints: string[] = [];
  const server = (kind: 'decode' | 'prefill', i: number): void => {
    const spec = kind === 'decode' ? t.decode : t.prefill;
    const port = take();
    const name = `${kind}-${i}`;
    // The EPP knows a decode server by its sidecar when P/D is on: events and scores use that address.
    const sidecarPort = kind === 'decode' && pdOn ? take() : null;
    const seenAt = sidecarPort ?? port;
    const args = [
      'serve',
      t.model,
      '--host',
      loopback,
      '--port',
      String(port),
      '--hardware',
      spec.hardware,
      '--enable-prompt-tokens-details',
      '--log-level',
      level,
    ];
    if (pdOn) {
      const role = kind === 'prefill' ? 'kv_producer' : 'kv_both';
      args.push('--kv-transfer-config', JSON.stringify({ kv_connector: 'NixlConnector', kv_role: role }));
    }
    if (zmqEndpoint !== null) {
      args.push(
        '--kv-events-config',
        JSON.stringify({
          enable_kv_cache_events: true,
          publisher: 'zmq',
          endpoint: zmqEndpoint,
          topic: `kv@${loopback}:${seenAt}@${t.model}`,
        }),
      );
    }
    args.push(...spec.args);
    const env: Record<string, string> = { PYTHONHASHSEED: process.env.PYTHONHASHSEED ?? '0' };
    if (pdOn) {
      env.VLLM_NIXL_SIDE_CHANNEL_HOST = loopback;
      env.VLLM_NIXL_SIDE_CHANNEL_PORT = '0';
    }
    components.push({ name, kind, args, env, readyMsg: 'llmd serve is ready', stage: 1, port });
    if (sidecarPort !== null) {
      components.push({
        name: `${name}-sidecar`,
        kind: 'sidecar',
        args: [
          'sidecar',
          '--host',
          loopback,
          '--port',
          String(sidecarPort),
          `--model-server-port=${port}`,
          '--kv-connector',
          'nixlv2',
          '--log-level',
          level,
          ...t.sidecarArgs,
        ],
        env: {},
        readyMsg: 'llmd sidecar is ready',
        stage: 2,
        port: sidecarPort,
      });
    }
    const labels = pdOn ? `,labels=${ROLE_LABEL}=${kind}` : '';
    endpoints.push('--endpoint', `name=${name},address=${loopback},port=${seenAt}${labels}`);
  };
  for (let i = 0; i < t.decode.replicas; i++) server('decode', i);
  for (let i = 0; i < t.prefill.replicas; i++) server('prefill', i);

  components.push({
    name: 'epp',
    kind: 'epp',
    args: [
      'epp',
      '--config-text',
      eppConfig,
      '--gateway-host',
      t.host,
      '--gateway-port',
      String(t.port),
      '--metrics-port',
      '0',
      ...endpoints,
      '--log-level',
      level,
      ...t.eppArgs,
    ],
    env: {},
    readyMsg: 'llmd epp is ready',
    stage: 3,
    port: t.port === 0 ? null : t.port,
  });
  return { components, eppConfig, routingLabel, precise, zmqEndpoint };
}

/** Stands for the standalone indexer's URL in the EPP's config until the indexer has reported it. */
export const INDEXER_URL_PLACEHOLDER = 'http://llmd-up-kv-indexer.invalid';

/** `args` with the placeholder replaced in every argument. */
export function substitute(args: readonly string[], from: string, to: string): string[] {
  return args.map((a) => a.split(from).join(to));
}

/**
 * `n` distinct free loopback ports: all are bound at once (so none repeats), then released for the
 * components to bind.
 */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, host, () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}
