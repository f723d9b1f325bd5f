/**
 * A remote `llmd kv-indexer` as the EPP's index (`indexerConfig.remoteIndexerConfig`): prefix scores
 * and speculative entries over its HTTP API (`service.ts`), so several EPP replicas share one indexer
 * that alone subscribes to the servers' events. A call that fails or outlasts its timeout rejects
 * with ServiceUnavailableError, which the producer answers with its approximate fallback.
 */
import { z } from 'zod';
import { ServiceUnavailableError } from '../core/errors.js';
import type { PrefixScore } from './index/index.js';

const DetailSchema = z.record(z.object({ score: z.number(), blocks: z.number().int().nonnegative() }));

export interface RemoteIndexerOptions {
  /** Base URL of the indexer, e.g. `http://kv-indexer:8080`. */
  readonly url: string;
  readonly timeoutMs: number;
}

export class RemoteIndexer {
  private readonly scoreUrl: string;
  private readonly speculativeUrl: string;
  private up = true;

  constructor(private readonly o: RemoteIndexerOptions) {
    const base = o.url.replace(/\/+$/, '');
    this.scoreUrl = `${base}/score_tokens?detail=true`;
    this.speculativeUrl = `${base}/speculative`;
  }

  /** Whether the last call got an answer. */
  get available(): boolean {
    return this.up;
  }

  async scoreTokens(
    tokens: ArrayLike<number>,
    model: string,
    cacheSalt: string | undefined,
  ): Promise<Map<string, PrefixScore>> {
    const body = JSON.stringify({ tokens: Array.from(tokens), model, cache_salt: cacheSalt });
    let json: unknown;
    try {
      const res = await fetch(this.scoreUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      json = await res.json();
    } catch (err) {
      this.up = false;
      throw new ServiceUnavailableError(`remote indexer ${this.o.url}: ${reason(err)}`);
    }
    const parsed = DetailSchema.safeParse(json);
    if (!parsed.success) {
      this.up = false;
      throw new ServiceUnavailableError(`remote indexer ${this.o.url}: unexpected answer`);
    }
    this.up = true;
    return new Map(Object.entries(parsed.data));
  }

  /** Fire and forget: a lost speculative entry only costs a slightly worse guess. */
  speculative(tokens: ArrayLike<number>, model: string, cacheSalt: string | undefined, pod: string): void {
    fetch(this.speculativeUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tokens: Array.from(tokens), model, cache_salt: cacheSalt, pod }),
      signal: AbortSignal.timeout(this.o.timeoutMs),
    })
      .then((res) => res.body?.cancel())
      .catch(() => undefined);
  }
}

function reason(err: unknown): string {
  if (err instanceof Error) return err.name === 'TimeoutError' ? 'timed out' : err.message;
  return String(err);
}
