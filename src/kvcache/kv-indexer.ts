/**
 * `llmd kv-indexer`: the KV-cache indexer as a service. It indexes every model server's KV events —
 * binding one ZMQ endpoint that the servers' publishers connect to (llm-d's central topology), and/or
 * dialling each server's publisher — into an in-memory or Redis index, and answers prefix scores over
 * HTTP (`service.ts`) for an EPP or any client.
 */
import { Registry } from 'prom-client';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { createLogger, type LogLevel, type Logger } from '../core/log.js';
import { KvEventIngest } from './events/ingest.js';
import { KvCacheIndexer } from './indexer.js';
import { LookupCounters, registerKvCacheMetrics } from './metrics.js';
import { KvIndexerService, type PromptTokenizer } from './service.js';

const EndpointSchema = z.object({
  /** The server's identity, `address:port` of its HTTP API (what scores are keyed by). */
  id: z.string().min(1),
  endpoint: z.string().min(1),
  replayEndpoint: z.string().min(1).nullish(),
});

export const KvIndexerOptionsSchema = z
  .object({
    host: z.string().default('0.0.0.0'),
    /** HTTP API port; 0 picks a free one. */
    port: z.number().int().min(0).max(65535).default(8080),
    /** The ZMQ endpoint to bind for publishers to connect to; null: dial only. */
    zmqEndpoint: z.string().min(1).nullable().default('tcp://*:5557'),
    topicFilter: z.string().default('kv@'),
    /** Publishers to dial. */
    endpoints: z.array(EndpointSchema).default([]),
    /** Central topology: each server's replay port (its ROUTER on the server's address); 0 = none. */
    replayPort: z.number().int().min(0).max(65535).default(0),
    engineType: z.enum(['vllm', 'sglang']).default('vllm'),
    /** Index capacity in block keys (the in-memory index). */
    cacheSize: z.number().int().positive().default(100_000_000),
    podCacheSize: z.number().int().min(1).max(255).default(10),
    /** A Redis address: the index lives there instead (shared by several indexers or EPPs). */
    redis: z.string().min(1).optional(),
    blockSize: z.number().int().positive().default(16),
    hashSeed: z.string().default(''),
    hashAlgorithm: z.enum(['cbor-fnv', 'xxh64']).default('cbor-fnv'),
    /** The model of requests and of events whose topic names none. */
    model: z.string().min(1).default('Qwen/Qwen3-8B'),
    /** A tokenizer directory or tokenizer.json; default the embedded Qwen3 tokenizer. */
    tokenizer: z.string().min(1).optional(),
    /** Speculative entries' lifetime in ms (`POST /speculative`). */
    speculativeTtlMs: z.number().int().min(0).default(2000),
    logLevel: z.string().default('info'),
  })
  .strict();

export type KvIndexerOptionsInput = z.input<typeof KvIndexerOptionsSchema>;
export type KvIndexerOptions = z.output<typeof KvIndexerOptionsSchema>;

export interface RunningKvIndexer {
  readonly url: string;
  readonly port: number;
  /** The ZMQ endpoint bound (a wildcard port resolved), or null. */
  readonly zmqEndpoint: string | null;
  readonly indexer: KvCacheIndexer;
  readonly ingest: KvEventIngest;
  close(): Promise<void>;
}

function loadPromptTokenizer(path: string | undefined): () => Promise<PromptTokenizer> {
  let loading: Promise<PromptTokenizer> | null = null;
  return () =>
    (loading ??= (async () => {
      const [{ loadTokenizer }, { renderChat }] = await Promise.all([
        import('../engine/tokenizer/tokenizer.js'),
        import('../engine/tokenizer/chat-template.js'),
      ]);
      const tk = await loadTokenizer(path);
      return {
        encode: (text, opts) => tk.encode(text, opts),
        renderChat: (options) => renderChat(tk, options),
      };
    })());
}

export async function startKvIndexer(
  input: KvIndexerOptionsInput,
  deps: { logger?: Logger } = {},
): Promise<RunningKvIndexer> {
  const o = KvIndexerOptionsSchema.parse(input);
  const log = deps.logger ?? createLogger(o.logLevel as LogLevel, 'kv-indexer');
  const indexer = await KvCacheIndexer.create({
    tokenProcessor: { blockSizeTokens: o.blockSize, hashSeed: o.hashSeed, hashAlgorithm: o.hashAlgorithm },
    backend:
      o.redis !== undefined
        ? { kind: 'redis', address: o.redis }
        : { kind: 'memory', maxKeys: o.cacheSize, podCacheSize: o.podCacheSize },
    weights: { gpu: 1, cpu: 0.8 },
    speculativeTtlMs: o.speculativeTtlMs,
    logger: log,
  });
  const ingest = new KvEventIngest({
    index: indexer.index,
    tokenProcessor: indexer.tp,
    bindEndpoint: o.zmqEndpoint,
    topicFilter: o.topicFilter,
    dialect: o.engineType,
    defaultModel: o.model,
    replayEndpointFor: o.replayPort === 0 ? undefined : (server) => `tcp://${hostOf(server)}:${o.replayPort}`,
    logger: log,
  });
  const registry = new Registry();
  const lookups = new LookupCounters();
  const index = indexer.index;
  const latency = registerKvCacheMetrics(registry, {
    ingest: () => ingest.stats(),
    lookups,
    indexAvailable: 'available' in index ? () => (index as { available: boolean }).available : undefined,
    clientCache: () => indexer.clientCacheStats(),
  });
  const service = new KvIndexerService({
    indexer,
    tokenizer: loadPromptTokenizer(o.tokenizer),
    defaultModel: o.model,
    registry,
    lookups,
    latency,
    logger: log,
  });
  let port: number;
  try {
    await ingest.start();
    for (const e of o.endpoints) await ingest.ensure(e.id, e.endpoint, e.replayEndpoint ?? null);
    port = await service.listen(o.port, o.host);
  } catch (err) {
    await ingest.close();
    await indexer.close();
    throw err;
  }
  const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info(
    {
      url,
      zmq_endpoint: ingest.boundEndpoint,
      dialled: o.endpoints.map((e) => e.endpoint),
      backend: indexer.index.backend,
      block_size: o.blockSize,
      hash_algorithm: o.hashAlgorithm,
      model: o.model,
    },
    'llmd kv-indexer is ready',
  );
  let closing: Promise<void> | null = null;
  return {
    url,
    port,
    zmqEndpoint: ingest.boundEndpoint,
    indexer,
    ingest,
    close() {
      closing ??= (async () => {
        await service.close();
        await ingest.close();
        await indexer.close();
      })();
      return closing;
    },
  };
}

/** The address part of `address:port` (IPv6 bracketed as given). */
function hostOf(server: string): string {
  const i = server.lastIndexOf(':');
  return i <= 0 ? server : server.slice(0, i);
}

/** `<server id>=<zmq endpoint>[,replay=<zmq endpoint>]`, e.g. `10.0.0.5:8000=tcp://10.0.0.5:5557`. */
export function parseKvEndpoint(spec: string): {
  id: string;
  endpoint: string;
  replayEndpoint: string | null;
} {
  const bad = (why: string): ConfigError => new ConfigError(`--endpoint ${spec}: ${why}`, 'endpoint');
  const eq = spec.indexOf('=');
  if (eq <= 0) throw bad('must be <server address:port>=<zmq endpoint>[,replay=<zmq endpoint>]');
  const id = spec.slice(0, eq);
  const [endpoint, ...rest] = spec.slice(eq + 1).split(',');
  let replayEndpoint: string | null = null;
  for (const r of rest) {
    if (!r.startsWith('replay=') || !ZMQ_ENDPOINT.test(r.slice(7)))
      throw bad(`unknown or malformed part "${r}"`);
    replayEndpoint = r.slice(7);
  }
  if (endpoint === undefined || !ZMQ_ENDPOINT.test(endpoint))
    throw bad('the ZMQ endpoint must look like tcp://host:port');
  return { id, endpoint, replayEndpoint };
}

const ZMQ_ENDPOINT = /^(tcp|ipc|inproc):\/\/\S+$/;
