/**
 * The KV-block index contract (llm-d's `kvblock.Index`), which the in-memory and the Redis backends
 * both fulfil and one contract test suite checks: request key → the servers (pods) holding that block,
 * on which tier; engine key → the request keys it was announced as, so that `BlockRemoved` (which
 * carries engine hashes only) can be applied.
 *
 * Methods return a value or a promise (`Awaitable`): the in-memory index answers synchronously, so the
 * event path and the scorer pay no promise per block for it; Redis answers with promises.
 */
import type { KeyList } from '../keys.js';

export type Awaitable<T> = T | Promise<T>;

/** One server's copy of a block. */
export interface PodEntry {
  /** The server's identity, `address:port` of its HTTP endpoint. */
  readonly pod: string;
  /** Lower-case device tier: `gpu`, `cpu`, …; `""` for speculative entries. */
  readonly tier: string;
  /** Added when the request was routed, before any event confirmed it. */
  readonly speculative: boolean;
  /** vLLM's KV-cache group (HMA); null when the event carried none. */
  readonly groupIdx: number | null;
}

export const enum KeyType {
  /** An engine's block hash: resolved through the engine → request mapping. */
  Engine = 0,
  /** A request key, used as is (speculative entries). */
  Request = 1,
}

/** Tier → weight in scores; a tier not listed (and `""`) weighs 1. */
export type TierWeights = Readonly<Record<string, number>>;

export const DEFAULT_TIER_WEIGHTS: TierWeights = { gpu: 1.0, cpu: 0.8 };

export function tierWeight(weights: TierWeights, tier: string): number {
  const w = weights[tier];
  return w === undefined ? 1 : w;
}

/** Per server: the tier-weighted count of consecutive leading blocks, and the plain count. */
export interface PrefixScore {
  readonly score: number;
  readonly blocks: number;
}

export interface KvBlockIndex {
  readonly backend: 'memory' | 'redis';

  /**
   * For each request key in order, the entries holding it (only those of `pods` when given), stopping
   * before the first key that none holds.
   */
  lookup(keys: KeyList, pods?: ReadonlySet<string>): Awaitable<PodEntry[][]>;

  /**
   * llm-d's LongestPrefix scorer in one pass: a server scores, for each leading block it holds without
   * a gap from block 0, the weight of its best tier for that block. Servers holding block 0 only are
   * scored; a server is dropped at its first missing block.
   */
  score(keys: KeyList, weights: TierWeights, pods?: ReadonlySet<string>): Awaitable<Map<string, PrefixScore>>;

  /**
   * Stores `entries` for every request key and, unless `engineKeys` is null, maps the engine keys to
   * the request keys by the ratio of their counts (llm-d's rule): with n = max(|E|, |R|), for i < n,
   * E[⌊i·|E|/n⌋] → R[⌊i·|R|/n⌋].
   */
  add(engineKeys: KeyList | null, requestKeys: KeyList, entries: readonly PodEntry[]): Awaitable<void>;

  /**
   * Removes `entries` from each key: an engine key's request keys (a request key left with no entry
   * goes; the engine mapping goes once all its request keys are empty; an unknown engine key is a
   * no-op), or request keys directly.
   */
  evict(type: KeyType, keys: KeyList, entries: readonly PodEntry[]): Awaitable<void>;

  /** The last request key an engine key maps to, or null when unknown: how a chain's parent resolves. */
  getRequestKey(engineHi: number, engineLo: number): Awaitable<readonly [number, number] | null>;

  /** Removes every entry of a server, every tier (`AllBlocksCleared`, a server replaced or gone). */
  clear(pod: string): Awaitable<void>;

  close(): Awaitable<void>;

  /**
   * Per server, how many request keys it holds a confirmed (not speculative) entry for, any tier:
   * every key is scanned (debugging and ground-truth checks; not a hot path).
   */
  countKeysByPod?(): Awaitable<Map<string, number>>;
}

/** Same identity: equal entries name the same indexed record. */
export function sameEntry(a: PodEntry, b: PodEntry): boolean {
  return a.pod === b.pod && a.tier === b.tier && a.speculative === b.speculative && a.groupIdx === b.groupIdx;
}

/**
 * The LongestPrefix scorer over a lookup's result (what `score` computes in one pass): the reference
 * the backends are tested against, and what a backend without a native `score` can use.
 */
export function scoreLookup(
  perKey: readonly (readonly PodEntry[])[],
  weights: TierWeights,
): Map<string, PrefixScore> {
  const active = new Map<string, { score: number; blocks: number }>();
  for (let i = 0; i < perKey.length; i++) {
    const best = new Map<string, number>();
    for (const e of perKey[i]!) {
      const w = tierWeight(weights, e.tier);
      const prev = best.get(e.pod);
      if (prev === undefined || w > prev) best.set(e.pod, w);
    }
    if (i === 0) {
      for (const [pod, w] of best) active.set(pod, { score: w, blocks: 1 });
    } else {
      for (const [pod, s] of active) {
        const w = best.get(pod);
        if (w === undefined) continue;
        if (s.blocks === i) {
          s.score += w;
          s.blocks++;
        }
      }
    }
    let any = false;
    for (const s of active.values()) if (s.blocks === i + 1) any = true;
    if (!any) break;
  }
  return active;
}
