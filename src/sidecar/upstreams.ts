/**
 * Keep-alive pools to the prefillers, one per `host:port`, in an LRU bounded like upstream's proxy
 * cache (1024): the EPP names prefillers per request, and a hostile or churning header must not grow
 * the map without end. A TLS stage's pools dial with `tls.connect`.
 */
import { Http1Pool } from '../core/http1/client.js';
import type { PrefillTarget } from './connectors/connector.js';
import { tlsDialer } from './tls.js';

export const MAX_PREFILL_POOLS = 1024;

export interface PoolTls {
  readonly enabled: boolean;
  readonly insecureSkipVerify: boolean;
}

/** A pool to `host:port`, plain or TLS. */
export function openPool(host: string, port: number, tls: PoolTls, connectTimeoutMs: number): Http1Pool {
  return new Http1Pool(host, port, {
    connectTimeoutMs,
    connect: tls.enabled ? tlsDialer(tls.insecureSkipVerify) : undefined,
  });
}

export class PrefillPools {
  /** Insertion order is recency: a hit is moved to the end, the first entry is the oldest. */
  private readonly entries = new Map<string, Http1Pool>();

  constructor(
    private readonly tls: PoolTls,
    private readonly connectTimeoutMs: number,
    private readonly max = MAX_PREFILL_POOLS,
  ) {}

  get(target: PrefillTarget): Http1Pool {
    const key = target.hostPort;
    const hit = this.entries.get(key);
    if (hit !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const pool = openPool(target.host, target.port, this.tls, this.connectTimeoutMs);
    this.entries.set(key, pool);
    while (this.entries.size > this.max) {
      const [oldest, p] = this.entries.entries().next().value as [string, Http1Pool];
      this.entries.delete(oldest);
      // Calls in flight finish on their connections; only the idle ones go now.
      p.close();
    }
    return pool;
  }

  get size(): number {
    return this.entries.size;
  }

  close(): void {
    for (const p of this.entries.values()) p.destroy();
    this.entries.clear();
  }
}
