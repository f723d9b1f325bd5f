/**
 * The Redis index's client-side cache: request key (its decimal name) → the hash's field names, as
 * the last tracked HKEYS read them. Redis's client tracking tells the connection that read a key when
 * any client changes it, and the cache drops the key then, so an entry is as fresh as the invalidation
 * stream. Pure: the tracking connection (`redis-tracking.ts`) fills and invalidates it in the order
 * replies and invalidations arrive, which is what keeps it coherent.
 *
 * Bounded by key count; the oldest entry goes first (a key read again is refreshed to the back).
 * Redis keeps tracking a key the cache dropped, which costs only a spurious invalidation later.
 */
export interface FieldCacheStats {
  readonly size: number;
  readonly hits: number;
  readonly misses: number;
  readonly invalidations: number;
  readonly flushes: number;
}

export class FieldCache {
  private readonly entries = new Map<string, readonly string[]>();
  private hits = 0;
  private misses = 0;
  private invalidations = 0;
  private flushes = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The key's field names, or undefined when not cached. */
  get(name: string): readonly string[] | undefined {
    const e = this.entries.get(name);
    if (e === undefined) this.misses++;
    else this.hits++;
    return e;
  }

  /** Whether the key is cached, without counting a hit or a miss. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** What a tracked read returned for the key (an absent key: no fields). */
  set(name: string, fields: readonly string[]): void {
    if (this.capacity <= 0) return;
    if (this.entries.has(name)) this.entries.delete(name);
    else if (this.entries.size >= this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(name, fields);
  }

  /** Redis says these keys changed (null: all of them, after FLUSHALL / FLUSHDB). */
  invalidate(names: readonly string[] | null): void {
    if (names === null) {
      this.flush();
      return;
    }
    for (const n of names) if (this.entries.delete(n)) this.invalidations++;
  }

  /** Forgets everything: the tracking connection dropped, so invalidations may have been missed. */
  flush(): void {
    if (this.entries.size > 0) this.flushes++;
    this.entries.clear();
  }

  stats(): FieldCacheStats {
    return {
      size: this.entries.size,
      hits: this.hits,
      misses: this.misses,
      invalidations: this.invalidations,
      flushes: this.flushes,
    };
  }
}
