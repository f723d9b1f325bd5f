/**
 * Keep-alive connection pools to the model servers, one per `ip:port`, and a short memory of which
 * ones just refused a connection so the next requests go elsewhere at once instead of waiting for the
 * metrics scraper to notice.
 */
import { Pool } from 'undici';

export interface UpstreamOptions {
  /** TCP connect timeout (ms). */
  readonly connectTimeoutMs: number;
  /** Time to wait for response headers (ms); 0 = no limit (a non-streaming generation can be long). */
  readonly headersTimeoutMs: number;
  /** Longest silence between body chunks (ms); 0 = no limit. */
  readonly bodyTimeoutMs: number;
  /** How long an endpoint that refused a connection is avoided (ms). */
  readonly unreachableForMs: number;
}

export const DEFAULT_UPSTREAM_OPTIONS: UpstreamOptions = {
  connectTimeoutMs: 2_000,
  headersTimeoutMs: 0,
  bodyTimeoutMs: 0,
  unreachableForMs: 2_000,
};

export class Upstreams {
  private readonly pools = new Map<string, Pool>();
  private readonly unreachableUntil = new Map<string, number>();

  constructor(
    private readonly opts: UpstreamOptions,
    private readonly clock: () => number,
  ) {}

  pool(hostPort: string): Pool {
    let p = this.pools.get(hostPort);
    if (p === undefined) {
      p = new Pool(`http://${hostPort}`, {
        connections: null,
        pipelining: 1,
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 600_000,
        connect: { timeout: this.opts.connectTimeoutMs, noDelay: true },
        headersTimeout: this.opts.headersTimeoutMs,
        bodyTimeout: this.opts.bodyTimeoutMs,
      });
      this.pools.set(hostPort, p);
    }
    return p;
  }

  markUnreachable(hostPort: string): void {
    this.unreachableUntil.set(hostPort, this.clock() + this.opts.unreachableForMs);
    // Sockets to a dead server are no use; the next request connects afresh.
    const p = this.pools.get(hostPort);
    if (p !== undefined) {
      this.pools.delete(hostPort);
      void p.destroy().catch(() => undefined);
    }
  }

  isUnreachable(hostPort: string): boolean {
    const until = this.unreachableUntil.get(hostPort);
    if (until === undefined) return false;
    if (until > this.clock()) return true;
    this.unreachableUntil.delete(hostPort);
    return false;
  }

  /** The endpoint answered again (e.g. a successful scrape): forget that it failed. */
  markReachable(hostPort: string): void {
    this.unreachableUntil.delete(hostPort);
  }

  async remove(hostPort: string): Promise<void> {
    const p = this.pools.get(hostPort);
    this.pools.delete(hostPort);
    this.unreachableUntil.delete(hostPort);
    if (p !== undefined) await p.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => undefined)));
  }
}

/** Errors that mean the request never reached a working server, so another endpoint may take it. */
const RETRYABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

export function isConnectionError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 3 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
