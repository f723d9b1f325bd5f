/**
 * `llmd epp`: wires the endpoint picker together — config and plugins, the datastore and its
 * discovery, the metrics scraper, the director, the standalone HTTP gateway and the metrics server —
 * and returns a handle that can close it all.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { createLogger, LOG_LEVELS, type Logger } from '../core/log.js';
import { Rng } from '../core/rng.js';
import { packageVersion } from '../core/version.js';
import { loadEppConfig, type EppConfig } from './config/loader.js';
import { PrecisePrefixCacheProducer } from './plugins/producer/precise-prefix-cache.js';
import { Datastore, type DatastoreEndpoint } from './datastore/datastore.js';
import { FileDiscovery } from './datastore/discovery/file.js';
import { KubernetesDiscovery } from './datastore/discovery/kubernetes.js';
import { poolSourceOf } from '../core/kubernetes/pool-source.js';
import { DEFAULT_POOL_GROUP } from '../core/kubernetes/resources.js';
import { StaticDiscovery, parseEndpointFlags } from './datastore/discovery/flags.js';
import { DEFAULT_STALENESS_MS, MIN_TICK_MS, Scraper } from './datastore/scraper.js';
import type { DiscoverySink, EndpointDiscovery } from './framework/datalayer.js';
import type { Endpoint } from './framework/endpoint.js';
import { Http1Server } from '../core/http1/server.js';
import { Gateway } from './gateway/gateway.js';
import { DEFAULT_UPSTREAM_OPTIONS, Upstreams } from './gateway/upstreams.js';
import { loadExtProcCertificate, startExtProc, type RunningExtProc } from './extproc/server.js';
import { Director, type SaturationDetector } from './handling/director.js';
import { EppMetrics } from './metrics.js';
import { ApproxPrefixCacheProducer } from './plugins/producer/approx-prefix-cache.js';
import { inTreeRegistry } from './plugins/registry.js';
import { UtilizationDetector } from './plugins/saturation/utilization-detector.js';

export const EppOptionsSchema = z
  .object({
    /** YAML/JSON text of an EndpointPickerConfig; undefined = the built-in default. */
    configText: z.string().optional(),
    configFile: z.string().optional(),
    /** `--endpoint` values. */
    endpoints: z.array(z.string()).default([]),
    endpointsFile: z.string().optional(),
    gatewayHost: z.string().default('0.0.0.0'),
    /** 0 picks a free port; null disables the gateway. */
    gatewayPort: z.number().int().min(0).max(65535).nullable().default(8080),
    /** Envoy ext_proc (gRPC); 0 picks a free port; null disables it. */
    grpcHost: z.string().default('0.0.0.0'),
    grpcPort: z.number().int().min(0).max(65535).nullable().default(null),
    /** gRPC health service (`grpc.health.v1`); only with `grpcPort`. */
    grpcHealthPort: z.number().int().min(0).max(65535).nullable().default(null),
    disableEndpointSubsetFilter: z.boolean().default(false),
    /** TLS on ext_proc, with `tls.crt` and `tls.key` from `certPath`, else a self-signed certificate. */
    secureServing: z.boolean().default(false),
    certPath: z.string().optional(),
    metricsHost: z.string().default('0.0.0.0'),
    metricsPort: z.number().int().min(0).max(65535).nullable().default(9090),
    refreshMetricsIntervalMs: z.number().min(MIN_TICK_MS).default(MIN_TICK_MS),
    metricsStalenessMs: z.number().positive().default(DEFAULT_STALENESS_MS),
    /**
     * The InferencePool to watch (upstream `--pool-name`); also the `name` label of the pool metrics,
     * which is `default` without one.
     */
    poolName: z.string().min(1).optional(),
    /** The namespace of the pool or of the `endpointSelector` pods. */
    poolNamespace: z.string().min(1).default('default'),
    poolGroup: z.string().default(DEFAULT_POOL_GROUP),
    /** Pods by label selector, without the InferencePool CRD; needs `endpointTargetPorts`. */
    endpointSelector: z.string().optional(),
    endpointTargetPorts: z.array(z.number().int().min(1).max(65535)).default([]),
    /** A kubeconfig file for the two above; otherwise KUBECONFIG, ~/.kube/config or in-cluster. */
    kubeconfig: z.string().min(1).optional(),
    seed: z.number().int().default(0),
    allowExperimentalPlugins: z.boolean().default(false),
    recordDecisions: z.boolean().default(false),
    maxRequestBodyBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    connectTimeoutMs: z.number().positive().default(DEFAULT_UPSTREAM_OPTIONS.connectTimeoutMs),
    logLevel: z.enum(LOG_LEVELS).default('info'),
  })
  .strict()
  .refine((o) => o.configText === undefined || o.configFile === undefined, {
    message: '--config-file and --config-text are mutually exclusive',
    path: ['configFile'],
  })
  .refine((o) => o.grpcHealthPort === null || o.grpcPort !== null, {
    message: '--grpc-health-port needs --grpc-port',
    path: ['grpcHealthPort'],
  });

export type EppOptionsInput = z.input<typeof EppOptionsSchema>;
export type EppOptions = z.output<typeof EppOptionsSchema>;

export interface RunningEpp {
  /** The gateway's base URL, when it runs. */
  readonly url: string | null;
  readonly metricsUrl: string | null;
  /** The ext_proc port and the gRPC health port, when they run. */
  readonly grpcPort: number | null;
  readonly grpcHealthPort: number | null;
  readonly extProc: RunningExtProc | null;
  readonly config: EppConfig;
  readonly datastore: Datastore;
  readonly director: Director;
  readonly scraper: Scraper;
  readonly metrics: EppMetrics;
  /** Stops; `drainMs` > 0 lets ext_proc streams in flight finish first (see RunningExtProc.close). */
  close(drainMs?: number): Promise<void>;
}

export async function startEpp(input: EppOptionsInput, logger?: Logger): Promise<RunningEpp> {
  const parsed = EppOptionsSchema.safeParse(input);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new ConfigError(`${i.path.join('.')}: ${i.message}`, i.path.join('.'));
  }
  const opts = parsed.data;
  const log = logger ?? createLogger(opts.logLevel, 'epp');
  const clock = (): number => performance.now();

  const tls =
    opts.grpcPort !== null && opts.secureServing ? await loadExtProcCertificate(opts.certPath) : null;

  const datastore = new Datastore({ logger: log });
  let text = opts.configText;
  if (opts.configFile !== undefined) {
    try {
      text = readFileSync(opts.configFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`--config-file ${opts.configFile}: ${(err as Error).message}`, 'configFile');
    }
  }
  const config = loadEppConfig(text, {
    registry: inTreeRegistry(),
    logger: log,
    rng: new Rng(opts.seed),
    clock,
    endpoints: datastore,
    allowExperimental: opts.allowExperimentalPlugins,
  });

  const discovery = chooseDiscovery(opts, config, log);
  const metrics = new EppMetrics({ commit: 'unknown', buildRef: packageVersion() });
  if (discovery instanceof KubernetesDiscovery) metrics.trackKubernetesWatches(() => discovery.stats());
  const scraper = new Scraper({
    datastore,
    bindings: config.dataSources,
    tickMs: opts.refreshMetricsIntervalMs,
    stalenessMs: opts.metricsStalenessMs,
    clock,
    logger: log,
    observer: {
      pollError: (_e, source) => metrics.pollError(source.typedName.type),
      extractError: (_e, source, extractor) =>
        metrics.extractError(source.typedName.type, extractor.typedName.type),
    },
  });
  // Plugins that open sockets or connect to services do so now; a failure stops the start cleanly.
  try {
    for (const p of config.plugins.values()) await p.open?.();
  } catch (err) {
    await config.close();
    throw err;
  }
  const precise = [...config.plugins.values()].filter(
    (p): p is PrecisePrefixCacheProducer => p instanceof PrecisePrefixCacheProducer,
  );
  // One set of kvcache_* series: they describe the first precise producer's index.
  precise[0]?.registerMetrics(metrics.registry);
  metrics.trackPrefixIndexers(
    [...config.plugins.values()].filter(
      (p): p is ApproxPrefixCacheProducer => p instanceof ApproxPrefixCacheProducer,
    ),
  );
  metrics.setPool({
    name: opts.poolName ?? 'default',
    get endpoints() {
      return datastore.list();
    },
    isStale: (e) => scraper.isStale(e),
  });

  const upstreams = new Upstreams(
    { ...DEFAULT_UPSTREAM_OPTIONS, connectTimeoutMs: opts.connectTimeoutMs },
    clock,
  );
  datastore.onRemove((e) => upstreams.remove(e.meta.hostPort));
  const saturation: SaturationDetector =
    [...config.plugins.values()].find((p): p is UtilizationDetector => p instanceof UtilizationDetector) ??
    new UtilizationDetector('utilization-detector', utilizationDefaults(), {
      logger: log,
      rng: new Rng(opts.seed),
      clock,
      endpoints: datastore,
      plugin: () => undefined,
      plugins: () => [],
    });
  const director = new Director({
    config,
    endpoints: datastore,
    metrics,
    logger: log,
    clock,
    saturation,
    recordAll: opts.recordDecisions,
    // A refused connection, or two failed scrapes in a row (100 ms at the default tick), takes an
    // endpoint out of rotation while others remain.
    isUnreachable: (e: Endpoint) =>
      upstreams.isUnreachable(e.meta.hostPort) || (e as DatastoreEndpoint).consecutiveFailures >= 2,
  });

  let discovered = false;
  // Upstream's readiness: endpoints listed, and a pool protocol the parsers read.
  const ready = (): boolean =>
    discovered && (!(discovery instanceof KubernetesDiscovery) || discovery.protocolSupported());
  const servers: Server[] = [];
  let gatewayServer: Http1Server | null = null;
  let url: string | null = null;
  if (opts.gatewayPort !== null) {
    const gateway = new Gateway({
      director,
      upstreams,
      endpoints: datastore,
      metrics,
      logger: log,
      clock,
      maxAttempts: 3,
      ready,
    });
    gatewayServer = new Http1Server(gateway.handle, {
      maxBodyBytes: opts.maxRequestBodyBytes,
      errorBody: Gateway.errorBody,
    });
    const port = await gatewayServer.listen(opts.gatewayPort, opts.gatewayHost);
    url = urlOf(opts.gatewayHost, port);
  }
  let extProc: RunningExtProc | null = null;
  if (opts.grpcPort !== null) {
    const rng = new Rng(opts.seed);
    try {
      extProc = await startExtProc({
        director,
        endpoints: datastore,
        metrics,
        logger: log,
        clock,
        random: () => rng.next(),
        maxRequestBodyBytes: opts.maxRequestBodyBytes,
        disableSubsetFilter: opts.disableEndpointSubsetFilter,
        host: opts.grpcHost,
        port: opts.grpcPort,
        healthPort: opts.grpcHealthPort,
        tls,
        ready,
      });
    } catch (err) {
      await gatewayServer?.close();
      upstreams.close();
      await config.close();
      throw err;
    }
  }
  let metricsUrl: string | null = null;
  if (opts.metricsPort !== null) {
    const server = createServer((req, res) => {
      if (req.url === '/metrics') {
        metrics.render().then(
          (body) => {
            res.writeHead(200, { 'content-type': metrics.registry.contentType });
            res.end(body);
          },
          () => {
            res.writeHead(500);
            res.end();
          },
        );
        return;
      }
      res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'text/plain' });
      res.end(req.url === '/health' ? 'ok\n' : 'not found\n');
    });
    metricsUrl = await listen(server, opts.metricsHost, opts.metricsPort);
    servers.push(server);
  }

  if (discovery !== null) {
    try {
      await discovery.start(datastore as DiscoverySink);
    } catch (err) {
      await discovery.stop();
      await Promise.all([
        gatewayServer?.close(),
        extProc?.close(),
        ...servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      ]);
      upstreams.close();
      await config.close();
      throw err;
    }
  }
  discovered = true;
  scraper.start();
  log.info(
    {
      url,
      metrics_url: metricsUrl,
      grpc_port: extProc?.port ?? null,
      grpc_health_port: extProc?.healthPort ?? null,
      endpoints: datastore.list().length,
      profiles: [...config.profiles.keys()],
      profile_handler: config.profileHandler.typedName.type,
      plugins: [...config.plugins.values()].map((p) => `${p.typedName.name}(${p.typedName.type})`),
    },
    'llmd epp is ready',
  );

  let closing: Promise<void> | null = null;
  return {
    url,
    metricsUrl,
    grpcPort: extProc?.port ?? null,
    grpcHealthPort: extProc?.healthPort ?? null,
    extProc,
    config,
    datastore,
    director,
    scraper,
    metrics,
    close(drainMs = 0) {
      closing ??= (async () => {
        // In-flight ext_proc streams still need the endpoints and their metrics while they drain.
        await extProc?.close(drainMs);
        scraper.stop();
        await discovery?.stop();
        await Promise.all([
          gatewayServer?.close(),
          ...servers.map(
            (s) =>
              new Promise<void>((resolve) => {
                s.close(() => resolve());
                s.closeAllConnections();
              }),
          ),
        ]);
        upstreams.close();
        await config.close();
      })();
      return closing;
    },
  };
}

function chooseDiscovery(opts: EppOptions, config: EppConfig, log: Logger): EndpointDiscovery | null {
  const source = poolSourceOf(opts);
  const chosen: string[] = [];
  if (opts.poolName !== undefined) chosen.push('--pool-name');
  if (opts.endpointSelector !== undefined) chosen.push('--endpoint-selector');
  if (opts.endpoints.length > 0) chosen.push('--endpoint');
  if (opts.endpointsFile !== undefined) chosen.push('--endpoints-file');
  if (config.discovery !== null) chosen.push('dataLayer.discovery');
  if (chosen.length > 1) {
    throw new ConfigError(`endpoints come from one source; got ${chosen.join(' and ')}`, 'endpoints');
  }
  if (source !== null) {
    return new KubernetesDiscovery({
      namespace: opts.poolNamespace,
      source,
      kubeconfig: opts.kubeconfig,
      logger: log,
    });
  }
  if (opts.endpoints.length > 0) return new StaticDiscovery(parseEndpointFlags(opts.endpoints), 'flags');
  if (opts.endpointsFile !== undefined) {
    const fd = new FileDiscovery({ path: opts.endpointsFile, logger: log });
    return {
      typedName: { type: 'file-discovery', name: '--endpoints-file' },
      start: (s) => fd.start(s),
      stop: () => fd.stop(),
    };
  }
  if (config.discovery === null) {
    log.warn(
      'no endpoints configured (--pool-name, --endpoint-selector, --endpoint, --endpoints-file or dataLayer.discovery): every request gets 503',
    );
  }
  return config.discovery;
}

function utilizationDefaults(): ConstructorParameters<typeof UtilizationDetector>[1] {
  return {
    queueDepthThreshold: 5,
    kvCacheUtilThreshold: 0.8,
    metricsStalenessThreshold: '200ms',
    headroom: 0,
  };
}

function urlOf(host: string, port: number): string {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

function listen(server: Server, host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(urlOf(host, (server.address() as AddressInfo).port));
    });
  });
}
