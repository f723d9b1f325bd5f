/**
 * `GET /v1/models` answered from the pool: every endpoint's model list, merged by id, cached briefly
 * so a busy client does not fan out to every server on each call.
 */
import { request } from 'undici';
import { UpstreamUnavailableError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { EndpointSource } from '../framework/endpoint.js';

const CACHE_MS = 2_000;
const TIMEOUT_MS = 1_000;

interface ModelList {
  object: 'list';
  data: Record<string, unknown>[];
}

export class PoolModels {
  private cached: { at: number; value: ModelList } | null = null;
  private pending: Promise<ModelList> | null = null;

  constructor(
    private readonly endpoints: EndpointSource,
    private readonly log: Logger,
  ) {}

  list(): Promise<ModelList> {
    const now = performance.now();
    if (this.cached !== null && now - this.cached.at < CACHE_MS) return Promise.resolve(this.cached.value);
    this.pending ??= this.fetchAll().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  private async fetchAll(): Promise<ModelList> {
    const dests = [...new Set(this.endpoints.list().map((e) => e.meta.hostPort))];
    const lists = await Promise.all(dests.map((d) => this.fetchOne(d)));
    const byId = new Map<string, Record<string, unknown>>();
    let answered = 0;
    for (const l of lists) {
      if (l === null) continue;
      answered++;
      for (const m of l) if (typeof m.id === 'string' && !byId.has(m.id)) byId.set(m.id, m);
    }
    if (answered === 0) throw new UpstreamUnavailableError('No model server answered /v1/models.');
    const value: ModelList = { object: 'list', data: [...byId.values()] };
    this.cached = { at: performance.now(), value };
    return value;
  }

  private async fetchOne(hostPort: string): Promise<Record<string, unknown>[] | null> {
    try {
      const res = await request(`http://${hostPort}/v1/models`, {
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        return null;
      }
      const body = (await res.body.json()) as { data?: unknown };
      return Array.isArray(body.data)
        ? body.data.filter((m): m is Record<string, unknown> => m !== null && typeof m === 'object')
        : null;
    } catch (err) {
      this.log.debug({ endpoint: hostPort, err: (err as Error).message }, '/v1/models failed');
      return null;
    }
  }
}
