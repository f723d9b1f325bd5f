#!/usr/bin/env node
/**
 * `llmd` and its subcommands. Thin: parse flags, build a component's options, start it, and stop it
 * cleanly on SIGINT/SIGTERM. Flag names and defaults follow the upstream tools (vLLM for `serve`).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, LlmdError } from './core/errors.js';
import { createKubeClient } from './core/kubernetes/client.js';
import { PoolPodsWatch } from './core/kubernetes/pool-pods.js';
import { poolNamespaceOf, poolSourceOf } from './core/kubernetes/pool-source.js';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from './core/log.js';
import type { KvEventIngest } from './kvcache/events/ingest.js';
import { PoolDialer } from './kvcache/pool-dialer.js';
import {
  KvEventsConfigSchema,
  KvTransferConfigSchema,
  parseJsonFlag,
  type ServeOptionsInput,
} from './engine/options.js';
import { startServe } from './engine/serve.js';
import { startEpp } from './epp/epp.js';
import { parseKvEndpoint, startKvIndexer } from './kvcache/kv-indexer.js';
import { parseSidecarArgs, sidecarHelp } from './sidecar/flags.js';
import { upCommand } from './cluster/command.js';
import { benchCommand } from './bench/command.js';
import { startSidecar } from './sidecar/sidecar.js';
import { parseDuration } from './core/duration.js';
import { packageVersion } from './core/version.js';
import { int, num } from './core/flag-values.js';

/** A numeric environment variable, or undefined when unset; a malformed one fails start-up. */
function envNumber(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got ${v}`);
  return n;
}

interface ServeFlags {
  model?: string;
  host: string;
  port: number;
  servedModelName?: string[];
  maxModelLen?: number;
  blockSize: number;
  numGpuBlocksOverride?: number;
  gpuMemoryUtilization: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  enablePrefixCaching: boolean;
  prefixCachingHashAlgo: 'sha256_cbor' | 'xxhash_cbor';
  seed: number;
  tokenizer?: string;
  tensorParallelSize: number;
  streamInterval: number;
  enablePromptTokensDetails?: boolean;
  kvTransferConfig?: string;
  kvEventsConfig?: string;
  kvEventsMapFormat?: boolean;
  hardware: string;
  mode: 'random' | 'echo';
  maxWaitingQueueLength: number;
  maxRequestBodySizeMb: number;
  simMfu?: number;
  simMbu?: number;
  simStepOverheadMs?: number;
  simJitter?: number;
  simFixedStepMs?: number;
  simKvTransferScale: number;
  simKvTransferGbps: number;
  simKvTransferCorrupt?: boolean;
  kvTransferTimeoutMs: number;
  logLevel: LogLevel;
}

function serveCommand(): Command {
  return new Command('serve')
    .description('Start a vLLM-compatible model server with simulated compute')
    .argument('[model]', 'model name, e.g. Qwen/Qwen3-32B (selects the architecture profile)')
    .option('--model <name>', 'model name (alternative to the positional argument)')
    .option('--host <host>', 'address to listen on', '0.0.0.0')
    .option('--port <port>', 'port to listen on (0 picks a free one)', int, 8000)
    .option('--served-model-name <names...>', 'model names the API answers to (default: the model)')
    .option('--max-model-len <n>', 'context length (default: the model profile)', int)
    .option('--block-size <n>', 'tokens per KV-cache block', int, 16)
    .option('--num-gpu-blocks-override <n>', 'KV-cache blocks, instead of the profile-derived capacity', int)
    .option('--gpu-memory-utilization <f>', 'fraction of accelerator memory for weights + KV cache', num, 0.9)
    .option('--max-num-seqs <n>', 'maximum sequences per engine step', int, 256)
    .option('--max-num-batched-tokens <n>', 'token budget per engine step', int, 8192)
    .option('--enable-prefix-caching', 'enable automatic prefix caching (default)')
    .option('--no-enable-prefix-caching', 'disable automatic prefix caching')
    .addOption(
      new Option('--prefix-caching-hash-algo <algo>', 'block hash function')
        .choices(['sha256_cbor', 'xxhash_cbor'])
        .default('sha256_cbor'),
    )
    .option('--seed <n>', 'random seed (output text, jitter)', int, 0)
    .option('--tokenizer <path>', 'tokenizer directory or tokenizer.json (default: embedded Qwen3)')
    .option('--tensor-parallel-size <n>', 'tensor-parallel degree of the simulated server', int, 1)
    .option('--stream-interval <n>', 'tokens per streamed chunk', int, 1)
    .option('--enable-prompt-tokens-details', 'report usage.prompt_tokens_details.cached_tokens')
    .option('--kv-transfer-config <json>', "vLLM's KV-transfer (P/D) configuration, as JSON")
    .option('--kv-events-config <json>', "vLLM's KV-events publisher configuration, as JSON")
    .option('--kv-events-map-format', 'send KV events as type-tagged maps (newer vLLM) instead of arrays')
    .option('--hardware <name>', 'simulated accelerator: H100, H200, A100-80G, L40S, ...', 'H100')
    .addOption(new Option('--mode <mode>', 'output text').choices(['random', 'echo']).default('random'))
    .option('--max-waiting-queue-length <n>', 'waiting requests before 429', int, 1000)
    .option('--max-request-body-size-mb <n>', 'largest accepted request body', num, 16)
    .option('--sim-mfu <f>', 'timing model: model FLOPs utilisation override', num)
    .option('--sim-mbu <f>', 'timing model: memory bandwidth utilisation override', num)
    .option('--sim-step-overhead-ms <ms>', 'timing model: fixed per-step overhead override', num)
    .option('--sim-jitter <f>', 'timing model: relative std-dev of step times (seeded)', num)
    .option(
      '--sim-kv-transfer-scale <f>',
      'P/D: fraction of the real KV bytes each transferred block carries',
      num,
      1 / 4096,
    )
    .option(
      '--sim-kv-transfer-gbps <n>',
      'P/D: simulated prefiller-to-decoder link for the full-size KV',
      num,
      100,
    )
    .option('--sim-kv-transfer-corrupt', 'P/D: corrupt every block this prefiller sends (failure testing)')
    .option('--kv-transfer-timeout-ms <ms>', 'P/D: a KV pull that takes longer fails', int, 30_000)
    .option(
      '--sim-fixed-step-ms <ms>',
      'every engine step takes exactly this long (overrides the model)',
      num,
    )
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .action(async (positional: string | undefined, flags: ServeFlags) => {
      const model = positional ?? flags.model;
      if (!model) throw new InvalidArgumentError('a model name is required: llmd serve <model>');
      const input: ServeOptionsInput = {
        model,
        host: flags.host,
        port: flags.port,
        servedModelName: flags.servedModelName,
        maxModelLen: flags.maxModelLen,
        blockSize: flags.blockSize,
        numGpuBlocksOverride: flags.numGpuBlocksOverride,
        gpuMemoryUtilization: flags.gpuMemoryUtilization,
        maxNumSeqs: flags.maxNumSeqs,
        maxNumBatchedTokens: flags.maxNumBatchedTokens,
        enablePrefixCaching: flags.enablePrefixCaching,
        prefixCachingHashAlgo: flags.prefixCachingHashAlgo,
        seed: flags.seed,
        tokenizer: flags.tokenizer,
        tensorParallelSize: flags.tensorParallelSize,
        streamInterval: flags.streamInterval,
        enablePromptTokensDetails: flags.enablePromptTokensDetails ?? false,
        kvTransferConfig:
          flags.kvTransferConfig === undefined
            ? undefined
            : parseJsonFlag('--kv-transfer-config', flags.kvTransferConfig, KvTransferConfigSchema),
        kvEventsConfig:
          flags.kvEventsConfig === undefined
            ? undefined
            : parseJsonFlag('--kv-events-config', flags.kvEventsConfig, KvEventsConfigSchema),
        kvEventsMapFormat: flags.kvEventsMapFormat ?? false,
        hardware: flags.hardware,
        mode: flags.mode,
        maxWaitingQueueLength: flags.maxWaitingQueueLength,
        maxRequestBodyBytes: Math.floor(flags.maxRequestBodySizeMb * 1024 * 1024),
        simMfu: flags.simMfu,
        simMbu: flags.simMbu,
        simStepOverheadMs: flags.simStepOverheadMs,
        simJitter: flags.simJitter,
        simFixedStepMs: flags.simFixedStepMs,
        simKvTransferScale: flags.simKvTransferScale,
        simKvTransferGbps: flags.simKvTransferGbps,
        simKvTransferCorrupt: flags.simKvTransferCorrupt ?? false,
        kvTransferTimeoutMs: flags.kvTransferTimeoutMs,
        // vLLM's environment for the NIXL side channel.
        nixlSideChannelHost: process.env.VLLM_NIXL_SIDE_CHANNEL_HOST,
        nixlSideChannelPort: envNumber('VLLM_NIXL_SIDE_CHANNEL_PORT'),
        nixlAbortTimeoutS: envNumber('VLLM_NIXL_ABORT_REQUEST_TIMEOUT'),
        hashSeed: process.env.PYTHONHASHSEED,
        logLevel: flags.logLevel,
      };
      const logger = createLogger(flags.logLevel, 'serve');
      const running = await startServe(input, logger);
      const stop = (signal: string): void => {
        logger.info({ signal }, 'shutting down');
        void running.close().then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}

function bool(value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new InvalidArgumentError('must be true or false');
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port in 0..65535');
  return n;
}

function durationMs(value: string): number {
  try {
    return parseDuration(value, 'duration');
  } catch {
    throw new InvalidArgumentError('must be a duration such as 50ms, 2s or 1m');
  }
}

/** `8000,8001`: one port or several, each in 1..65535. */
function portList(value: string, previous: number[] | undefined): number[] {
  const out = [...(previous ?? [])];
  for (const part of value.split(',')) {
    const t = part.trim();
    if (t === '') continue;
    const n = Number(t);
    if (!/^\d{1,5}$/.test(t) || n < 1 || n > 65535) {
      throw new InvalidArgumentError(`${JSON.stringify(t)} is not a port in 1..65535`);
    }
    out.push(n);
  }
  return out;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The InferencePool discovery flags `llmd epp` and `llmd kv-indexer` share. */
interface PoolFlags {
  poolName?: string;
  poolNamespace?: string;
  poolGroup: string;
  endpointSelector?: string;
  endpointTargetPorts?: number[];
  kubeconfig?: string;
}

interface EppFlags extends PoolFlags {
  configFile?: string;
  configText?: string;
  endpoint: string[];
  endpointsFile?: string;
  gatewayHost: string;
  gatewayPort: number;
  gateway: boolean;
  grpcPort?: number;
  grpcHealthPort?: number;
  grpcHost: string;
  disableEndpointSubsetFilter?: boolean;
  secureServing: boolean;
  drainTimeout: number;
  certPath?: string;
  metricsPort: number;
  refreshMetricsInterval: number;
  metricsStalenessThreshold: number;
  seed: number;
  allowExperimentalPlugins?: boolean;
  recordDecisions?: boolean;
  maxRequestBodySizeMb: number;
  logLevel: LogLevel;
}

function eppCommand(): Command {
  return new Command('epp')
    .description('Start the endpoint picker and its standalone HTTP gateway')
    .option('--config-file <path>', 'EndpointPickerConfig (YAML or JSON)')
    .option('--config-text <text>', 'EndpointPickerConfig given inline')
    .option(
      '--endpoint <spec>',
      'a model server: name=…,address=…,port=…,labels=k=v;k2=v2 (or address:port); repeatable',
      collect,
      [],
    )
    .option('--endpoints-file <path>', 'endpoints in the file-discovery format, watched for changes')
    .option('--gateway-host <host>', 'address the gateway listens on', '0.0.0.0')
    .option('--gateway-port <port>', 'OpenAI-compatible gateway port (0 picks a free one)', port, 8080)
    .option('--no-gateway', 'do not serve the HTTP gateway')
    .option('--grpc-port <port>', 'Envoy ext_proc gRPC port (upstream uses 9002; off unless given)', port)
    .option(
      '--grpc-health-port <port>',
      'gRPC health service port (upstream uses 9003; off unless given)',
      port,
    )
    .option('--grpc-host <host>', 'address the gRPC servers listen on', '0.0.0.0')
    .option('--disable-endpoint-subset-filter', "ignore the proxy's endpoint subset hint")
    .option(
      '--secure-serving <bool>',
      'serve ext_proc over TLS: the certificate of --cert-path, else a self-signed one (as upstream)',
      bool,
      true,
    )
    .option('--cert-path <dir>', 'directory with tls.crt and tls.key for --secure-serving')
    .option(
      '--drain-timeout <duration>',
      'on SIGTERM, how long ext_proc streams in flight may finish while health reports NOT_SERVING',
      durationMs,
      30_000,
    )
    .option('--metrics-port <port>', 'Prometheus metrics port', port, 9090)
    .option(
      '--refresh-metrics-interval <duration>',
      'model-server metrics scrape tick (min 50ms)',
      durationMs,
      50,
    )
    .option('--metrics-staleness-threshold <duration>', 'metrics older than this are stale', durationMs, 2000)
    .option(
      '--pool-name <name>',
      'the InferencePool whose ready pods are the endpoints (watched); also names the pool metrics',
    )
    .option('--pool-namespace <ns>', "the pool's namespace (default: env NAMESPACE, else default)")
    .option(
      '--pool-group <group>',
      'the InferencePool API group: inference.networking.k8s.io (v1) or inference.networking.x-k8s.io (v1alpha2)',
      'inference.networking.k8s.io',
    )
    .option(
      '--endpoint-selector <selector>',
      'without the CRD: the pods matching this label selector (e.g. app=vllm,llm-d.ai/role in (decode))',
    )
    .option(
      '--endpoint-target-ports <ports>',
      'with --endpoint-selector: the model-server ports of each pod, comma-separated (1 to 8)',
      portList,
    )
    .option('--kubeconfig <path>', 'kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster)')
    .option('--seed <n>', 'seed for every random choice (tie-breaks, exploration)', int, 0)
    .option('--allow-experimental-plugins', 'allow alpha-stability plugin types')
    .option('--record-decisions', 'keep a decision record for every request (debugging)')
    .option('--max-request-body-size-mb <n>', 'largest accepted request body', num, 64)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .action(async (flags: EppFlags) => {
      const logger = createLogger(flags.logLevel, 'epp');
      const running = await startEpp(
        {
          configFile: flags.configFile,
          configText: flags.configText,
          endpoints: flags.endpoint,
          endpointsFile: flags.endpointsFile,
          gatewayHost: flags.gatewayHost,
          gatewayPort: flags.gateway ? flags.gatewayPort : null,
          grpcHost: flags.grpcHost,
          grpcPort: flags.grpcPort ?? null,
          grpcHealthPort: flags.grpcHealthPort ?? null,
          disableEndpointSubsetFilter: flags.disableEndpointSubsetFilter ?? false,
          secureServing: flags.secureServing,
          certPath: flags.certPath,
          metricsPort: flags.metricsPort,
          refreshMetricsIntervalMs: flags.refreshMetricsInterval,
          metricsStalenessMs: flags.metricsStalenessThreshold,
          poolName: flags.poolName,
          poolNamespace: poolNamespaceOf(flags.poolNamespace),
          poolGroup: flags.poolGroup,
          endpointSelector: flags.endpointSelector,
          endpointTargetPorts: flags.endpointTargetPorts,
          kubeconfig: flags.kubeconfig,
          seed: flags.seed,
          allowExperimentalPlugins: flags.allowExperimentalPlugins ?? false,
          recordDecisions: flags.recordDecisions ?? false,
          maxRequestBodyBytes: Math.floor(flags.maxRequestBodySizeMb * 1024 * 1024),
          logLevel: flags.logLevel,
        },
        logger,
      );
      const stop = (signal: string, drainMs: number): void => {
        logger.info({ signal, drain_ms: drainMs }, 'shutting down');
        void running.close(drainMs).then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT', 0));
      process.once('SIGTERM', () => stop('SIGTERM', flags.drainTimeout));
    });
}

/**
 * `llmd sidecar`: flags are read by `parseSidecarArgs`, which takes llm-d's Go spellings (`-port=8000`,
 * `-vllm-port 8001`, `-enable-ssrf-protection=true`) that commander does not.
 */
function sidecarCommand(): Command {
  const cmd = new Command('sidecar')
    .description('Start the P/D routing sidecar in front of a decode model server')
    .argument('[flags...]')
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption(false)
    .configureHelp({ formatHelp: () => sidecarHelp() })
    .action(async (_args: string[], _opts: unknown, self: Command) => {
      const parsed = parseSidecarArgs(self.args, process.env);
      if (parsed.help) {
        process.stdout.write(sidecarHelp());
        return;
      }
      const level = parsed.input.logLevel ?? 'info';
      const logger = createLogger(LOG_LEVELS.includes(level) ? level : 'info', 'sidecar');
      for (const w of parsed.warnings) logger.warn(w);
      const running = await startSidecar(parsed.input, { logger });
      const stop = (signal: string): void => {
        logger.info({ signal }, 'shutting down');
        void running.close().then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
  return cmd;
}

interface KvIndexerFlags extends PoolFlags {
  host: string;
  port: number;
  zmqPort: number;
  zmqEndpoint?: string;
  zmq: boolean;
  topicFilter: string;
  endpoint: string[];
  replayPort: number;
  engineType: 'vllm' | 'sglang';
  cacheSize: number;
  podCacheSize: number;
  redis?: string;
  blockSize: number;
  hashSeed: string;
  hashAlgorithm: 'cbor-fnv' | 'xxh64';
  model: string;
  tokenizer?: string;
  speculativeTtl: number;
  podSocketPort: number;
  logLevel: LogLevel;
}

/**
 * `llmd kv-indexer --pool-name` / `--endpoint-selector`: dial the KV events of the pool's pods as they
 * come and go. Null without either flag.
 */
async function followPool(
  flags: KvIndexerFlags,
  ingest: KvEventIngest,
  logger: Logger,
): Promise<{ stop(): Promise<void> } | null> {
  const source = poolSourceOf(flags);
  if (source === null) return null;
  if (flags.endpoint.length > 0)
    throw new ConfigError(
      '--endpoint and --pool-name/--endpoint-selector are mutually exclusive',
      'endpoint',
    );
  const watch = new PoolPodsWatch({
    api: await createKubeClient({ kubeconfig: flags.kubeconfig }),
    namespace: poolNamespaceOf(flags.poolNamespace),
    source,
    logger,
  });
  const dialer = new PoolDialer({ watch, ingest, socketPort: flags.podSocketPort, logger });
  watch.start();
  await watch.waitForSync();
  await dialer.idle();
  logger.info({ source: watch.describe(), dialled: dialer.wanted().length }, 'dialling the pool pods');
  return watch;
}

function kvIndexerCommand(): Command {
  return new Command('kv-indexer')
    .description("Start the KV-cache indexer: index model servers' KV events and score prompts over HTTP")
    .option('--host <host>', 'address the HTTP API listens on', '0.0.0.0')
    .option('--port <port>', 'HTTP API port (0 picks a free one)', port, 8080)
    .option('--zmq-port <port>', "bind tcp://*:<port> for the servers' KV-event publishers", port, 5557)
    .option('--zmq-endpoint <endpoint>', 'the ZMQ endpoint to bind instead (e.g. tcp://127.0.0.1:5557)')
    .option('--no-zmq', 'bind no ZMQ endpoint (dial the --endpoint publishers only)')
    .option('--topic-filter <prefix>', 'ZMQ topic prefix to subscribe to', 'kv@')
    .option(
      '--endpoint <spec>',
      "a server's publisher to dial: <address:port>=tcp://host:port[,replay=tcp://host:port]; repeatable",
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .option('--replay-port <port>', "central topology: each server's replay ROUTER port (0: none)", port, 0)
    .addOption(
      new Option('--engine-type <type>', 'the event dialect').choices(['vllm', 'sglang']).default('vllm'),
    )
    .option('--cache-size <n>', 'index capacity in block keys (in-memory index)', int, 100_000_000)
    .option('--pod-cache-size <n>', 'servers kept per block key (in-memory index)', int, 10)
    .option('--redis <address>', 'keep the index in Redis (redis://host:port/db, host:port, unix://…)')
    .option('--block-size <n>', 'tokens per indexed block (llm-d blockSizeTokens)', int, 16)
    .option('--hash-seed <seed>', "the servers' PYTHONHASHSEED (llm-d hashSeed)", '')
    .addOption(
      new Option('--hash-algorithm <algo>', 'request-key hash')
        .choices(['cbor-fnv', 'xxh64'])
        .default('cbor-fnv'),
    )
    .option('--model <name>', 'model of requests and of events whose topic names none', 'Qwen/Qwen3-8B')
    .option('--tokenizer <path>', 'tokenizer directory or tokenizer.json (default: embedded Qwen3)')
    .option(
      '--speculative-ttl <duration>',
      'lifetime of speculative entries (0 turns them off)',
      durationMs,
      2000,
    )
    .option(
      '--pool-name <name>',
      "dial the KV events of this InferencePool's ready pods, as they come and go",
    )
    .option('--pool-namespace <ns>', "the pool's namespace (default: env NAMESPACE, else default)")
    .option(
      '--pool-group <group>',
      'the InferencePool API group: inference.networking.k8s.io (v1) or inference.networking.x-k8s.io (v1alpha2)',
      'inference.networking.k8s.io',
    )
    .option('--endpoint-selector <selector>', 'without the CRD: dial the pods matching this label selector')
    .option(
      '--endpoint-target-ports <ports>',
      "with --endpoint-selector: each pod's model-server ports (the servers' ids are podIP:port)",
      portList,
    )
    .option('--kubeconfig <path>', 'kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster)')
    .option(
      '--pod-socket-port <port>',
      "the pods' KV-event publisher port (llm-d podDiscoveryConfig.socketPort); the pod annotation llm-d.ai/kv-events-endpoint overrides it",
      port,
      5557,
    )
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .action(async (flags: KvIndexerFlags) => {
      const logger = createLogger(flags.logLevel, 'kv-indexer');
      const running = await startKvIndexer(
        {
          host: flags.host,
          port: flags.port,
          zmqEndpoint: flags.zmq ? (flags.zmqEndpoint ?? `tcp://*:${flags.zmqPort}`) : null,
          topicFilter: flags.topicFilter,
          endpoints: flags.endpoint.map(parseKvEndpoint),
          replayPort: flags.replayPort,
          engineType: flags.engineType,
          cacheSize: flags.cacheSize,
          podCacheSize: flags.podCacheSize,
          redis: flags.redis,
          blockSize: flags.blockSize,
          hashSeed: flags.hashSeed,
          hashAlgorithm: flags.hashAlgorithm,
          model: flags.model,
          tokenizer: flags.tokenizer,
          speculativeTtlMs: flags.speculativeTtl,
          logLevel: flags.logLevel,
        },
        { logger },
      );
      let pool: { stop(): Promise<void> } | null;
      try {
        pool = await followPool(flags, running.ingest, logger);
      } catch (err) {
        await running.close();
        throw err;
      }
      const stop = (signal: string): void => {
        logger.info({ signal }, 'shutting down');
        void Promise.resolve(pool?.stop())
          .then(() => running.close())
          .then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}

export function buildProgram(): Command {
  return new Command('llmd')
    .description('llm-d in TypeScript: endpoint picker, P/D sidecar, model server, KV-cache indexer')
    .version(packageVersion())
    .addCommand(serveCommand())
    .addCommand(eppCommand())
    .addCommand(sidecarCommand())
    .addCommand(kvIndexerCommand())
    .addCommand(upCommand())
    .addCommand(benchCommand());
}

// vLLM spells the short form `-tp`; commander's short flags are one letter.
const argv = process.argv.map((a) => (a === '-tp' ? '--tensor-parallel-size' : a));

buildProgram()
  .parseAsync(argv)
  .catch((err: unknown) => {
    if (err instanceof LlmdError) process.stderr.write(`llmd: ${err.message}\n`);
    else if (err instanceof Error) process.stderr.write(`llmd: ${err.message}\n`);
    else process.stderr.write('llmd: unexpected error\n');
    process.exit(1);
  });
