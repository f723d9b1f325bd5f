/**
 * The in-memory KV-block index: llm-d's two-level LRU (request key → up to `podCacheSize` entries,
 * least recently added dropped first; at most `maxKeys` request keys and as many engine keys, least
 * recently used dropped first), laid out in typed arrays instead of objects.
 *
 * Every key is a node in a pool of parallel typed arrays (hash-chain link, LRU links, the key's two
 * halves, its first entry), buckets are an Int32Array of node indices, and a key's entries are a short
 * linked list in a second pool whose values are interned entry ids (server × tier × speculative ×
 * group). No object is allocated per block, the garbage collector has almost nothing to trace, and a
 * block held by one server costs about 70 bytes (request key, engine key and one entry). Scoring walks
 * the prompt's keys once, keeping each server's running prefix in arrays indexed by server id.
 */
import type { KeyList } from '../keys.js';
import {
  KeyType,
  tierWeight,
  type KvBlockIndex,
  type PodEntry,
  type PrefixScore,
  type TierWeights,
} from './index.js';

export interface MemoryIndexOptions {
  /** Most request keys (and most engine keys) kept; llm-d's `inMemoryConfig.size` (default 1e8). */
  readonly maxKeys?: number;
  /** Most entries per request key; llm-d's `podCacheSize` (default 10). */
  readonly podCacheSize?: number;
}

export const DEFAULT_MAX_KEYS = 100_000_000;
export const DEFAULT_POD_CACHE_SIZE = 10;

const NIL = -1;
const INITIAL_NODES = 1024;
/** Modest growth keeps the unused tail of the arrays small: copying is amortised anyway. */
const GROWTH = 1.25;

/**
 * A pool of keyed nodes with a chained hash table and an LRU list; the owner adds per-node payload
 * arrays and is told when the pool grows (`onGrow`) so they grow with it.
 */
class KeyPool {
  hi: Uint32Array;
  lo: Uint32Array;
  chain: Int32Array;
  prev: Int32Array;
  next: Int32Array;
  buckets: Int32Array;
  mask: number;
  capacity: number;
  size = 0;
  /** Most recently used. */
  head = NIL;
  /** Least recently used. */
  tail = NIL;
  private used = 0;
  private free = NIL;

  constructor(
    readonly maxNodes: number,
    private readonly onGrow: (capacity: number) => void,
  ) {
    this.capacity = Math.min(INITIAL_NODES, maxNodes);
    this.hi = new Uint32Array(this.capacity);
    this.lo = new Uint32Array(this.capacity);
    this.chain = new Int32Array(this.capacity);
    this.prev = new Int32Array(this.capacity);
    this.next = new Int32Array(this.capacity);
    this.buckets = new Int32Array(bucketCount(this.capacity)).fill(NIL);
    this.mask = this.buckets.length - 1;
  }

  find(hi: number, lo: number): number {
    let n = this.buckets[(lo ^ hi) & this.mask]!;
    const keysHi = this.hi;
    const keysLo = this.lo;
    const chain = this.chain;
    while (n !== NIL) {
      if (keysLo[n] === lo && keysHi[n] === hi) return n;
      n = chain[n]!;
    }
    return NIL;
  }

  /** Whether a new node can be had without evicting. */
  get full(): boolean {
    return this.free === NIL && this.used >= this.capacity && this.capacity >= this.maxNodes;
  }

  /** A new node for a key not present, at the MRU end. The caller evicts first when `full`. */
  insert(hi: number, lo: number): number {
    let n: number;
    if (this.free !== NIL) {
      n = this.free;
      this.free = this.chain[n]!;
    } else {
      if (this.used >= this.capacity) this.grow();
      n = this.used++;
    }
    this.hi[n] = hi;
    this.lo[n] = lo;
    const b = (lo ^ hi) & this.mask;
    this.chain[n] = this.buckets[b]!;
    this.buckets[b] = n;
    this.prev[n] = NIL;
    this.next[n] = this.head;
    if (this.head !== NIL) this.prev[this.head] = n;
    this.head = n;
    if (this.tail === NIL) this.tail = n;
    this.size++;
    return n;
  }

  /** Unlinks a node from its chain and the LRU list and frees it. */
  remove(n: number): void {
    const b = (this.lo[n]! ^ this.hi[n]!) & this.mask;
    let p = this.buckets[b]!;
    if (p === n) this.buckets[b] = this.chain[n]!;
    else {
      while (this.chain[p] !== n) p = this.chain[p]!;
      this.chain[p] = this.chain[n]!;
    }
    const pv = this.prev[n]!;
    const nx = this.next[n]!;
    if (pv !== NIL) this.next[pv] = nx;
    else this.head = nx;
    if (nx !== NIL) this.prev[nx] = pv;
    else this.tail = pv;
    this.chain[n] = this.free;
    this.free = n;
    this.size--;
  }

  touch(n: number): void {
    if (this.head === n) return;
    const pv = this.prev[n]!;
    const nx = this.next[n]!;
    this.next[pv] = nx;
    if (nx !== NIL) this.prev[nx] = pv;
    else this.tail = pv;
    this.prev[n] = NIL;
    this.next[n] = this.head;
    this.prev[this.head] = n;
    this.head = n;
  }

  private grow(): void {
    const cap = Math.min(this.maxNodes, Math.max(this.capacity + 1, Math.ceil(this.capacity * GROWTH)));
    this.hi = resizeU32(this.hi, cap);
    this.lo = resizeU32(this.lo, cap);
    this.chain = resizeI32(this.chain, cap);
    this.prev = resizeI32(this.prev, cap);
    this.next = resizeI32(this.next, cap);
    this.capacity = cap;
    const nb = bucketCount(cap);
    if (nb !== this.buckets.length) {
      // Rehash the live nodes (free ones are not on any chain; `used` bounds the scan).
      this.buckets = new Int32Array(nb).fill(NIL);
      this.mask = nb - 1;
      for (let n = this.head; n !== NIL; n = this.next[n]!) {
        const b = (this.lo[n]! ^ this.hi[n]!) & this.mask;
        this.chain[n] = this.buckets[b]!;
        this.buckets[b] = n;
      }
    }
    this.onGrow(cap);
  }
}

/** A power of two at least half the node count: chains average at most two nodes. */
function bucketCount(nodes: number): number {
  let b = 1024;
  while (b * 2 < nodes) b *= 2;
  return b;
}

function resizeU32(a: Uint32Array, n: number): Uint32Array {
  const out = new Uint32Array(n);
  out.set(a.subarray(0, Math.min(a.length, n)));
  return out;
}

function resizeI32(a: Int32Array, n: number): Int32Array {
  const out = new Int32Array(n);
  out.set(a.subarray(0, Math.min(a.length, n)));
  return out;
}

function resizeU8(a: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(a.subarray(0, Math.min(a.length, n)));
  return out;
}

function resizeF64(a: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n);
  out.set(a.subarray(0, Math.min(a.length, n)));
  return out;
}

export interface MemoryIndexStats {
  readonly requestKeys: number;
  readonly engineKeys: number;
  readonly entries: number;
  /** Keys dropped because the index was full (least recently used first). */
  readonly evictedKeys: number;
  readonly servers: number;
  /** Bytes held by the index's arrays. */
  readonly bytes: number;
}

export class MemoryIndex implements KvBlockIndex {
  readonly backend = 'memory' as const;
  readonly podCacheSize: number;

  // Request keys: node → first entry node and entry count.
  private readonly rk: KeyPool;
  private rkEntries: Int32Array;
  private rkCount: Uint8Array;

  // Entries: a pool of list nodes holding interned entry ids.
  private enNext: Int32Array;
  private enVal: Uint32Array;
  private enUsed = 0;
  private enFree = NIL;
  private enLive = 0;

  // Engine keys: node → the last request key it maps to; earlier ones (1:many) in `ekMore`.
  private readonly ek: KeyPool;
  private ekRkHi: Uint32Array;
  private ekRkLo: Uint32Array;
  private readonly ekMore = new Map<number, Uint32Array>();

  // Interned entries and servers.
  private readonly entryIds = new Map<string, number>();
  private readonly entryList: PodEntry[] = [];
  private entryPod: Uint32Array = new Uint32Array(64);
  private readonly podIds = new Map<string, number>();
  private readonly podNames: string[] = [];

  // Scoring scratch, indexed by server id (and entry id for weights).
  private podGen: Uint32Array = new Uint32Array(64);
  private podBlocks: Uint32Array = new Uint32Array(64);
  private podScore: Float64Array = new Float64Array(64);
  private podBest: Float64Array = new Float64Array(64);
  /** A server's score before its current block: an upgrade of that block adds to it, never subtracts. */
  private podBase: Float64Array = new Float64Array(64);
  private podAllowed: Uint32Array = new Uint32Array(64);
  private gen = 0;
  private weightsFor: TierWeights | null = null;
  private entryWeight: Float64Array = new Float64Array(64);
  private weightsEntries = 0;

  private evicted = 0;

  constructor(opts: MemoryIndexOptions = {}) {
    const maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    const pcs = opts.podCacheSize ?? DEFAULT_POD_CACHE_SIZE;
    if (!Number.isInteger(maxKeys) || maxKeys < 1)
      throw new RangeError(`maxKeys must be ≥ 1, got ${maxKeys}`);
    if (!Number.isInteger(pcs) || pcs < 1 || pcs > 255) {
      throw new RangeError(`podCacheSize must be in 1..255, got ${pcs}`);
    }
    this.podCacheSize = pcs;
    this.rk = new KeyPool(maxKeys, (cap) => {
      this.rkEntries = resizeI32(this.rkEntries, cap);
      this.rkCount = resizeU8(this.rkCount, cap);
    });
    this.rkEntries = new Int32Array(this.rk.capacity);
    this.rkCount = new Uint8Array(this.rk.capacity);
    this.ek = new KeyPool(maxKeys, (cap) => {
      this.ekRkHi = resizeU32(this.ekRkHi, cap);
      this.ekRkLo = resizeU32(this.ekRkLo, cap);
    });
    this.ekRkHi = new Uint32Array(this.ek.capacity);
    this.ekRkLo = new Uint32Array(this.ek.capacity);
    this.enNext = new Int32Array(INITIAL_NODES);
    this.enVal = new Uint32Array(INITIAL_NODES);
  }

  // ---- the contract ----

  lookup(keys: KeyList, pods?: ReadonlySet<string>): PodEntry[][] {
    const out: PodEntry[][] = [];
    const allowed = this.allowedGen(pods);
    for (let i = 0; i < keys.length; i += 2) {
      const n = this.rk.find(keys[i]!, keys[i + 1]!);
      if (n === NIL) break;
      this.rk.touch(n);
      const here: PodEntry[] = [];
      for (let e = this.rkEntries[n]!; e !== NIL; e = this.enNext[e]!) {
        const id = this.enVal[e]!;
        if (allowed !== 0 && this.podAllowed[this.entryPod[id]!] !== allowed) continue;
        here.push(this.entryList[id]!);
      }
      if (here.length === 0) break;
      out.push(here);
    }
    return out;
  }

  score(keys: KeyList, weights: TierWeights, pods?: ReadonlySet<string>): Map<string, PrefixScore> {
    const result = new Map<string, PrefixScore>();
    const nKeys = keys.length >>> 1;
    if (nKeys === 0) return result;
    const allowed = this.allowedGen(pods);
    const w = this.weights(weights);
    const gen = this.nextGen();
    const podGen = this.podGen;
    const blocks = this.podBlocks;
    const score = this.podScore;
    const best = this.podBest;
    const base = this.podBase;
    const entryPod = this.entryPod;
    const enNext = this.enNext;
    const enVal = this.enVal;
    const touched: number[] = [];
    for (let i = 0; i < nKeys; i++) {
      const n = this.rk.find(keys[2 * i]!, keys[2 * i + 1]!);
      if (n === NIL) break;
      this.rk.touch(n);
      let advanced = 0;
      for (let e = this.rkEntries[n]!; e !== NIL; e = enNext[e]!) {
        const id = enVal[e]!;
        const pod = entryPod[id]!;
        if (allowed !== 0 && this.podAllowed[pod] !== allowed) continue;
        if (i === 0 && podGen[pod] !== gen) {
          podGen[pod] = gen;
          blocks[pod] = 0;
          score[pod] = 0;
          touched.push(pod);
        }
        if (podGen[pod] !== gen) continue;
        const wt = w[id]!;
        if (blocks[pod] === i) {
          // The server's first copy of block i: it extends its prefix.
          blocks[pod] = i + 1;
          best[pod] = wt;
          base[pod] = score[pod]!;
          score[pod] = score[pod]! + wt;
          advanced++;
        } else if (blocks[pod] === i + 1 && wt > best[pod]!) {
          // Another tier of the same block (blocks only reaches i + 1 at block i) counts if it weighs more.
          score[pod] = base[pod]! + wt;
          best[pod] = wt;
        }
      }
      if (advanced === 0) break;
    }
    for (const pod of touched) {
      if (blocks[pod]! > 0) result.set(this.podNames[pod]!, { score: score[pod]!, blocks: blocks[pod]! });
    }
    return result;
  }

  add(engineKeys: KeyList | null, requestKeys: KeyList, entries: readonly PodEntry[]): void {
    const nR = requestKeys.length >>> 1;
    if (nR === 0 || entries.length === 0) return;
    const ids = entries.length === 1 ? null : entries.map((e) => this.intern(e));
    const single = ids === null ? this.intern(entries[0]!) : 0;
    for (let i = 0; i < nR; i++) {
      const n = this.requestNode(requestKeys[2 * i]!, requestKeys[2 * i + 1]!);
      if (ids === null) this.addEntry(n, single);
      else for (const id of ids) this.addEntry(n, id);
    }
    if (engineKeys === null) return;
    const nE = engineKeys.length >>> 1;
    if (nE === 0) return;
    const total = Math.max(nE, nR);
    // i·|E|/n is non-decreasing: the request keys of one engine key are consecutive.
    let i = 0;
    while (i < total) {
      const e = Math.floor((i * nE) / total);
      let j = i + 1;
      while (j < total && Math.floor((j * nE) / total) === e) j++;
      this.mapEngine(engineKeys[2 * e]!, engineKeys[2 * e + 1]!, requestKeys, nR, total, i, j);
      i = j;
    }
  }

  evict(type: KeyType, keys: KeyList, entries: readonly PodEntry[]): void {
    if (entries.length === 0) return;
    const ids: number[] = [];
    for (const e of entries) {
      const id = this.entryIds.get(entryKey(e));
      if (id !== undefined) ids.push(id);
    }
    for (let i = 0; i < keys.length; i += 2) {
      const hi = keys[i]!;
      const lo = keys[i + 1]!;
      if (type === KeyType.Request) {
        this.evictRequest(hi, lo, ids);
        continue;
      }
      const en = this.ek.find(hi, lo);
      if (en === NIL) continue;
      let allEmpty = true;
      const more = this.ekMore.get(en);
      if (more !== undefined) {
        for (let k = 0; k < more.length; k += 2) {
          if (!this.evictRequest(more[k]!, more[k + 1]!, ids)) allEmpty = false;
        }
      }
      if (!this.evictRequest(this.ekRkHi[en]!, this.ekRkLo[en]!, ids)) allEmpty = false;
      if (allEmpty) this.removeEngine(en);
    }
  }

  getRequestKey(engineHi: number, engineLo: number): readonly [number, number] | null {
    const n = this.ek.find(engineHi, engineLo);
    if (n === NIL) return null;
    this.ek.touch(n);
    return [this.ekRkHi[n]!, this.ekRkLo[n]!];
  }

  clear(pod: string): void {
    const pid = this.podIds.get(pod);
    if (pid === undefined) return;
    const rk = this.rk;
    for (let n = rk.head; n !== NIL;) {
      const next = rk.next[n]!;
      let prev = NIL;
      for (let e = this.rkEntries[n]!; e !== NIL;) {
        const en = this.enNext[e]!;
        if (this.entryPod[this.enVal[e]!] === pid) {
          if (prev === NIL) this.rkEntries[n] = en;
          else this.enNext[prev] = en;
          this.rkCount[n]!--;
          this.freeEntry(e);
        } else prev = e;
        e = en;
      }
      if (this.rkCount[n] === 0) rk.remove(n);
      n = next;
    }
  }

  close(): void {}

  // ---- inspection ----

  countKeysByPod(): Map<string, number> {
    const out = new Map<string, number>();
    const seen = new Set<number>();
    for (let n = this.rk.head; n !== NIL; n = this.rk.next[n]!) {
      seen.clear();
      for (let e = this.rkEntries[n]!; e !== NIL; e = this.enNext[e]!) {
        const id = this.enVal[e]!;
        if (this.entryList[id]!.speculative) continue;
        const pid = this.entryPod[id]!;
        if (seen.has(pid)) continue;
        seen.add(pid);
        const pod = this.podNames[pid]!;
        out.set(pod, (out.get(pod) ?? 0) + 1);
      }
    }
    return out;
  }

  stats(): MemoryIndexStats {
    const bytes =
      arraysBytes(this.rk) +
      arraysBytes(this.ek) +
      this.rkEntries.byteLength +
      this.rkCount.byteLength +
      this.ekRkHi.byteLength +
      this.ekRkLo.byteLength +
      this.enNext.byteLength +
      this.enVal.byteLength;
    return {
      requestKeys: this.rk.size,
      engineKeys: this.ek.size,
      entries: this.enLive,
      evictedKeys: this.evicted,
      servers: this.podIds.size,
      bytes,
    };
  }

  /** Every request key with its entries, least recently used last (ground-truth tests, debugging). */
  *dump(): IterableIterator<{ hi: number; lo: number; entries: PodEntry[] }> {
    for (let n = this.rk.head; n !== NIL; n = this.rk.next[n]!) {
      const entries: PodEntry[] = [];
      for (let e = this.rkEntries[n]!; e !== NIL; e = this.enNext[e]!)
        entries.push(this.entryList[this.enVal[e]!]!);
      yield { hi: this.rk.hi[n]!, lo: this.rk.lo[n]!, entries };
    }
  }

  // ---- internals ----

  private requestNode(hi: number, lo: number): number {
    const rk = this.rk;
    let n = rk.find(hi, lo);
    if (n !== NIL) {
      rk.touch(n);
      return n;
    }
    if (rk.full) this.evictLruRequest();
    n = rk.insert(hi, lo);
    this.rkEntries[n] = NIL;
    this.rkCount[n] = 0;
    return n;
  }

  private evictLruRequest(): void {
    const n = this.rk.tail;
    for (let e = this.rkEntries[n]!; e !== NIL;) {
      const next = this.enNext[e]!;
      this.freeEntry(e);
      e = next;
    }
    this.rk.remove(n);
    this.evicted++;
  }

  /** Adds (or refreshes) an entry at the front of a key's list; the list keeps `podCacheSize`. */
  private addEntry(n: number, id: number): void {
    let prev = NIL;
    for (let e = this.rkEntries[n]!; e !== NIL; prev = e, e = this.enNext[e]!) {
      if (this.enVal[e] !== id) continue;
      if (prev !== NIL) {
        this.enNext[prev] = this.enNext[e]!;
        this.enNext[e] = this.rkEntries[n]!;
        this.rkEntries[n] = e;
      }
      return;
    }
    const e = this.allocEntry(id);
    this.enNext[e] = this.rkEntries[n]!;
    this.rkEntries[n] = e;
    if (++this.rkCount[n]! > this.podCacheSize) {
      // Drop the least recently added entry (the list's tail).
      let p = e;
      while (this.enNext[this.enNext[p]!] !== NIL) p = this.enNext[p]!;
      this.freeEntry(this.enNext[p]!);
      this.enNext[p] = NIL;
      this.rkCount[n]!--;
    }
  }

  /** Removes entries from a request key, and the key once empty; returns whether it is gone. */
  private evictRequest(hi: number, lo: number, ids: readonly number[]): boolean {
    const n = this.rk.find(hi, lo);
    if (n === NIL) return true;
    let prev = NIL;
    for (let e = this.rkEntries[n]!; e !== NIL;) {
      const next = this.enNext[e]!;
      if (ids.includes(this.enVal[e]!)) {
        if (prev === NIL) this.rkEntries[n] = next;
        else this.enNext[prev] = next;
        this.rkCount[n]!--;
        this.freeEntry(e);
      } else prev = e;
      e = next;
    }
    if (this.rkCount[n] !== 0) return false;
    this.rk.remove(n);
    return true;
  }

  /** Maps an engine key to request keys ⌊i·|R|/total⌋ for i in [from, to), replacing what it had. */
  private mapEngine(
    hi: number,
    lo: number,
    requestKeys: KeyList,
    nR: number,
    total: number,
    from: number,
    to: number,
  ): void {
    const ek = this.ek;
    let n = ek.find(hi, lo);
    if (n !== NIL) {
      ek.touch(n);
      this.ekMore.delete(n);
    } else {
      if (ek.full) this.removeEngine(ek.tail);
      n = ek.insert(hi, lo);
    }
    let lastR = -1;
    let more: number[] | null = null;
    for (let i = from; i < to; i++) {
      const r = Math.floor((i * nR) / total);
      if (r === lastR) continue;
      if (lastR >= 0) (more ??= []).push(requestKeys[2 * lastR]!, requestKeys[2 * lastR + 1]!);
      lastR = r;
    }
    this.ekRkHi[n] = requestKeys[2 * lastR]!;
    this.ekRkLo[n] = requestKeys[2 * lastR + 1]!;
    if (more !== null) this.ekMore.set(n, Uint32Array.from(more));
  }

  private removeEngine(n: number): void {
    this.ekMore.delete(n);
    this.ek.remove(n);
  }

  private allocEntry(id: number): number {
    let e: number;
    if (this.enFree !== NIL) {
      e = this.enFree;
      this.enFree = this.enNext[e]!;
    } else {
      if (this.enUsed >= this.enNext.length) {
        const cap = Math.ceil(this.enNext.length * GROWTH);
        this.enNext = resizeI32(this.enNext, cap);
        this.enVal = resizeU32(this.enVal, cap);
      }
      e = this.enUsed++;
    }
    this.enVal[e] = id;
    this.enLive++;
    return e;
  }

  private freeEntry(e: number): void {
    this.enNext[e] = this.enFree;
    this.enFree = e;
    this.enLive--;
  }

  private intern(e: PodEntry): number {
    const k = entryKey(e);
    let id = this.entryIds.get(k);
    if (id !== undefined) return id;
    id = this.entryList.length;
    this.entryIds.set(k, id);
    this.entryList.push({ pod: e.pod, tier: e.tier, speculative: e.speculative, groupIdx: e.groupIdx });
    if (id >= this.entryPod.length) {
      this.entryPod = resizeU32(this.entryPod, this.entryPod.length * 2);
      this.entryWeight = resizeF64(this.entryWeight, this.entryPod.length);
    }
    let pid = this.podIds.get(e.pod);
    if (pid === undefined) {
      pid = this.podNames.length;
      this.podIds.set(e.pod, pid);
      this.podNames.push(e.pod);
      if (pid >= this.podGen.length) {
        const cap = this.podGen.length * 2;
        this.podGen = resizeU32(this.podGen, cap);
        this.podBlocks = resizeU32(this.podBlocks, cap);
        this.podScore = resizeF64(this.podScore, cap);
        this.podBest = resizeF64(this.podBest, cap);
        this.podBase = resizeF64(this.podBase, cap);
        this.podAllowed = resizeU32(this.podAllowed, cap);
      }
    }
    this.entryPod[id] = pid;
    return id;
  }

  /** Entry weights for `weights`, recomputed when the object or the set of entries changes. */
  private weights(weights: TierWeights): Float64Array {
    if (this.weightsFor !== weights || this.weightsEntries !== this.entryList.length) {
      for (let id = 0; id < this.entryList.length; id++) {
        this.entryWeight[id] = tierWeight(weights, this.entryList[id]!.tier);
      }
      this.weightsFor = weights;
      this.weightsEntries = this.entryList.length;
    }
    return this.entryWeight;
  }

  private nextGen(): number {
    if (++this.gen === 0xffffffff) {
      this.podGen.fill(0);
      this.podAllowed.fill(0);
      this.gen = 1;
    }
    return this.gen;
  }

  /** Marks the allowed servers with a fresh generation; 0 means no filter. */
  private allowedGen(pods: ReadonlySet<string> | undefined): number {
    if (pods === undefined) return 0;
    const g = this.nextGen();
    for (const p of pods) {
      const pid = this.podIds.get(p);
      if (pid !== undefined) this.podAllowed[pid] = g;
    }
    return g;
  }
}

function entryKey(e: PodEntry): string {
  return `${e.pod}\u0000${e.tier}\u0000${e.speculative ? 1 : 0}\u0000${e.groupIdx ?? ''}`;
}

function arraysBytes(p: KeyPool): number {
  return (
    p.hi.byteLength +
    p.lo.byteLength +
    p.chain.byteLength +
    p.prev.byteLength +
    p.next.byteLength +
    p.buckets.byteLength
  );
}
