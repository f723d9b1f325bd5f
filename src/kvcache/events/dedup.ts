/**
 * The router's event dedup filter (llm-d-router `pkg/kvevents/event_dedup_filter.go`): a reference
 * count of engine block hashes per (server, tier, group), so that a `BlockRemoved` reaches the index
 * only when the last announcement of that hash in that scope is gone. An engine may legitimately hold
 * one hash more than once (vLLM keeps duplicate blocks of a prefix computed twice; its offloading
 * connector re-announces shared hashes in chunk mode) and removes each copy separately: forwarding the
 * first removal would drop a block the server still has. A hash never stored passes through (the index
 * ignores unknown engine keys); `clear` drops a server on AllBlocksCleared or a reset.
 *
 * Counts live in an open-addressing table of (hi, lo) halves: no allocation per block on the hot path.
 */
import type { KeyList } from '../keys.js';

/** A slot's count when it holds no hash. */
const EMPTY = 0;
/** Slots are [hi, lo, count] triples in one array: a probe touches one cache line. */
const STRIDE = 3;

/**
 * (hi, lo) → positive count, with linear probing kept at most half full. A removal shifts the slots
 * after it back instead of leaving a tombstone, so stores and removals at the same rate (an engine
 * with a full cache) never fill the table with dead slots nor need it rebuilt.
 */
export class HashCounter {
  private slots: Uint32Array;
  private mask: number;
  /** Live entries. */
  size = 0;

  constructor(capacity = 64) {
    let n = 16;
    while (n < capacity * 2) n *= 2;
    this.slots = new Uint32Array(n * STRIDE);
    this.mask = n - 1;
  }

  /** Adds one reference. */
  increment(hi: number, lo: number): void {
    const t = this.slots;
    const mask = this.mask;
    let i = slotOf(hi, lo, mask);
    for (;;) {
      const at = i * STRIDE;
      const c = t[at + 2]!;
      if (c === EMPTY) break;
      if (t[at + 1] === lo && t[at] === hi) {
        t[at + 2] = c + 1;
        return;
      }
      i = (i + 1) & mask;
    }
    const at = i * STRIDE;
    t[at] = hi;
    t[at + 1] = lo;
    t[at + 2] = 1;
    if (++this.size * 2 > mask + 1) this.grow();
  }

  /**
   * Drops one reference; returns the count left, or -1 when the hash was not counted (the caller
   * forwards both 0 and -1: the last copy went, or the filter never saw it).
   */
  decrement(hi: number, lo: number): number {
    const t = this.slots;
    const mask = this.mask;
    let i = slotOf(hi, lo, mask);
    for (;;) {
      const at = i * STRIDE;
      const c = t[at + 2]!;
      if (c === EMPTY) return -1;
      if (t[at + 1] === lo && t[at] === hi) {
        const left = c - 1;
        if (left === 0) this.removeAt(i);
        else t[at + 2] = left;
        return left;
      }
      i = (i + 1) & mask;
    }
  }

  get(hi: number, lo: number): number {
    const t = this.slots;
    let i = slotOf(hi, lo, this.mask);
    for (;;) {
      const at = i * STRIDE;
      const c = t[at + 2]!;
      if (c === EMPTY) return 0;
      if (t[at + 1] === lo && t[at] === hi) return c;
      i = (i + 1) & this.mask;
    }
  }

  /**
   * Empties slot `i` and moves back each following slot of the run whose home is not strictly
   * between the hole and it (cyclically), so every key stays reachable from its home.
   */
  private removeAt(i: number): void {
    const t = this.slots;
    const mask = this.mask;
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const at = j * STRIDE;
      if (t[at + 2] === EMPTY) break;
      const home = slotOf(t[at]!, t[at + 1]!, mask);
      // Does `home` lie cyclically in (hole, j]? Then the entry is already reachable: leave it.
      if (hole <= j ? hole < home && home <= j : hole < home || home <= j) continue;
      const h = hole * STRIDE;
      t[h] = t[at]!;
      t[h + 1] = t[at + 1]!;
      t[h + 2] = t[at + 2]!;
      hole = j;
    }
    t[hole * STRIDE + 2] = EMPTY;
    this.size--;
  }

  private grow(): void {
    const old = this.slots;
    const n = (this.mask + 1) * 2;
    const t = new Uint32Array(n * STRIDE);
    const mask = n - 1;
    for (let at = 0; at < old.length; at += STRIDE) {
      const c = old[at + 2]!;
      if (c === EMPTY) continue;
      let i = slotOf(old[at]!, old[at + 1]!, mask);
      while (t[i * STRIDE + 2] !== EMPTY) i = (i + 1) & mask;
      t[i * STRIDE] = old[at]!;
      t[i * STRIDE + 1] = old[at + 1]!;
      t[i * STRIDE + 2] = c;
    }
    this.slots = t;
    this.mask = mask;
  }
}

/** Block hashes are uniformly random already; mixing the halves is enough. */
function slotOf(hi: number, lo: number, mask: number): number {
  return (Math.imul(lo ^ hi, 0x9e3779b1) >>> 7) & mask;
}

/** The scope of a count: a tier and KV-cache group (the server's index identity, less the pod). */
function scopeKey(tier: string, groupIdx: number | null): string {
  return groupIdx === null ? tier : `${tier}\u0000${groupIdx}`;
}

export interface DedupCounters {
  /** Removed hashes forwarded to the index. */
  dedupForwarded: number;
  /** Removed hashes held back because another copy is still announced. */
  dedupSuppressed: number;
}

/** One server's filter (the router keeps one map of all; the pool here keeps one filter per server). */
export class EventDedupFilter {
  private readonly scopes = new Map<string, HashCounter>();
  /** The last scope used: almost every event of a server has the same tier and group. */
  private lastTier = '';
  private lastGroup: number | null = null;
  private last: HashCounter | null = null;

  constructor(private readonly counters: DedupCounters = { dedupForwarded: 0, dedupSuppressed: 0 }) {}

  private counter(tier: string, groupIdx: number | null, create: boolean): HashCounter | null {
    if (this.last !== null && tier === this.lastTier && groupIdx === this.lastGroup) return this.last;
    const key = scopeKey(tier, groupIdx);
    let c = this.scopes.get(key);
    if (c === undefined) {
      if (!create) return null;
      c = new HashCounter();
      this.scopes.set(key, c);
    }
    this.lastTier = tier;
    this.lastGroup = groupIdx;
    this.last = c;
    return c;
  }

  /** One reference per stored hash (duplicates in one event count twice, as on the wire). */
  trackStore(tier: string, groupIdx: number | null, hashes: KeyList): void {
    if (hashes.length === 0) return;
    const c = this.counter(tier, groupIdx, true)!;
    for (let i = 0; i < hashes.length; i += 2) c.increment(hashes[i]!, hashes[i + 1]!);
  }

  /**
   * The removed hashes to evict from the index, in order: those whose count returns to zero and
   * those never counted. Returns `hashes` itself when all pass (the common case: no copy made).
   */
  filterRemove(tier: string, groupIdx: number | null, hashes: KeyList): KeyList {
    const c = this.counter(tier, groupIdx, false);
    const n = hashes.length >>> 1;
    if (c === null) {
      this.counters.dedupForwarded += n;
      return hashes;
    }
    let kept: Uint32Array | null = null;
    let k = 0;
    for (let i = 0; i < n; i++) {
      const hi = hashes[2 * i]!;
      const lo = hashes[2 * i + 1]!;
      if (c.decrement(hi, lo) <= 0) {
        if (kept !== null) {
          kept[2 * k] = hi;
          kept[2 * k + 1] = lo;
        }
        k++;
      } else if (kept === null) {
        // The first suppressed hash: from here on, the survivors are copied.
        kept = new Uint32Array(hashes.length);
        kept.set(hashes.subarray(0, 2 * k));
      }
    }
    this.counters.dedupForwarded += k;
    this.counters.dedupSuppressed += n - k;
    return kept === null ? hashes : kept.subarray(0, 2 * k);
  }

  /** How many announcements of a hash are outstanding (tests, debugging). */
  count(tier: string, groupIdx: number | null, hi: number, lo: number): number {
    return this.counter(tier, groupIdx, false)?.get(hi, lo) ?? 0;
  }

  /** Forgets every count: AllBlocksCleared, or the server was reset. */
  clear(): void {
    this.scopes.clear();
    this.last = null;
  }
}
