/**
 * Applying decoded KV events to the index, with llm-d's write-path semantics (spec/kvcache.md §1.2,
 * llm-d-router `pkg/kvevents/pool.go`):
 *
 *  - `BlockStored`: tier = lower-cased `medium` (gpu when absent); model = `lora_name` when set, else
 *    the topic's; a non-zero parent resolves through the index (`getRequestKey`), and when it is not
 *    there the event is skipped, counted (the chain cannot be continued); request keys are the
 *    indexer's own chain over the tokens, tainted by the event's extra keys (see extra-keys.ts); a
 *    tokenless event is a tier update (CPU offload: the same blocks on another tier); else the index
 *    maps the engine hashes to the request keys and stores the server's entry under them;
 *  - HMA (an event with `group_idx`): only prefix-indexable KV-cache kinds, with tokens spanning exactly
 *    the announced blocks; a group's kind is learned from the stores that name it;
 *  - `BlockRemoved`: the engine hashes the dedup filter lets through are evicted for that tier;
 *  - `AllBlocksCleared`: every entry of the server, all tiers.
 *
 * The index is Awaitable: with the in-memory one every call returns a value and a whole batch applies
 * synchronously, without one promise; a promise from the backend (Redis) suspends the batch there and
 * the rest follows when it settles. A failed index call is counted and skips that event only.
 */
import type { TokenProcessor } from '../keys.js';
import { KeyType, type Awaitable, type KvBlockIndex, type PodEntry } from '../index/index.js';
import type { PackedBlockRemoved, PackedBlockStored, PackedKvEvent } from './decode.js';
import { EventDedupFilter } from './dedup.js';
import { eventExtras } from './extra-keys.js';
import type { IngestCounters } from './stats.js';

/** KV-cache kinds whose blocks form a prefix chain (llm-d-router `isPrefixIndexableSpecKind`). */
const PREFIX_INDEXABLE = new Set(['full_attention', 'mla_attention', 'sink_full_attention']);

export interface ApplyOptions {
  /**
   * The router's exact HMA rule: a store naming a group whose kind it never learned is not indexed
   * (`unsupported_cache_kind`), and a removal for such a group is skipped (`unknown_group`). Off by
   * default: an engine that sends `group_idx` without `kv_cache_spec_kind` (llmd serve does, with its
   * single full-attention group) is taken to run plain full attention.
   */
  readonly strictHma?: boolean;
}

/** The write path's state for one server: its dedup counts, its HMA groups, its entries. */
export class ServerIndexState {
  readonly dedup: EventDedupFilter;
  /** KV-cache group → kind, learned from stores. */
  readonly groups = new Map<number, string>();
  private lastTier = '';
  private lastGroup: number | null = null;
  private lastEntries: readonly PodEntry[] | null = null;
  /**
   * A write to the index failed (Redis unreachable): what the index holds of the server may miss
   * stores or keep removed blocks until the server is replayed or rebuilt.
   */
  lost = false;

  constructor(
    readonly pod: string,
    counters: IngestCounters,
  ) {
    this.dedup = new EventDedupFilter(counters);
  }

  /** The one-entry list for a tier and group, reused: a server's events nearly all share both. */
  entries(tier: string, groupIdx: number | null): readonly PodEntry[] {
    if (this.lastEntries === null || tier !== this.lastTier || groupIdx !== this.lastGroup) {
      this.lastEntries = [{ pod: this.pod, tier, speculative: false, groupIdx }];
      this.lastTier = tier;
      this.lastGroup = groupIdx;
    }
    return this.lastEntries;
  }
}

/** Lower-cased media, by their wire spelling (a handful of distinct values). */
const tiers = new Map<string, string>([
  ['GPU', 'gpu'],
  ['CPU', 'cpu'],
]);

function tierOf(medium: string | null): string {
  if (medium === null || medium === '') return 'gpu';
  let t = tiers.get(medium);
  if (t === undefined) {
    t = medium.toLowerCase();
    if (tiers.size < 64) tiers.set(medium, t);
  }
  return t;
}

type Step = Promise<void> | undefined;

export class EventApplier {
  private readonly strictHma: boolean;

  constructor(
    private readonly index: KvBlockIndex,
    private readonly tp: TokenProcessor,
    private readonly counters: IngestCounters,
    opts: ApplyOptions = {},
  ) {
    this.strictHma = opts.strictHma === true;
  }

  /** Whether the index answers now (a Redis index knows; the memory index always does). */
  indexAvailable(): boolean {
    return (this.index as { available?: boolean }).available !== false;
  }

  /** A new server's state (the caller keeps it for the server's lifetime). */
  server(pod: string): ServerIndexState {
    return new ServerIndexState(pod, this.counters);
  }

  /**
   * Applies `events` in order for the server, `model` being the topic's model name. Returns a promise
   * only when the index returned one; it never rejects (failures are counted).
   */
  applyBatch(s: ServerIndexState, model: string, events: readonly PackedKvEvent[], from = 0): Step {
    for (let i = from; i < events.length; i++) {
      let step: Step;
      try {
        step = this.applyEvent(s, model, events[i]!);
      } catch {
        this.counters.applyErrors++;
        s.lost = true;
        continue;
      }
      if (step !== undefined) {
        return step.then(
          () => this.applyBatch(s, model, events, i + 1),
          () => {
            this.counters.applyErrors++;
            s.lost = true;
            return this.applyBatch(s, model, events, i + 1);
          },
        );
      }
    }
    return undefined;
  }

  /**
   * Forgets a server: its entries in the index and its dedup counts (a reset, a gap that cannot be
   * replayed, the server gone). HMA group kinds are kept unless `forgetGroups`.
   */
  reset(s: ServerIndexState, forgetGroups = false): Step {
    s.dedup.clear();
    if (forgetGroups) s.groups.clear();
    try {
      const r = this.index.clear(s.pod);
      if (r instanceof Promise) {
        return r.catch(() => {
          this.counters.applyErrors++;
          s.lost = true;
        });
      }
    } catch {
      this.counters.applyErrors++;
      s.lost = true;
    }
    return undefined;
  }

  private applyEvent(s: ServerIndexState, model: string, e: PackedKvEvent): Step {
    switch (e.type) {
      case 'BlockStored':
        this.counters.eventsStored++;
        return this.stored(s, model, e);
      case 'BlockRemoved':
        this.counters.eventsRemoved++;
        return this.removed(s, e);
      case 'AllBlocksCleared':
        this.counters.eventsCleared++;
        return this.reset(s);
    }
  }

  private stored(s: ServerIndexState, model: string, e: PackedBlockStored): Step {
    const c = this.counters;
    const g = e.groupIdx;
    if (g !== null) {
      let kind = e.kvCacheSpecKind;
      if (kind === null) kind = s.groups.get(g) ?? null;
      else if (s.groups.get(g) !== kind) s.groups.set(g, kind);
      if (kind === null ? this.strictHma : !PREFIX_INDEXABLE.has(kind)) {
        c.storesSkipped.unsupported_cache_kind++;
        return undefined;
      }
      const nTok = e.tokenIds.length;
      if (nTok > 0 && (nTok % e.blockSize !== 0 || nTok / e.blockSize !== e.blockHashes.length >>> 1)) {
        c.storesSkipped.non_dense_block_span++;
        return undefined;
      }
    }
    const p = e.parentBlockHash;
    if (p === null || (p[0] === 0 && p[1] === 0)) return this.storedFrom(s, model, e, null, true);
    const rk = this.index.getRequestKey(p[0], p[1]);
    if (rk instanceof Promise) return rk.then((k) => this.storedFrom(s, model, e, k, false));
    return this.storedFrom(s, model, e, rk, false);
  }

  private storedFrom(
    s: ServerIndexState,
    model: string,
    e: PackedBlockStored,
    parent: readonly [number, number] | null,
    isRoot: boolean,
  ): Step {
    const c = this.counters;
    if (parent === null && !isRoot) {
      c.storesSkipped.parent_unknown++;
      return undefined;
    }
    const tokens = e.tokenIds;
    const lora = e.loraName !== null && e.loraName !== '' ? e.loraName : null;
    const extras =
      e.extraKeys === null && e.cacheSalt === null
        ? null
        : eventExtras(e.extraKeys, lora, this.tp.blocksIn(tokens.length), e.cacheSalt, isRoot);
    const keys = this.tp.keys(tokens, lora ?? model, parent, extras);
    const tier = tierOf(e.medium);
    const entries = s.entries(tier, e.groupIdx);
    if (keys.length === 0) {
      if (tokens.length === 0 && e.blockHashes.length > 0) return this.tierUpdate(s, e, tier, entries);
      c.storesSkipped.no_full_block++;
      return undefined;
    }
    const r = this.index.add(e.blockHashes, keys, entries);
    if (r instanceof Promise) return r.then(() => this.storeApplied(s, e, tier));
    this.storeApplied(s, e, tier);
    return undefined;
  }

  /** After a successful add: counted, and announced to the dedup filter (the router's order). */
  private storeApplied(s: ServerIndexState, e: PackedBlockStored, tier: string): void {
    this.counters.blocksStored += e.blockHashes.length >>> 1;
    s.dedup.trackStore(tier, e.groupIdx, e.blockHashes);
  }

  /**
   * A tokenless store (an offload to another tier): the request keys its engine hashes already map to
   * get the new tier's entry. Hashes the index does not know are ignored; none known, nothing done.
   */
  private tierUpdate(
    s: ServerIndexState,
    e: PackedBlockStored,
    tier: string,
    entries: readonly PodEntry[],
    from = 0,
    resolved: Uint32Array = new Uint32Array(e.blockHashes.length),
    found = 0,
  ): Step {
    const h = e.blockHashes;
    for (let i = from; i < h.length; i += 2) {
      const rk = this.index.getRequestKey(h[i]!, h[i + 1]!);
      if (rk instanceof Promise) {
        return rk.then((k) => {
          const n = appendKey(resolved, found, k);
          return this.tierUpdate(s, e, tier, entries, i + 2, resolved, n);
        });
      }
      found = appendKey(resolved, found, rk);
    }
    if (found === 0) {
      this.counters.storesSkipped.unknown_engine_keys++;
      return undefined;
    }
    this.counters.tierUpdates++;
    const r: Awaitable<void> = this.index.add(null, resolved.subarray(0, 2 * found), entries);
    if (r instanceof Promise) return r.then(() => this.storeApplied(s, e, tier));
    this.storeApplied(s, e, tier);
    return undefined;
  }

  private removed(s: ServerIndexState, e: PackedBlockRemoved): Step {
    const g = e.groupIdx;
    if (g !== null) {
      const kind = s.groups.get(g);
      if (kind === undefined ? this.strictHma : !PREFIX_INDEXABLE.has(kind)) {
        if (kind === undefined) this.counters.removalsSkipped.unknown_group++;
        else this.counters.removalsSkipped.unsupported_cache_kind++;
        return undefined;
      }
    }
    const tier = tierOf(e.medium);
    const evict = s.dedup.filterRemove(tier, g, e.blockHashes);
    if (evict.length === 0) return undefined;
    this.counters.blocksRemoved += evict.length >>> 1;
    const r = this.index.evict(KeyType.Engine, evict, s.entries(tier, g));
    return r instanceof Promise ? r : undefined;
  }
}

/** Appends a resolved request key unless null or equal to the previous one (E0..E3 → R0 gives one). */
function appendKey(out: Uint32Array, n: number, k: readonly [number, number] | null): number {
  if (k === null) return n;
  if (n > 0 && out[2 * n - 2] === k[0] && out[2 * n - 1] === k[1]) return n;
  out[2 * n] = k[0];
  out[2 * n + 1] = k[1];
  return n + 1;
}
