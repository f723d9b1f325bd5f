/**
 * `llmd sidecar`: wires the routing sidecar together — options, connector, SSRF allowlist, the pools
 * to the local model server and to the prefillers, one HTTP/1.1 listener per data-parallel rank
 * (HTTPS with `--secure-proxy`) — and returns a handle that can close it all.
 */
import type { Server as TlsServer } from 'node:tls';
import type { Http1Pool } from '../core/http1/client.js';
import { Http1Server } from '../core/http1/server.js';
import type { KubeApi } from '../core/kubernetes/client.js';
import { createLogger, type Logger } from '../core/log.js';
import { Rng } from '../core/rng.js';
import { createConnector } from './connectors/index.js';
import { parseSidecarOptions, type SidecarOptions, type SidecarOptionsInput } from './options.js';
import { createHandler, type SidecarContext } from './proxy.js';
import { StaticAllowlist, type PrefillAllowlist } from './ssrf.js';
import { createTlsFrontend, loadServerCertificate, type KeyPair } from './tls.js';
import { PrefillPools, openPool } from './upstreams.js';

export interface RunningSidecar {
  /** The first listener's base URL. */
  readonly url: string;
  /** One per data-parallel rank. */
  readonly urls: readonly string[];
  readonly options: SidecarOptions;
  close(): Promise<void>;
}

export interface SidecarDeps {
  readonly logger?: Logger;
  /** Overrides the allowlist of the flags (static, or the InferencePool's pods). */
  readonly allowlist?: PrefillAllowlist;
  /** The API client for the InferencePool watch, instead of one made from the kubeconfig. */
  readonly kubeApi?: KubeApi;
  /** How long start-up waits for the InferencePool and its pods to be listed. Default 30 s. */
  readonly poolSyncTimeoutMs?: number;
}

export async function startSidecar(
  input: SidecarOptionsInput,
  deps: SidecarDeps = {},
): Promise<RunningSidecar> {
  const o = parseSidecarOptions(input);
  const log = deps.logger ?? createLogger(o.logLevel, 'sidecar');
  const rng = new Rng(o.seed);
  const connector = createConnector(o.connector, { sglangBootstrapPort: o.sglangBootstrapPort, rng });

  let allowlist: PrefillAllowlist | null = null;
  let poolAllowlist: { close(): Promise<void> } | null = null;
  if (o.enableSsrfProtection) {
    if (deps.allowlist !== undefined) allowlist = deps.allowlist;
    else if (o.inferencePool !== undefined) {
      // Loaded only here: the Kubernetes client takes a second to import.
      const { PoolAllowlist } = await import('./pool-allowlist.js');
      const pool = await PoolAllowlist.start({
        inferencePool: o.inferencePool,
        poolGroup: o.poolGroup,
        extraHosts: o.allowedPrefillHosts,
        kubeconfig: o.kubeconfig,
        api: deps.kubeApi,
        syncTimeoutMs: deps.poolSyncTimeoutMs,
        logger: log,
      });
      allowlist = pool;
      poolAllowlist = pool;
    } else allowlist = new StaticAllowlist(o.allowedPrefillHosts);
    if (allowlist.size === 0 && poolAllowlist === null) {
      log.warn('SSRF protection is on with an empty allowlist: every prefill target will be refused (403)');
    }
  }

  if (o.enableTls.includes('encoder') || o.tlsInsecureSkipVerify.includes('encoder'))
    log.warn('there is no encoder stage here: the TLS settings for "encoder" have no effect');
  const stage = (s: 'prefiller' | 'decoder') => ({
    enabled: o.enableTls.includes(s),
    insecureSkipVerify: o.tlsInsecureSkipVerify.includes(s),
  });
  const prefillPools = new PrefillPools(stage('prefiller'), o.connectTimeoutMs);
  const decoders: Http1Pool[] = [];
  const servers: Http1Server[] = [];
  const tlsServers: TlsServer[] = [];
  const urls: string[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(tlsServers.map((t) => new Promise<void>((r) => t.close(() => r()))));
    prefillPools.close();
    for (const d of decoders) d.destroy();
    await poolAllowlist?.close();
  };

  try {
    let pair: KeyPair | null = null;
    if (o.secureProxy) pair = await loadServerCertificate(o.certPath);
    const scheme = pair !== null ? 'https' : 'http';
    for (let rank = 0; rank < o.dataParallelSize; rank++) {
      const decoderPort = o.modelServerPort + rank;
      const decoder = openPool(o.modelServerHost, decoderPort, stage('decoder'), o.connectTimeoutMs);
      decoders.push(decoder);
      const ctx: SidecarContext = {
        options: o,
        connector,
        decoder,
        decoderHostPort: hostPort(o.modelServerHost, decoderPort),
        prefillPools,
        allowlist,
        rng,
        logger: log,
      };
      const server = new Http1Server(createHandler(ctx), { maxBodyBytes: o.maxRequestBodyBytes });
      servers.push(server);
      const port = o.port === 0 ? 0 : o.port + rank;
      let bound: number;
      if (pair === null) bound = await server.listen(port, o.host);
      else {
        // The HTTP/1.1 server takes each decrypted socket as if it had accepted it itself.
        const tls = createTlsFrontend(pair, (socket) => server.net.emit('connection', socket));
        tlsServers.push(tls);
        bound = await listenTls(tls, port, o.host);
      }
      urls.push(
        `${scheme}://${hostPort(o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host, bound)}`,
      );
    }
    log.info(
      {
        url: urls[0],
        urls,
        connector: o.connector,
        model_server: hostPort(o.modelServerHost, o.modelServerPort),
        data_parallel_size: o.dataParallelSize,
        ssrf_protection: o.enableSsrfProtection,
        inference_pool: o.enableSsrfProtection ? (o.inferencePool ?? null) : null,
        secure_proxy: o.secureProxy,
        self_signed: pair?.selfSigned ?? false,
        tls: o.enableTls,
        prefill_failure_policy: o.prefillFailurePolicy,
        prefill_timeout_ms: o.prefillTimeoutMs,
        prefill_max_retries: o.prefillMaxRetries,
      },
      'llmd sidecar is ready',
    );
  } catch (err) {
    await closeAll();
    throw err;
  }

  let closing: Promise<void> | null = null;
  return {
    url: urls[0]!,
    urls,
    options: o,
    close() {
      closing ??= closeAll();
      return closing;
    },
  };
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function listenTls(server: TlsServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}
