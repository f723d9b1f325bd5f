/**
 * `llmd serve`: wires the model server together — options, timing profile, tokenizer, output
 * generator, engine core, real-time driver, metrics and the HTTP server — and returns a handle that
 * can close it all.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger, type Logger } from '../core/log.js';
import { packageVersion } from '../core/version.js';
import { EngineCore } from './core/engine-core.js';
import { FixedStepTimer } from './core/fixed-timer.js';
import { createTimer, kvCapacity } from './core/timing.js';
import { RealtimeDriver, monotonicSeconds } from './driver.js';
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
  close(): Promise<void>;
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
  const kvEvents = opts.kvEventsConfig?.enable_kv_cache_events === true;
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
    stats: () => core.stats(),
  });

  let engineServer: EngineServer | null = null;
  const driver = new RealtimeDriver(core, monotonicSeconds, {
    onStep: (result) => engineServer?.onStep(result),
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
  });

  const server: Server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, engineServer.handle);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
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
    close() {
      closed ??= new Promise<void>((resolve) => {
        engineServer?.drain();
        driver.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
