/**
 * `llmd serve`: wires the model server together — options, timing profile, tokenizer, output
 * generator, engine core, real-time driver, metrics and the HTTP server — and returns a handle that
 * can close it all.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger, type Logger } from '../core/log.js';
import { packageVersion } from '../core/version.js';
import { ConfigError } from '../core/errors.js';
import { collectStartupGarbage } from '../core/startup-heap.js';
import { EngineCore } from './core/engine-core.js';
import { NixlConnector, newEngineId } from './kv-transfer/connector.js';
import { kvBytesPerToken } from './profiles/models.js';
import { FixedStepTimer } from './core/fixed-timer.js';
import { createTimer, kvCapacity } from './core/timing.js';
import { RealtimeDriver, monotonicSeconds } from './driver.js';
import { KvEventPublisher } from './kv-events/publisher.js';
import { EngineMetrics } from './metrics.js';
import { parseServeOptions, type ServeOptions, type ServeOptionsInput } from './options.js';
import { createOutputGenerator } from './output/index.js';
import { EngineServer } from './server.js';
import { loadTokenizer } from './tokenizer/tokenizer.js';

export interface RunningServe {
  readonly url: string;
  readonly port: number;
  readonly options: ServeOptions;
  readonly core: EngineCore;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  /** The KV-event publisher (its bound endpoints, counters), when `--kv-events-config` enables one. */
  readonly kvEvents: KvEventPublisher | null;
  /** The P/D side channel's port, when the NixlConnector is on. */
  readonly sideChannelPort: number | null;
  close(): Promise<void>;
}

/** Whether `--kv-transfer-config` asks for the NixlConnector (alone or inside a MultiConnector). */
function usesNixl(cfg: ServeOptions['kvTransferConfig']): boolean {
  if (cfg === undefined) return false;
  if (cfg.kv_connector === 'NixlConnector') return true;
  if (cfg.kv_connector !== 'MultiConnector') return false;
  const list = cfg.kv_connector_extra_config.connectors;
  return (
    Array.isArray(list) &&
    list.some(
      (c) =>
        c !== null &&
        typeof c === 'object' &&
        (c as { kv_connector?: unknown }).kv_connector === 'NixlConnector',
    )
  );
}

export async function startServe(input: ServeOptionsInput, logger?: Logger): Promise<RunningServe> {
  const opts = parseServeOptions(input);
  const log = logger ?? createLogger(opts.logLevel, 'serve');
  const overrides = {
    mfu: opts.simMfu,
    mbu: opts.simMbu,
    stepOverheadMs: opts.simStepOverheadMs,
    jitter: opts.simJitter,
  };
  const profile = createTimer(opts.model, opts.hardware, opts.tensorParallelSize, overrides, opts.seed);
  const maxModelLen = opts.maxModelLen ?? profile.model.maxModelLen;
  // With an override the capacity is the user's word, even for a model too large for the hardware.
  const numGpuBlocks =
    opts.numGpuBlocksOverride ??
    kvCapacity(
      profile.model,
      profile.hardware,
      opts.tensorParallelSize,
      opts.gpuMemoryUtilization,
      opts.blockSize,
    ).numGpuBlocks;
  const timer =
    opts.simFixedStepMs !== undefined ? new FixedStepTimer(opts.simFixedStepMs / 1000) : profile.timer;

  const tokenizer = await loadTokenizer(opts.tokenizer);
  const output = createOutputGenerator({ tokenizer, mode: opts.mode, seed: opts.seed, maxModelLen });
  // KV events: vLLM's publisher is `zmq` once enabled unless set to `null`, which publishes nothing — then
  // the core records none either, so nothing piles up undrained.
  const kvEventsConfig = opts.kvEventsConfig?.enable_kv_cache_events === true ? opts.kvEventsConfig : null;
  const kvEvents = kvEventsConfig !== null && (kvEventsConfig.publisher ?? 'zmq') === 'zmq';
  const core = new EngineCore({
    blockSize: opts.blockSize,
    numGpuBlocks,
    maxNumSeqs: opts.maxNumSeqs,
    maxNumBatchedTokens: Math.max(opts.maxNumBatchedTokens, 1),
    maxModelLen,
    enablePrefixCaching: opts.enablePrefixCaching,
    hashAlgo: opts.prefixCachingHashAlgo,
    hashSeed: opts.hashSeed,
    enableKvEvents: kvEvents,
    timer,
    heldBlocksTimeoutS: opts.nixlAbortTimeoutS,
  });
  const modelNames = opts.servedModelName ?? [opts.model];
  const metrics = new EngineMetrics({
    modelName: modelNames[0]!,
    maxModelLen,
    cacheConfig: {
      block_size: opts.blockSize,
      num_gpu_blocks: numGpuBlocks,
      num_cpu_blocks: 0,
      cache_dtype: 'auto',
      enable_prefix_caching: opts.enablePrefixCaching,
      prefix_caching_hash_algo: opts.prefixCachingHashAlgo,
      gpu_memory_utilization: opts.gpuMemoryUtilization,
    },
    stats: () => {
      const st = core.stats();
      // The core finishes a step's requests when it plans the step; until the step's end on the wall
      // clock they are still in the executing batch, which is what vLLM's gauge counts.
      const inFlight = driver.inFlightSeqs;
      return inFlight > st.numRunning ? { ...st, numRunning: inFlight } : st;
    },
  });

  // ---- KV events: one batch per engine step that produced events (and after a prefix-cache reset) ----
  const kvPublisher =
    kvEvents && kvEventsConfig !== null
      ? await KvEventPublisher.create({
          config: kvEventsConfig,
          mapFormat: opts.kvEventsMapFormat,
          logger: log,
        })
      : null;
  const publishKvEvents = (): void => {
    if (kvPublisher === null) return;
    const events = core.drainEvents();
    if (events.length > 0) kvPublisher.publish(events, Date.now() / 1000);
  };
  // ---- end KV events ----

  // ---- P/D: the NixlConnector side channel (prefill: serve held blocks; decode: pull them) ----
  const connector = usesNixl(opts.kvTransferConfig)
    ? new NixlConnector(
        core,
        opts.model,
        opts.blockSize,
        kvBytesPerToken(profile.model),
        opts.tensorParallelSize,
        {
          engineId: opts.kvTransferConfig?.engine_id ?? newEngineId(),
          sideChannelHost: opts.nixlSideChannelHost,
          sideChannelPort: opts.nixlSideChannelPort,
          abortTimeoutS: opts.nixlAbortTimeoutS,
          failurePolicy: opts.kvTransferConfig?.kv_load_failure_policy ?? 'fail',
          payloadScale: opts.simKvTransferScale,
          linkBytesPerSecond: (opts.simKvTransferGbps * 1e9) / 8,
          transferTimeoutMs: opts.kvTransferTimeoutMs,
          // vLLM waits 5 s for a handshake; never longer than a whole transfer may take.
          handshakeTimeoutMs: Math.min(5_000, opts.kvTransferTimeoutMs),
          corruptPayloads: opts.simKvTransferCorrupt,
        },
        log,
        {
          transferred: (blocks, bytes, seconds) => metrics.observeTransfer(seconds, bytes, blocks),
          transferFailed: () => metrics.transferFailed(),
        },
      )
    : null;
  let sideChannelPort: number | null = null;
  if (connector !== null) {
    try {
      sideChannelPort = await connector.start();
    } catch (err) {
      await kvPublisher?.close();
      throw new ConfigError(
        `VLLM_NIXL_SIDE_CHANNEL_PORT ${opts.nixlSideChannelPort}: cannot listen (${(err as Error).message})`,
        'VLLM_NIXL_SIDE_CHANNEL_PORT',
      );
    }
  }
  // ---- end P/D ----

  let engineServer: EngineServer | null = null;
  const driver = new RealtimeDriver(core, monotonicSeconds, {
    onStep: (result, since) => {
      engineServer?.onStep(result, since);
      publishKvEvents();
    },
  });
  engineServer = new EngineServer({
    options: opts,
    modelNames,
    maxModelLen,
    numGpuBlocks,
    core,
    driver,
    tokenizer,
    output,
    metrics,
    logger: log,
    version: packageVersion(),
    onPrefixCacheReset: publishKvEvents,
    connector,
  });

  const server: Server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, engineServer.handle);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  collectStartupGarbage();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await kvPublisher?.close();
    await connector?.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const host = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info(
    {
      url,
      model: opts.model,
      served_model_name: modelNames,
      hardware: profile.hardware.name,
      tensor_parallel_size: opts.tensorParallelSize,
      num_gpu_blocks: numGpuBlocks,
      kv_capacity_tokens: numGpuBlocks * opts.blockSize,
      max_model_len: maxModelLen,
      kv_events:
        kvPublisher === null
          ? null
          : { endpoint: kvPublisher.endpoint, replay_endpoint: kvPublisher.replayEndpoint },
      kv_transfer:
        connector === null
          ? null
          : {
              engine_id: connector.settings.engineId,
              side_channel_port: sideChannelPort,
              block_bytes: connector.blockBytes,
            },
    },
    'llmd serve is ready',
  );

  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    options: opts,
    core,
    numGpuBlocks,
    maxModelLen,
    kvEvents: kvPublisher,
    sideChannelPort,
    close() {
      closed ??= new Promise<void>((resolve) => {
        engineServer?.drain();
        driver.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      })
        .then(() => kvPublisher?.close())
        .then(() => connector?.close());
      return closed;
    },
  };
}
