/**
 * Keep-alive pools to the prefillers, one per `host:port`, in an LRU bounded like upstream's proxy
 * cache (1024): the EPP names prefillers per request, and a hostile or churning header must not grow
 * the map without end. A TLS stage gets its pools through a loopback `TlsTunnel`.
 */
import { Http1Pool } from '../core/http1/client.js';
import type { PrefillTarget } from './connectors/connector.js';
import { TlsTunnel } from './tls.js';

export const MAX_PREFILL_POOLS = 1024;

export interface PoolTls {
  readonly enabled: boolean;
  readonly insecureSkipVerify: boolean;
}

interface Entry {
  readonly pool: Http1Pool;
  readonly tunnel: TlsTunnel | null;
}

/** A pool to `host:port`, plain or through a TLS tunnel. */
export async function openPool(
  host: string,
  port: number,
  tls: PoolTls,
  connectTimeoutMs: number,
): Promise<{ pool: Http1Pool; tunnel: TlsTunnel | null }> {
  if (!tls.enabled) return { pool: new Http1Pool(host, port, { connectTimeoutMs }), tunnel: null };
  const tunnel = new TlsTunnel(host, port, tls.insecureSkipVerify);
  const local = await tunnel.listen();
  return { pool: new Http1Pool('127.0.0.1', local, { connectTimeoutMs }), tunnel };
}

export class PrefillPools {
  /** Insertion order is recency: a hit is moved to the end, the first entry is the oldest. */
  private readonly entries = new Map<string, Entry | Promise<Entry>>();
  private closed = false;

  constructor(
    private readonly tls: PoolTls,
    private readonly connectTimeoutMs: number,
    private readonly max = MAX_PREFILL_POOLS,
  ) {}

  /** Synchronous for plain TCP (the usual case); a TLS pool's tunnel has to listen first. */
  get(target: PrefillTarget): Http1Pool | Promise<Http1Pool> {
    const key = target.hostPort;
    const hit = this.entries.get(key);
    if (hit !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit instanceof Promise ? hit.then((e) => e.pool) : hit.pool;
    }
    if (!this.tls.enabled) {
      const entry: Entry = {
        pool: new Http1Pool(target.host, target.port, { connectTimeoutMs: this.connectTimeoutMs }),
        tunnel: null,
      };
      this.add(key, entry);
      return entry.pool;
    }
    const pending = openPool(target.host, target.port, this.tls, this.connectTimeoutMs).then((e) => {
      if (this.closed) {
        e.pool.destroy();
        e.tunnel?.close();
      } else if (this.entries.get(key) === pending) this.entries.set(key, e);
      return e;
    });
    this.add(key, pending);
    return pending.then((e) => e.pool);
  }

  get size(): number {
    return this.entries.size;
  }

  private add(key: string, entry: Entry | Promise<Entry>): void {
    this.entries.set(key, entry);
    while (this.entries.size > this.max) {
      const [oldest, e] = this.entries.entries().next().value as [string, Entry | Promise<Entry>];
      this.entries.delete(oldest);
      // Calls in flight finish on their connections; only the idle ones go now.
      void Promise.resolve(e).then((x) => {
        x.pool.close();
        x.tunnel?.close(false);
      });
    }
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      void Promise.resolve(e).then((x) => {
        x.pool.destroy();
        x.tunnel?.close();
      });
    }
    this.entries.clear();
  }
}
