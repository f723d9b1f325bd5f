/**
 * The Kubernetes API as the watches need it: a JSON list and a streaming watch of one collection.
 * Configuration and authentication are @kubernetes/client-node's (`KUBECONFIG`, `~/.kube/config`, the
 * in-cluster service account, or an explicit file); the watch stream is its `Watch`. Lists are plain
 * GETs authenticated the same way, because the typed clients coerce what they read (a string where a
 * list belongs comes back as a list of empty objects) and a malformed object must be seen as such.
 *
 * The library takes about a second to load, so it is imported only when a client is made.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { ConfigError, KubernetesApiError } from '../errors.js';

export type Query = Readonly<Record<string, string | undefined>>;

export interface ListResult {
  readonly items: readonly unknown[];
  readonly resourceVersion: string;
  /** The continue token of a paged list; empty on the last page. */
  readonly continueToken: string;
}

/** One line of a watch stream: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`. */
export interface WatchEvent {
  readonly type: string;
  readonly object: unknown;
}

export interface WatchHandle {
  abort(): void;
}

/**
 * What an informer needs from the API server. `onDone` is called exactly once, when the stream ends:
 * with null when the server closed it, else with the error (a `KubernetesApiError` for an HTTP status).
 */
export interface KubeApi {
  /** The API server's URL, for logs. */
  readonly server: string;
  /** `signal` abandons the request (the informer stopping). */
  list(path: string, query: Query, signal?: AbortSignal): Promise<ListResult>;
  watch(
    path: string,
    query: Query,
    onEvent: (e: WatchEvent) => void,
    onDone: (err: unknown) => void,
  ): Promise<WatchHandle>;
}

export interface KubeClientOptions {
  /** A kubeconfig file; otherwise `KUBECONFIG`, `~/.kube/config` or the in-cluster service account. */
  readonly kubeconfig?: string;
  /** Bound on one list request. Default 60 s. */
  readonly listTimeoutMs?: number;
}

/** Largest list body read; a namespace of ten thousand pods is about 100 MB. */
const MAX_LIST_BYTES = 256 * 1024 * 1024;

const listSchema = z.object({
  metadata: z
    .object({ resourceVersion: z.string().optional(), continue: z.string().optional() })
    .passthrough()
    .optional(),
  items: z.array(z.unknown()).nullable().optional(),
});

const statusSchema = z
  .object({ message: z.string().optional(), reason: z.string().optional(), code: z.number().optional() })
  .passthrough();

/** Loads the configuration; a missing or unreadable kubeconfig is a `ConfigError`. */
export async function loadKubeConfig(opts: KubeClientOptions = {}): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    if (opts.kubeconfig !== undefined) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    const where = opts.kubeconfig ?? 'the default kubeconfig';
    throw new ConfigError(`--kubeconfig: cannot load ${where}: ${(err as Error).message}`, 'kubeconfig');
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) {
    throw new ConfigError('--kubeconfig: the kubeconfig has no current cluster', 'kubeconfig');
  }
  // Credentials and TLS settings are applied once now, so that a bad kubeconfig fails at start-up
  // instead of on every retry of every list.
  try {
    await kc.applyToHTTPSOptions({});
  } catch (err) {
    const fallback =
      opts.kubeconfig === undefined && cluster.server === 'http://localhost:8080'
        ? ' (no KUBECONFIG, ~/.kube/config or in-cluster service account was found)'
        : '';
    throw new ConfigError(
      `--kubeconfig: cannot reach cluster ${cluster.server}${fallback}: ${(err as Error).message}`,
      'kubeconfig',
    );
  }
  return kc;
}

export async function createKubeClient(opts: KubeClientOptions = {}): Promise<KubeApi> {
  return kubeClientFrom(await loadKubeConfig(opts), opts.listTimeoutMs);
}

/** A client over a configuration already loaded (`KubeConfig.loadFromOptions`, ...). */
export async function kubeClientFrom(kc: KubeConfig, listTimeoutMs = 60_000): Promise<KubeApi> {
  const { Watch } = await import('@kubernetes/client-node');
  return new KubeClient(kc, new Watch(kc), listTimeoutMs);
}

class KubeClient implements KubeApi {
  readonly server: string;

  constructor(
    private readonly kc: KubeConfig,
    private readonly watcher: { watch: KubeWatch },
    private readonly listTimeoutMs: number,
  ) {
    this.server = kc.getCurrentCluster()?.server ?? '';
  }

  async list(path: string, query: Query, signal?: AbortSignal): Promise<ListResult> {
    const url = this.url(path, query);
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const body = await getJson(url, { ...opts, signal }, this.listTimeoutMs);
    const r = listSchema.safeParse(body);
    if (!r.success) {
      throw new KubernetesApiError(`GET ${url.pathname}: the answer is not a list`, 200);
    }
    return {
      items: r.data.items ?? [],
      resourceVersion: r.data.metadata?.resourceVersion ?? '',
      continueToken: r.data.metadata?.continue ?? '',
    };
  }

  async watch(
    path: string,
    query: Query,
    onEvent: (e: WatchEvent) => void,
    onDone: (err: unknown) => void,
  ): Promise<WatchHandle> {
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params[k] = v;
    const controller = await this.watcher.watch(
      path,
      params,
      (type: string, object: unknown) => onEvent({ type, object }),
      (err: unknown) => onDone(normalizeWatchError(path, err)),
    );
    return { abort: () => controller.abort() };
  }

  private url(path: string, query: Query): URL {
    const url = new URL(this.server.replace(/\/+$/, '') + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    return url;
  }
}

type KubeWatch = (
  path: string,
  query: Record<string, string>,
  callback: (type: string, object: unknown) => void,
  done: (err: unknown) => void,
) => Promise<AbortController>;

/** The library reports an HTTP status as an Error with `statusCode`; make it ours. */
function normalizeWatchError(path: string, err: unknown): unknown {
  if (err === null || err === undefined) return null;
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number') {
    return new KubernetesApiError(`watch ${path}: ${status} ${(err as Error).message}`, status);
  }
  return err;
}

function getJson(url: URL, opts: https.RequestOptions, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(
      url,
      { ...opts, method: 'GET', headers: { ...opts.headers, accept: 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_LIST_BYTES) {
            req.destroy(
              new KubernetesApiError(`GET ${url.pathname}: answer over ${MAX_LIST_BYTES} bytes`, 0),
            );
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            const s = statusSchema.safeParse(body);
            const message = s.success && s.data.message !== undefined ? s.data.message : text.slice(0, 200);
            const reason = s.success ? (s.data.reason ?? null) : null;
            reject(new KubernetesApiError(`GET ${url.pathname}: ${status} ${message}`, status, reason));
            return;
          }
          if (body === undefined) {
            reject(new KubernetesApiError(`GET ${url.pathname}: the answer is not JSON`, status));
            return;
          }
          resolve(body);
        });
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(new KubernetesApiError(`GET ${url.pathname}: no answer in ${timeoutMs} ms`, 0)),
    );
    req.on('error', (err) => {
      reject(
        err instanceof KubernetesApiError
          ? err
          : new KubernetesApiError(`GET ${url.pathname}: ${err.message}`, 0, codeOf(err)),
      );
    });
    req.end();
  });
}

function codeOf(err: unknown): string | null {
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' ? c : null;
}
