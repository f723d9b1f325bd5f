/**
 * Keep-alive connection pools to the model servers, one per `ip:port`, and a short memory of which
 * ones just refused a connection so the next requests go elsewhere at once instead of waiting for the
 * metrics scraper to notice.
 */
import { Http1Pool } from '../../core/http1/client.js';

export interface UpstreamOptions {
  /** TCP connect timeout (ms). */
  readonly connectTimeoutMs: number;
  /** How long an endpoint that refused a connection is avoided (ms). */
  readonly unreachableForMs: number;
}

export const DEFAULT_UPSTREAM_OPTIONS: UpstreamOptions = {
  connectTimeoutMs: 2_000,
  unreachableForMs: 2_000,
};

export class Upstreams {
  private readonly pools = new Map<string, Http1Pool>();
  private readonly unreachableUntil = new Map<string, number>();

  constructor(
    private readonly opts: UpstreamOptions,
    private readonly clock: () => number,
  ) {}

  pool(hostPort: string): Http1Pool {
    let p = this.pools.get(hostPort);
    if (p === undefined) {
      const colon = hostPort.lastIndexOf(':');
      const host = hostPort.slice(0, colon).replace(/^\[|\]$/g, '');
      p = new Http1Pool(host, Number(hostPort.slice(colon + 1)), {
        connectTimeoutMs: this.opts.connectTimeoutMs,
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
      p.destroy();
    }
  }

  isUnreachable(hostPort: string): boolean {
    const until = this.unreachableUntil.get(hostPort);
    if (until === undefined) return false;
    if (until > this.clock()) return true;
    this.unreachableUntil.delete(hostPort);
    return false;
  }

  remove(hostPort: string): void {
    const p = this.pools.get(hostPort);
    this.pools.delete(hostPort);
    this.unreachableUntil.delete(hostPort);
    p?.close();
  }

  close(): void {
    for (const p of this.pools.values()) p.destroy();
    this.pools.clear();
  }
}
