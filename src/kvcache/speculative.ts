/**
 * Speculative indexing (llm-d #353): right after a request is routed, its block keys are entered for
 * the chosen server as speculative entries, so that the next request with the same prefix goes there
 * before the server's KV events have arrived. Each lives `ttlMs` (llm-d's `speculativeTTL`, 2 s), then
 * is evicted; the confirmed entries the events bring are separate records and stay.
 *
 * One TTL for all, so expiry order is insertion order: a FIFO and a single timer, no per-entry timer.
 */
import type { Logger } from '../core/log.js';
import { KeyType, type KvBlockIndex, type PodEntry } from './index/index.js';
import type { KeyList } from './keys.js';

interface Pending {
  readonly at: number;
  readonly keys: KeyList;
  readonly entry: PodEntry;
}

export interface SpeculativeTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const NODE_TIMERS: SpeculativeTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // Expiry must never keep a process alive.
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Most pending entries: beyond it the oldest expire early, so a burst cannot grow memory unbounded. */
export const MAX_PENDING = 100_000;

export class SpeculativeIndexer {
  private readonly queue: Pending[] = [];
  private head = 0;
  private timer: unknown = null;
  private readonly entries = new Map<string, PodEntry>();
  added = 0;
  expired = 0;

  constructor(
    private readonly index: KvBlockIndex,
    readonly ttlMs: number,
    private readonly clock: () => number,
    private readonly logger: Logger,
    private readonly timers: SpeculativeTimers = NODE_TIMERS,
  ) {}

  get pending(): number {
    return this.queue.length - this.head;
  }

  /** Enters `keys` for `pod` until the TTL passes. */
  add(keys: KeyList, pod: string): void {
    if (keys.length === 0) return;
    let entry = this.entries.get(pod);
    if (entry === undefined) {
      entry = { pod, tier: '', speculative: true, groupIdx: null };
      this.entries.set(pod, entry);
    }
    this.settle(this.index.add(null, keys, [entry]));
    this.queue.push({ at: this.clock() + this.ttlMs, keys, entry });
    this.added++;
    if (this.pending > MAX_PENDING) this.expireOne();
    this.schedule();
  }

  /** Evicts whatever is due; the timer calls it, tests may too. */
  expireDue(): void {
    const now = this.clock();
    while (this.head < this.queue.length && this.queue[this.head]!.at <= now) this.expireOne();
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.schedule();
  }

  close(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  private expireOne(): void {
    const p = this.queue[this.head++]!;
    this.expired++;
    this.settle(this.index.evict(KeyType.Request, p.keys, [p.entry]));
  }

  private schedule(): void {
    if (this.timer !== null || this.head >= this.queue.length) return;
    const wait = Math.max(0, this.queue[this.head]!.at - this.clock());
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.expireDue();
    }, wait);
  }

  /** A backend that answers with promises (Redis) fails on its own: logged, never thrown. */
  private settle(r: void | Promise<void>): void {
    if (r instanceof Promise) {
      r.catch((err: unknown) =>
        this.logger.debug({ err: (err as Error).message }, 'speculative index update failed'),
      );
    }
  }
}
