/**
 * The approximate prefix index (upstream `approximateprefix/indexer.go`): which servers are believed
 * to hold which block hashes — a set of (hash, server) pairs, i.e. hash → servers — plus a per-server
 * LRU of its hashes with a capacity. Evicting a hash from a server's LRU removes the pair; a hash no
 * server holds is gone with its last pair. Servers are keyed by endpoint id, not by Endpoint object,
 * since the datastore may replace the object of a live endpoint.
 *
 * Layout: everything in typed arrays, so millions of entries are no GC objects. An open-addressing
 * table (linear probing, backward-shift deletion) maps the exact 64-bit hash (as `prefix-hash.ts`
 * produces it: low, high words) and a dense server number to an entry; each entry sits on its
 * server's doubly-linked LRU list. One probe reads one 16-byte slot.
 *
 * `add` walks a chain from its last block to its first, so a chain's first blocks are always more
 * recently used than its later ones, and LRU eviction drops a tail before its head — as vLLM frees a
 * request's blocks tail first. Hence what a server holds of any chain is a prefix of it, and `match`
 * finds each server's leading run by binary search: O(log n) probes per server instead of a walk over
 * every server on every block (a long prefix shared by 100 servers made that walk cost ~1 ms).
 */
import type { Endpoint } from '../../framework/endpoint.js';

export interface PrefixIndexStats {
  /** (server, hash) pairs: upstream's `prefix_indexer_size`. */
  readonly entries: number;
  readonly servers: number;
  /** Blocks passed to `match`, and the sum of the longest leading runs it found. */
  readonly lookedUpBlocks: number;
  readonly matchedBlocks: number;
}

const MIN_SLOTS = 1024;
/** Slot fields: hash low, hash high, server, entry (0 = empty slot). */
const SLOT = 4;
/** Entry fields: server (-1 = free), hash low, hash high, LRU next (towards LRU), LRU prev. */
const ENTRY = 5;
const E_SRV = 0;
const E_LO = 1;
const E_HI = 2;
const E_NEXT = 3;
const E_PREV = 4;
const GOLDEN = 0x9e3779b1;

export class PrefixIndex {
  private defaultCapacity: number;

  private mask = MIN_SLOTS - 1;
  private table = new Int32Array(MIN_SLOTS * SLOT);

  /** Entries are 1-based: 0 is "none" in links and in table slots. */
  private ent = new Int32Array(1024 * ENTRY);
  private eTop = 1;
  private eFree = 0;
  private entries = 0;

  private readonly ids = new Map<string, number>();
  private sId: (string | undefined)[] = [];
  private sMru = new Int32Array(16);
  private sLru = new Int32Array(16);
  private sSize = new Int32Array(16);
  private sCap = new Int32Array(16);
  private readonly sFree: number[] = [];
  /** Bumped whenever a server is added or removed: invalidates the per-slot cache below. */
  private version = 0;
  /** `match`'s cache of endpoint slot → server number (-1 = none), valid for the id and version seen. */
  private slotIds: (string | undefined)[] = [];
  private slotSrv = new Int32Array(0);
  private slotVer = new Int32Array(0);

  private lookedUp = 0;
  private matched = 0;

  constructor(defaultCapacity: number) {
    this.defaultCapacity = checkCapacity(defaultCapacity);
  }

  /**
   * Records that `serverId` holds `hashes` (a prompt's chain as (low, high) pairs). `capacity`, when
   * given, becomes the server's LRU capacity (shrinking evicts at once); new servers otherwise get the
   * default.
   */
  add(serverId: string, hashes: Uint32Array, capacity?: number): void {
    let s = this.ids.get(serverId);
    if (s === undefined) s = this.newServer(serverId, capacity ?? this.defaultCapacity);
    else if (capacity !== undefined) this.resize(s, capacity);
    for (let k = (hashes.length >> 1) - 1; k >= 0; k--) {
      const lo = hashes[2 * k]! | 0;
      const hi = hashes[2 * k + 1]! | 0;
      let slot = this.find(lo, hi, s);
      if (slot >= 0) {
        this.touch(s, this.table[slot * SLOT + 3]!);
        continue;
      }
      if (2 * (this.entries + 1) > this.mask + 1) {
        this.growTable();
        slot = this.find(lo, hi, s);
      }
      const e = this.alloc(s, lo, hi);
      const b = ~slot * SLOT;
      this.table[b] = lo;
      this.table[b + 1] = hi;
      this.table[b + 2] = s;
      this.table[b + 3] = e;
      this.pushMru(s, e);
      if (++this.sSize[s]! > this.sCap[s]!) this.evictLru(s);
    }
  }

  /**
   * Adds to `out[endpoint.slot]` how many leading hashes of the chain each of `endpoints` holds.
   * Returns the longest such run.
   */
  match(hashes: Uint32Array, endpoints: readonly Endpoint[], out: Int32Array): number {
    const n = hashes.length >> 1;
    if (n === 0 || this.ids.size === 0) return 0;
    const lo0 = hashes[0]! | 0;
    const hi0 = hashes[1]! | 0;
    const loN = hashes[2 * n - 2]! | 0;
    const hiN = hashes[2 * n - 1]! | 0;
    let longest = 0;
    for (let i = 0; i < endpoints.length; i++) {
      const ep = endpoints[i]!;
      const s = this.serverOf(ep);
      if (s < 0 || this.find(lo0, hi0, s) < 0) continue;
      let run: number;
      if (this.find(loN, hiN, s) >= 0) run = n;
      else {
        // Holds entry 0, not entry n-1: the longest held prefix is in [1, n-1).
        let low = 1;
        let high = n - 1;
        while (low < high) {
          const mid = (low + high + 1) >>> 1;
          if (this.find(hashes[2 * mid - 2]! | 0, hashes[2 * mid - 1]! | 0, s) >= 0) low = mid;
          else high = mid - 1;
        }
        run = low;
      }
      if (ep.slot < out.length) out[ep.slot]! += run;
      if (run > longest) longest = run;
    }
    this.lookedUp += n;
    this.matched += longest;
    return longest;
  }

  /** Forgets a server and everything it held. */
  remove(serverId: string): boolean {
    const s = this.ids.get(serverId);
    if (s === undefined) return false;
    while (this.sLru[s] !== 0) this.evictLru(s);
    this.ids.delete(serverId);
    this.sId[s] = undefined;
    this.sFree.push(s);
    this.version++;
    return true;
  }

  setCapacity(serverId: string, capacity: number): void {
    const s = this.ids.get(serverId);
    if (s !== undefined) this.resize(s, capacity);
  }

  /** For servers created without an explicit capacity from now on. */
  setDefaultCapacity(capacity: number): void {
    this.defaultCapacity = checkCapacity(capacity);
  }

  capacityOf(serverId: string): number | undefined {
    const s = this.ids.get(serverId);
    return s === undefined ? undefined : this.sCap[s];
  }

  /** Entries held by one server, or by all. */
  size(serverId?: string): number {
    if (serverId === undefined) return this.entries;
    const s = this.ids.get(serverId);
    return s === undefined ? 0 : this.sSize[s]!;
  }

  serverIds(): string[] {
    return [...this.ids.keys()];
  }

  /** The servers holding entry `i` of a chain (a scan over servers: for tests and debugging). */
  serversOf(hashes: Uint32Array, i: number): string[] {
    const lo = hashes[2 * i]! | 0;
    const hi = hashes[2 * i + 1]! | 0;
    const out: string[] = [];
    for (const [id, s] of this.ids) if (this.find(lo, hi, s) >= 0) out.push(id);
    return out;
  }

  /** A server's hashes as (low, high) pairs, most recently used first. */
  hashesOf(serverId: string): Uint32Array {
    const s = this.ids.get(serverId);
    if (s === undefined) return new Uint32Array(0);
    const out = new Uint32Array(2 * this.sSize[s]!);
    let i = 0;
    for (let e = this.sMru[s]!; e !== 0; e = this.ent[e * ENTRY + E_NEXT]!) {
      out[i++] = this.ent[e * ENTRY + E_LO]! >>> 0;
      out[i++] = this.ent[e * ENTRY + E_HI]! >>> 0;
    }
    return out;
  }

  stats(): PrefixIndexStats {
    return {
      entries: this.entries,
      servers: this.ids.size,
      lookedUpBlocks: this.lookedUp,
      matchedBlocks: this.matched,
    };
  }

  // ---- internals ----------------------------------------------------------------------------------

  /** The server number of an endpoint, or -1; a Map lookup per endpoint per request showed up in profiles. */
  private serverOf(ep: Endpoint): number {
    const slot = ep.slot;
    const id = ep.meta.id;
    if (slot < this.slotSrv.length && this.slotIds[slot] === id && this.slotVer[slot] === this.version) {
      return this.slotSrv[slot]!;
    }
    const s = this.ids.get(id) ?? -1;
    if (slot >= this.slotSrv.length) {
      const n = Math.max(16, 2 * slot + 2);
      const srv = new Int32Array(n);
      srv.set(this.slotSrv);
      const ver = new Int32Array(n);
      ver.set(this.slotVer);
      this.slotSrv = srv;
      this.slotVer = ver;
    }
    this.slotIds[slot] = id;
    this.slotSrv[slot] = s;
    this.slotVer[slot] = this.version;
    return s;
  }

  /** The slot holding (lo, hi, s), or `~slot` of the empty slot where it would go. */
  private find(lo: number, hi: number, s: number): number {
    const t = this.table;
    const mask = this.mask;
    let i = (lo ^ Math.imul(s, GOLDEN)) & mask;
    for (;;) {
      const b = i * SLOT;
      if (t[b + 3] === 0) return ~i;
      if (t[b] === lo && t[b + 1] === hi && t[b + 2] === s) return i;
      i = (i + 1) & mask;
    }
  }

  private growTable(): void {
    const old = this.table;
    const slots = (this.mask + 1) * 2;
    this.table = new Int32Array(slots * SLOT);
    this.mask = slots - 1;
    for (let b = 0; b < old.length; b += SLOT) {
      if (old[b + 3] === 0) continue;
      const to = ~this.find(old[b]!, old[b + 1]!, old[b + 2]!) * SLOT;
      this.table.set(old.subarray(b, b + SLOT), to);
    }
  }

  /** Backward-shift deletion: no tombstones, so probes stay short. */
  private deleteSlot(i: number): void {
    const t = this.table;
    const mask = this.mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const bj = j * SLOT;
      if (t[bj + 3] === 0) break;
      const home = (t[bj]! ^ Math.imul(t[bj + 2]!, GOLDEN)) & mask;
      // The slot at j may move back to i only if its home is not cyclically within (i, j].
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      t.copyWithin(i * SLOT, bj, bj + SLOT);
      i = j;
    }
    t[i * SLOT + 3] = 0;
  }

  private alloc(s: number, lo: number, hi: number): number {
    let e = this.eFree;
    if (e !== 0) this.eFree = this.ent[e * ENTRY + E_NEXT]!;
    else {
      if ((this.eTop + 1) * ENTRY > this.ent.length) {
        const grown = new Int32Array(this.ent.length * 2);
        grown.set(this.ent);
        this.ent = grown;
      }
      e = this.eTop++;
    }
    const b = e * ENTRY;
    this.ent[b + E_SRV] = s;
    this.ent[b + E_LO] = lo;
    this.ent[b + E_HI] = hi;
    this.entries++;
    return e;
  }

  private newServer(id: string, capacity: number): number {
    let s = this.sFree.pop();
    if (s === undefined) {
      s = this.sId.length;
      this.sId.push(undefined);
      if (s >= this.sMru.length) {
        const n = this.sMru.length * 2;
        const grow = (a: Int32Array) => {
          const b = new Int32Array(n);
          b.set(a);
          return b;
        };
        this.sMru = grow(this.sMru);
        this.sLru = grow(this.sLru);
        this.sSize = grow(this.sSize);
        this.sCap = grow(this.sCap);
      }
    }
    this.ids.set(id, s);
    this.sId[s] = id;
    this.version++;
    this.sMru[s] = 0;
    this.sLru[s] = 0;
    this.sSize[s] = 0;
    this.sCap[s] = checkCapacity(capacity);
    return s;
  }

  private resize(s: number, capacity: number): void {
    const cap = checkCapacity(capacity);
    this.sCap[s] = cap;
    while (this.sSize[s]! > cap) this.evictLru(s);
  }

  private pushMru(s: number, e: number): void {
    const first = this.sMru[s]!;
    this.ent[e * ENTRY + E_PREV] = 0;
    this.ent[e * ENTRY + E_NEXT] = first;
    if (first !== 0) this.ent[first * ENTRY + E_PREV] = e;
    else this.sLru[s] = e;
    this.sMru[s] = e;
  }

  private unlink(s: number, e: number): void {
    const prev = this.ent[e * ENTRY + E_PREV]!;
    const next = this.ent[e * ENTRY + E_NEXT]!;
    if (prev !== 0) this.ent[prev * ENTRY + E_NEXT] = next;
    else this.sMru[s] = next;
    if (next !== 0) this.ent[next * ENTRY + E_PREV] = prev;
    else this.sLru[s] = prev;
  }

  private touch(s: number, e: number): void {
    if (this.sMru[s] === e) return;
    this.unlink(s, e);
    this.pushMru(s, e);
  }

  private evictLru(s: number): void {
    const e = this.sLru[s]!;
    const b = e * ENTRY;
    this.unlink(s, e);
    this.deleteSlot(this.find(this.ent[b + E_LO]!, this.ent[b + E_HI]!, s));
    this.ent[b + E_SRV] = -1;
    this.ent[b + E_NEXT] = this.eFree;
    this.eFree = e;
    this.sSize[s]!--;
    this.entries--;
  }
}

function checkCapacity(capacity: number): number {
  if (!Number.isFinite(capacity) || capacity < 1)
    throw new RangeError(`LRU capacity must be ≥ 1, got ${capacity}`);
  return Math.min(Math.floor(capacity), 0x7fffffff);
}
