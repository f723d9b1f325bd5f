/**
 * The in-memory KV-block index: llm-d's two-level LRU (request key → up to `podCacheSize` entries,
 * least recently added dropped first; at most `maxKeys` request keys and as many engine keys, least
 * recently used dropped first), laid out in typed arrays instead of objects.
 *
 * Every key is a node: a record of int32 words in one array (the key's two halves, hash-chain link,
 * LRU links, then what it maps to), named by its offset; buckets are an Int32Array of offsets. A
 * request key's entries (interned entry ids: server × tier × speculative × group, most recently
 * added first) are an interned, immutable entry set shared by every key holding the same entries:
 * the blocks of one prompt cached by the same servers all point at one set, so a key costs one set
 * id, and adding an entry moves a key from set to set through a cache of transitions. A block held
 * by one server costs about 60 bytes (request key, engine key). Scoring walks the prompt's keys once
 * and does per-server work only for the servers that stop, or change weight, where the set changes
 * from one block to the next.
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
/** `prev` of a node on the free list. */
const FREE = -2;
const INITIAL_NODES = 1024;
/** Modest growth keeps the unused tail of the arrays small: copying is amortised anyway. */
const GROWTH = 1.25;

/** Words of a node record: the key's halves, its hash-chain link, its LRU links, then the payload. */
const HI = 0;
const LO = 1;
const CHAIN = 2;
const PREV = 3;
const NEXT = 4;
const PAYLOAD = 5;

/**
 * A pool of keyed nodes with a chained hash table and an LRU list. A node is a record of `stride`
 * int32 words in one array (`PAYLOAD` onwards is the owner's), and is named by the offset of its
 * record: finding a key and reading what it holds touches one cache line, not one per field.
 * Key halves are stored as int32 (compare with `| 0`, read back with `>>> 0`).
 */
class KeyPool {
  nodes: Int32Array;
  buckets: Int32Array;
  mask: number;
  /** In nodes. */
  capacity: number;
  size = 0;
  /** Most recently used. */
  head = NIL;
  /** Least recently used. */
  tail = NIL;
  /** Words handed out so far (the next fresh record's offset). */
  private used = 0;
  private free = NIL;

  constructor(
    readonly maxNodes: number,
    readonly stride: number,
  ) {
    this.capacity = Math.min(INITIAL_NODES, maxNodes);
    this.nodes = new Int32Array(this.capacity * stride);
    this.buckets = new Int32Array(bucketCount(this.capacity)).fill(NIL);
    this.mask = this.buckets.length - 1;
  }

  find(hi: number, lo: number): number {
    const h = hi | 0;
    const l = lo | 0;
    const nodes = this.nodes;
    let n = this.buckets[(l ^ h) & this.mask]!;
    while (n !== NIL) {
      if (nodes[n + LO] === l && nodes[n + HI] === h) return n;
      n = nodes[n + CHAIN]!;
    }
    return NIL;
  }

  /** Whether a new node can be had without evicting. */
  get full(): boolean {
    return this.free === NIL && this.used >= this.nodes.length && this.capacity >= this.maxNodes;
  }

  /** A new node for a key not present, at the MRU end. The caller evicts first when `full`. */
  insert(hi: number, lo: number): number {
    let n: number;
    if (this.free !== NIL) {
      n = this.free;
      this.free = this.nodes[n + CHAIN]!;
    } else {
      if (this.used >= this.nodes.length) this.grow();
      n = this.used;
      this.used += this.stride;
    }
    const nodes = this.nodes;
    const h = hi | 0;
    const l = lo | 0;
    nodes[n + HI] = h;
    nodes[n + LO] = l;
    const b = (l ^ h) & this.mask;
    nodes[n + CHAIN] = this.buckets[b]!;
    this.buckets[b] = n;
    nodes[n + PREV] = NIL;
    nodes[n + NEXT] = this.head;
    if (this.head !== NIL) nodes[this.head + PREV] = n;
    this.head = n;
    if (this.tail === NIL) this.tail = n;
    this.size++;
    return n;
  }

  /** Unlinks a node from its chain and the LRU list and frees it. */
  remove(n: number): void {
    const nodes = this.nodes;
    const b = (nodes[n + LO]! ^ nodes[n + HI]!) & this.mask;
    let p = this.buckets[b]!;
    if (p === n) this.buckets[b] = nodes[n + CHAIN]!;
    else {
      while (nodes[p + CHAIN] !== n) p = nodes[p + CHAIN]!;
      nodes[p + CHAIN] = nodes[n + CHAIN]!;
    }
    const pv = nodes[n + PREV]!;
    const nx = nodes[n + NEXT]!;
    if (pv !== NIL) nodes[pv + NEXT] = nx;
    else this.head = nx;
    if (nx !== NIL) nodes[nx + PREV] = pv;
    else this.tail = pv;
    nodes[n + CHAIN] = this.free;
    nodes[n + PREV] = FREE;
    this.free = n;
    this.size--;
  }

  touch(n: number): void {
    if (this.head === n) return;
    const nodes = this.nodes;
    const pv = nodes[n + PREV]!;
    const nx = nodes[n + NEXT]!;
    nodes[pv + NEXT] = nx;
    if (nx !== NIL) nodes[nx + PREV] = pv;
    else this.tail = pv;
    nodes[n + PREV] = NIL;
    nodes[n + NEXT] = this.head;
    nodes[this.head + PREV] = n;
    this.head = n;
  }

  /** The key of node `n`, high half. */
  hiOf(n: number): number {
    return this.nodes[n + HI]! >>> 0;
  }

  loOf(n: number): number {
    return this.nodes[n + LO]! >>> 0;
  }

  /** The next less recently used node. */
  nextOf(n: number): number {
    return this.nodes[n + NEXT]!;
  }

  private grow(): void {
    const cap = Math.min(this.maxNodes, Math.max(this.capacity + 1, Math.ceil(this.capacity * GROWTH)));
    this.nodes = resizeI32(this.nodes, cap * this.stride);
    this.capacity = cap;
    const nb = bucketCount(cap);
    if (nb !== this.buckets.length) {
      // Rehash the live nodes in record order (sequential memory; free ones are marked in PREV).
      const nodes = this.nodes;
      this.buckets = new Int32Array(nb).fill(NIL);
      this.mask = nb - 1;
      for (let n = 0; n < this.used; n += this.stride) {
        if (nodes[n + PREV] === FREE) continue;
        const b = (nodes[n + LO]! ^ nodes[n + HI]!) & this.mask;
        nodes[n + CHAIN] = this.buckets[b]!;
        this.buckets[b] = n;
      }
    }
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

/** Transition cache keys and values pack a stamp with an entry id or a set id below this bound. */
const PACK = 4_194_304;
/** Request-key record: the pool's words, then the entry set. */
const RK_SET = PAYLOAD;
const RK_STRIDE = PAYLOAD + 1;
/** Engine-key record: the pool's words, then the request key's halves. */
const EK_RHI = PAYLOAD;
const EK_RLO = PAYLOAD + 1;
const EK_STRIDE = PAYLOAD + 2;
const MAX_STAMP = 2 ** 30;
const MAX_TRANSITIONS = 1 << 18;
const MAX_BOUNDARIES = 1 << 16;

/** What changes for scoring where one entry set gives way to another. */
interface Boundary {
  readonly toStamp: number;
  readonly weightsVersion: number;
  readonly pods: Uint32Array;
  /** The server's best weight in the next set; NaN when it is not there. */
  readonly weights: Float64Array;
}

export class MemoryIndex implements KvBlockIndex {
  readonly backend = 'memory' as const;
  readonly podCacheSize: number;

  // Request keys: node → its entry set (the record's payload word).
  private readonly rk: KeyPool;

  // Entry sets, interned and shared by every key holding the same entries in the same order: set →
  // entry ids (most recently added first), its distinct servers, how many keys use it. Set 0 is empty.
  private readonly setEntries: (Uint32Array | null)[] = [new Uint32Array(0)];
  private readonly setPods: (Uint32Array | null)[] = [new Uint32Array(0)];
  private readonly setBest: (Float64Array | null)[] = [new Float64Array(0)];
  private readonly setWVer: number[] = [-1];
  private readonly setRef: number[] = [0];
  /** Unique over the index's life while a set lives (0 once freed): validates cached transitions. */
  private readonly setStamp: number[] = [1];
  private readonly setName: string[] = [''];
  private readonly setByName = new Map<string, number>([['', 0]]);
  private readonly setFree: number[] = [];
  private stamps = 1;
  /** (source stamp, entry id) → (target stamp, target set) for adding one entry to a set. */
  private readonly addTrans = new Map<number, number>();
  private readonly scratch: number[] = [];
  private enLive = 0;
  private lastEntries: readonly PodEntry[] | null = null;
  private lastIds: readonly number[] = [];

  // Engine keys: node → the last request key it maps to (the payload's two words); earlier ones
  // (1:many) in `ekMore`.
  private readonly ek: KeyPool;
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
  private podAllowed: Uint32Array = new Uint32Array(64);
  /** A server's weight now, and the block its current run of that weight began at. */
  private podW: Float64Array = new Float64Array(64);
  private podSeg: Uint32Array = new Uint32Array(64);
  /** Marks for set differences: a generation, and the weight there. */
  private podMark: Uint32Array = new Uint32Array(64);
  private podMarkW: Float64Array = new Float64Array(64);
  private markGen = 0;
  /** (stamp of a set, next set) → what changes between them, for scoring. */
  private readonly boundaries = new Map<number, Boundary>();
  private readonly touched: number[] = [];
  private gen = 0;
  private weightsFor: TierWeights | null = null;
  private entryWeight: Float64Array = new Float64Array(64);
  private weightsEntries = 0;
  private weightsVersion = 0;

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
    this.rk = new KeyPool(maxKeys, RK_STRIDE);
    this.ek = new KeyPool(maxKeys, EK_STRIDE);
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
      for (const id of this.setEntries[this.rk.nodes[n + RK_SET]!]!) {
        if (allowed !== 0 && this.podAllowed[this.entryPod[id]!] !== allowed) continue;
        here.push(this.entryList[id]!);
      }
      if (here.length === 0) break;
      out.push(here);
    }
    return out;
  }

  /**
   * Walks the prompt's keys once. Consecutive keys sharing one entry set form a run; a server's score
   * grows by its weight per block without being touched while its weight stays, so only the servers
   * that leave, or change weight, where one set gives way to the next are visited (the difference of
   * two sets is cached: a hot prompt crosses the same boundaries on every lookup).
   */
  score(keys: KeyList, weights: TierWeights, pods?: ReadonlySet<string>): Map<string, PrefixScore> {
    const result = new Map<string, PrefixScore>();
    const nKeys = keys.length >>> 1;
    if (nKeys === 0) return result;
    const rk = this.rk;
    const first = rk.find(keys[0]!, keys[1]!);
    if (first === NIL) return result;
    rk.touch(first);
    const allowed = this.allowedGen(pods);
    this.weights(weights);
    const gen = this.nextGen();
    const podGen = this.podGen;
    const blocks = this.podBlocks;
    const score = this.podScore;
    const podW = this.podW;
    const seg = this.podSeg;
    const touched = this.touched;
    touched.length = 0;
    let runSet = rk.nodes[first + RK_SET]!;
    const firstPods = this.setPods[runSet]!;
    const firstBest = this.bestWeights(runSet);
    for (let j = 0; j < firstPods.length; j++) {
      const pod = firstPods[j]!;
      if (allowed !== 0 && this.podAllowed[pod] !== allowed) continue;
      podGen[pod] = gen;
      seg[pod] = 0;
      score[pod] = 0;
      podW[pod] = firstBest[j]!;
      touched.push(pod);
    }
    let alive = touched.length;
    if (alive === 0) return result;
    let i = 1;
    for (; i < nKeys; i++) {
      const n = rk.find(keys[2 * i]!, keys[2 * i + 1]!);
      if (n === NIL) break;
      rk.touch(n);
      const s = rk.nodes[n + RK_SET]!;
      if (s === runSet) continue;
      alive -= this.cross(runSet, s, i, gen);
      runSet = s;
      if (alive === 0) break;
    }
    for (const pod of touched) {
      if (podGen[pod] === gen) {
        score[pod] = addRepeated(score[pod]!, podW[pod]!, i - seg[pod]!);
        blocks[pod] = i;
      }
      result.set(this.podNames[pod]!, { score: score[pod]!, blocks: blocks[pod]! });
    }
    return result;
  }

  add(engineKeys: KeyList | null, requestKeys: KeyList, entries: readonly PodEntry[]): void {
    const nR = requestKeys.length >>> 1;
    if (nR === 0 || entries.length === 0) return;
    const all = this.internAll(entries);
    const ids = all.length === 1 ? null : all;
    const single = all[0]!;
    let lastFrom = -1;
    let lastTo = 0;
    let lastToStamp = 0;
    for (let i = 0; i < nR; i++) {
      const n = this.requestNode(requestKeys[2 * i]!, requestKeys[2 * i + 1]!);
      const s = this.rk.nodes[n + RK_SET]!;
      let t: number;
      if (s === lastFrom && this.setStamp[lastTo] === lastToStamp) t = lastTo;
      else {
        t = ids === null ? this.addOne(s, single) : this.addMany(s, ids);
        lastFrom = s;
        lastTo = t;
        lastToStamp = this.setStamp[t]!;
      }
      if (t !== s) this.assign(n, s, t);
    }
    if (engineKeys === null) return;
    const nE = engineKeys.length >>> 1;
    if (nE === 0) return;
    if (nE === nR) {
      for (let i = 0; i < nR; i++) {
        this.mapEngineOne(
          engineKeys[2 * i]!,
          engineKeys[2 * i + 1]!,
          requestKeys[2 * i]!,
          requestKeys[2 * i + 1]!,
        );
      }
      return;
    }
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
    let ids: readonly number[];
    if (this.isLast(entries)) ids = this.lastIds;
    else {
      const known: number[] = [];
      for (const e of entries) {
        const id = this.entryIds.get(entryKey(e));
        if (id !== undefined) known.push(id);
      }
      if (known.length === 0) return;
      ids = known;
    }
    const memo = { from: -1, to: 0, toStamp: 0 };
    for (let i = 0; i < keys.length; i += 2) {
      const hi = keys[i]!;
      const lo = keys[i + 1]!;
      if (type === KeyType.Request) {
        this.evictRequest(hi, lo, ids, memo);
        continue;
      }
      const en = this.ek.find(hi, lo);
      if (en === NIL) continue;
      let allEmpty = true;
      const more = this.ekMore.size > 0 ? this.ekMore.get(en) : undefined;
      if (more !== undefined) {
        for (let k = 0; k < more.length; k += 2) {
          if (!this.evictRequest(more[k]!, more[k + 1]!, ids, memo)) allEmpty = false;
        }
      }
      if (!this.evictRequest(this.ek.nodes[en + EK_RHI]! >>> 0, this.ek.nodes[en + EK_RLO]! >>> 0, ids, memo))
        allEmpty = false;
      if (allEmpty) this.removeEngine(en);
    }
  }

  getRequestKey(engineHi: number, engineLo: number): readonly [number, number] | null {
    const n = this.ek.find(engineHi, engineLo);
    if (n === NIL) return null;
    this.ek.touch(n);
    return [this.ek.nodes[n + EK_RHI]! >>> 0, this.ek.nodes[n + EK_RLO]! >>> 0];
  }

  clear(pod: string): void {
    const pid = this.podIds.get(pod);
    if (pid === undefined) return;
    const ids: number[] = [];
    for (let id = 0; id < this.entryList.length; id++) if (this.entryPod[id] === pid) ids.push(id);
    const memo = new Map<number, number>();
    const rk = this.rk;
    for (let n = rk.head; n !== NIL;) {
      const next = rk.nextOf(n);
      const s = this.rk.nodes[n + RK_SET]!;
      const stamp = this.setStamp[s]!;
      let t = memo.get(stamp);
      if (t === undefined) {
        t = this.without(s, ids);
        memo.set(stamp, t);
      }
      if (t !== s) {
        this.assign(n, s, t);
        if (t === 0) rk.remove(n);
      }
      n = next;
    }
  }

  close(): void {}

  // ---- inspection ----

  countKeysByPod(): Map<string, number> {
    const out = new Map<string, number>();
    const seen = new Set<number>();
    for (let n = this.rk.head; n !== NIL; n = this.rk.nextOf(n)) {
      seen.clear();
      for (const id of this.setEntries[this.rk.nodes[n + RK_SET]!]!) {
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
    let setBytes = 0;
    for (let s = 0; s < this.setEntries.length; s++) {
      const e = this.setEntries[s];
      if (e !== null && e !== undefined) {
        setBytes += 160 + e.byteLength + this.setPods[s]!.byteLength + this.setBest[s]!.byteLength;
      }
    }
    const bytes =
      this.rk.nodes.byteLength +
      this.rk.buckets.byteLength +
      this.ek.nodes.byteLength +
      this.ek.buckets.byteLength +
      setBytes;
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
    for (let n = this.rk.head; n !== NIL; n = this.rk.nextOf(n)) {
      const entries: PodEntry[] = [];
      for (const id of this.setEntries[this.rk.nodes[n + RK_SET]!]!) entries.push(this.entryList[id]!);
      yield { hi: this.rk.hiOf(n), lo: this.rk.loOf(n), entries };
    }
  }

  // ---- internals ----

  /**
   * At block `at` the prompt goes from set `from` to set `to`: the servers still going that are not in
   * `to` stop there, and those whose best weight differs go on with the new one. Returns how many
   * stopped.
   */
  private cross(from: number, to: number, at: number, gen: number): number {
    const d = this.boundary(from, to);
    const dPods = d.pods;
    const dW = d.weights;
    const podGen = this.podGen;
    const score = this.podScore;
    const podW = this.podW;
    const seg = this.podSeg;
    let stopped = 0;
    for (let k = 0; k < dPods.length; k++) {
      const pod = dPods[k]!;
      if (podGen[pod] !== gen) continue;
      score[pod] = addRepeated(score[pod]!, podW[pod]!, at - seg[pod]!);
      seg[pod] = at;
      const w = dW[k]!;
      if (w !== w) {
        // NaN: not in `to`.
        this.podBlocks[pod] = at;
        podGen[pod] = 0;
        stopped++;
      } else podW[pod] = w;
    }
    return stopped;
  }

  /** The servers of `from` that are not in `to` (weight NaN) or weigh differently there (cached). */
  private boundary(from: number, to: number): Boundary {
    const cacheable = to < PACK;
    const key = this.setStamp[from]! * PACK + to;
    if (cacheable) {
      const c = this.boundaries.get(key);
      if (c !== undefined && c.toStamp === this.setStamp[to] && c.weightsVersion === this.weightsVersion) {
        return c;
      }
    }
    const toPods = this.setPods[to]!;
    const toBest = this.bestWeights(to);
    if (++this.markGen === 0xffffffff) {
      this.podMark.fill(0);
      this.markGen = 1;
    }
    const mark = this.markGen;
    for (let j = 0; j < toPods.length; j++) {
      this.podMark[toPods[j]!] = mark;
      this.podMarkW[toPods[j]!] = toBest[j]!;
    }
    const fromPods = this.setPods[from]!;
    const fromBest = this.bestWeights(from);
    const pods: number[] = [];
    const ws: number[] = [];
    for (let j = 0; j < fromPods.length; j++) {
      const pod = fromPods[j]!;
      if (this.podMark[pod] !== mark) {
        pods.push(pod);
        ws.push(NaN);
      } else if (this.podMarkW[pod] !== fromBest[j]) {
        pods.push(pod);
        ws.push(this.podMarkW[pod]!);
      }
    }
    const b: Boundary = {
      toStamp: this.setStamp[to]!,
      weightsVersion: this.weightsVersion,
      pods: Uint32Array.from(pods),
      weights: Float64Array.from(ws),
    };
    if (cacheable) {
      if (this.boundaries.size >= MAX_BOUNDARIES) this.boundaries.clear();
      this.boundaries.set(key, b);
    }
    return b;
  }

  /** The best weight of each server of a set, for the current weights. */
  private bestWeights(set: number): Float64Array {
    const best = this.setBest[set]!;
    if (this.setWVer[set] === this.weightsVersion) return best;
    const pods = this.setPods[set]!;
    best.fill(-Infinity);
    for (const id of this.setEntries[set]!) {
      const j = pods.indexOf(this.entryPod[id]!);
      const w = this.entryWeight[id]!;
      if (w > best[j]!) best[j] = w;
    }
    this.setWVer[set] = this.weightsVersion;
    return best;
  }

  /** The set with `id` added at the front (or moved there), keeping `podCacheSize` entries. */
  private addOne(s: number, id: number): number {
    const c = this.setEntries[s]!;
    if (c.length > 0 && c[0] === id) return s;
    const cacheable = id < PACK;
    const key = this.setStamp[s]! * PACK + id;
    if (cacheable) {
      const v = this.addTrans.get(key);
      if (v !== undefined) {
        const t = v % PACK;
        if (this.setStamp[t] === (v - t) / PACK) return t;
      }
    }
    const sc = this.scratch;
    sc.length = 0;
    sc.push(id);
    for (let j = 0; j < c.length && sc.length < this.podCacheSize; j++) if (c[j] !== id) sc.push(c[j]!);
    const t = this.internSet(sc);
    if (cacheable && t < PACK) {
      if (this.addTrans.size >= MAX_TRANSITIONS) this.addTrans.clear();
      this.addTrans.set(key, this.setStamp[t]! * PACK + t);
    }
    return t;
  }

  private addMany(s: number, ids: readonly number[]): number {
    const sc = this.scratch;
    sc.length = 0;
    for (const id of this.setEntries[s]!) sc.push(id);
    for (const id of ids) {
      const j = sc.indexOf(id);
      if (j >= 0) sc.splice(j, 1);
      sc.unshift(id);
      if (sc.length > this.podCacheSize) sc.length = this.podCacheSize;
    }
    return this.internSet(sc);
  }

  /** The set without `ids`. */
  private without(s: number, ids: readonly number[]): number {
    const c = this.setEntries[s]!;
    const sc = this.scratch;
    sc.length = 0;
    for (const id of c) if (!ids.includes(id)) sc.push(id);
    return sc.length === c.length ? s : this.internSet(sc);
  }

  /** The set holding exactly `content`, made if new (with no key using it yet). */
  private internSet(content: readonly number[]): number {
    const name = content.join(',');
    const found = this.setByName.get(name);
    if (found !== undefined) return found;
    const t = this.setFree.length > 0 ? this.setFree.pop()! : this.setEntries.length;
    const entries = Uint32Array.from(content);
    const pods: number[] = [];
    for (const id of entries) {
      const pod = this.entryPod[id]!;
      if (!pods.includes(pod)) pods.push(pod);
    }
    if (++this.stamps >= MAX_STAMP) this.restamp();
    this.setEntries[t] = entries;
    this.setPods[t] = Uint32Array.from(pods);
    this.setBest[t] = new Float64Array(pods.length);
    this.setWVer[t] = -1;
    this.setRef[t] = 0;
    this.setStamp[t] = this.stamps;
    this.setName[t] = name;
    this.setByName.set(name, t);
    return t;
  }

  /** Stamps run out: forget every cached transition and stamp the live sets afresh. */
  private restamp(): void {
    this.addTrans.clear();
    this.boundaries.clear();
    this.stamps = 1;
    for (let s = 0; s < this.setEntries.length; s++) {
      if (this.setEntries[s] !== null) this.setStamp[s] = ++this.stamps;
    }
    this.stamps++;
  }

  /** Key `n` moves from set `s` to set `t`. */
  private assign(n: number, s: number, t: number): void {
    this.rk.nodes[n + RK_SET] = t;
    this.enLive += this.setEntries[t]!.length - this.setEntries[s]!.length;
    if (t !== 0) this.setRef[t]!++;
    if (s !== 0 && --this.setRef[s]! === 0) this.freeSet(s);
  }

  private freeSet(s: number): void {
    this.setByName.delete(this.setName[s]!);
    this.setEntries[s] = null;
    this.setPods[s] = null;
    this.setBest[s] = null;
    this.setStamp[s] = 0;
    this.setName[s] = '';
    this.setFree.push(s);
  }

  private requestNode(hi: number, lo: number): number {
    const rk = this.rk;
    let n = rk.find(hi, lo);
    if (n !== NIL) {
      rk.touch(n);
      return n;
    }
    if (rk.full) this.evictLruRequest();
    n = rk.insert(hi, lo);
    this.rk.nodes[n + RK_SET] = 0;
    return n;
  }

  private evictLruRequest(): void {
    const n = this.rk.tail;
    this.assign(n, this.rk.nodes[n + RK_SET]!, 0);
    this.rk.remove(n);
    this.evicted++;
  }

  /** Removes entries from a request key, and the key once empty; returns whether it is gone. */
  private evictRequest(
    hi: number,
    lo: number,
    ids: readonly number[],
    memo: { from: number; to: number; toStamp: number },
  ): boolean {
    const n = this.rk.find(hi, lo);
    if (n === NIL) return true;
    const s = this.rk.nodes[n + RK_SET]!;
    let t: number;
    if (s === memo.from && this.setStamp[memo.to] === memo.toStamp) t = memo.to;
    else {
      t = this.without(s, ids);
      memo.from = s;
      memo.to = t;
      memo.toStamp = this.setStamp[t]!;
    }
    if (t !== s) this.assign(n, s, t);
    if (t !== 0) return false;
    this.rk.remove(n);
    return true;
  }

  /** Maps an engine key to one request key, replacing what it had. */
  private mapEngineOne(hi: number, lo: number, rHi: number, rLo: number): void {
    const ek = this.ek;
    let n = ek.find(hi, lo);
    if (n !== NIL) {
      ek.touch(n);
      if (this.ekMore.size > 0) this.ekMore.delete(n);
    } else {
      if (ek.full) this.removeEngine(ek.tail);
      n = ek.insert(hi, lo);
    }
    ek.nodes[n + EK_RHI] = rHi;
    ek.nodes[n + EK_RLO] = rLo;
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
    ek.nodes[n + EK_RHI] = requestKeys[2 * lastR]!;
    ek.nodes[n + EK_RLO] = requestKeys[2 * lastR + 1]!;
    if (more !== null) this.ekMore.set(n, Uint32Array.from(more));
  }

  private removeEngine(n: number): void {
    if (this.ekMore.size > 0) this.ekMore.delete(n);
    this.ek.remove(n);
  }

  /**
   * The entry ids of `entries`, interned; the last list is remembered, as a server's events pass the
   * same entries again and again (checked field by field, not trusted by identity).
   */
  private internAll(entries: readonly PodEntry[]): readonly number[] {
    if (this.isLast(entries)) return this.lastIds;
    const ids = entries.map((e) => this.intern(e));
    this.lastEntries = entries;
    this.lastIds = ids;
    return ids;
  }

  /** Whether `entries` are those `lastIds` were interned from. */
  private isLast(entries: readonly PodEntry[]): boolean {
    const last = this.lastIds;
    if (entries !== this.lastEntries || entries.length !== last.length) return false;
    for (let k = 0; k < last.length; k++) {
      const e = entries[k]!;
      const x = this.entryList[last[k]!]!;
      if (
        e.pod !== x.pod ||
        e.tier !== x.tier ||
        e.speculative !== x.speculative ||
        e.groupIdx !== x.groupIdx
      ) {
        return false;
      }
    }
    return true;
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
        this.podAllowed = resizeU32(this.podAllowed, cap);
        this.podW = resizeF64(this.podW, cap);
        this.podSeg = resizeU32(this.podSeg, cap);
        this.podMark = resizeU32(this.podMark, cap);
        this.podMarkW = resizeF64(this.podMarkW, cap);
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
      this.weightsVersion++;
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

/**
 * `s + w + w + …` (k times) as repeated addition rounds it: by one multiplication when every partial
 * sum is exact (both on a grid of 2^-20 and small), else by adding.
 */
function addRepeated(s: number, w: number, k: number): number {
  if (k === 1) return s + w;
  const gw = w * 1_048_576;
  const gs = s * 1_048_576;
  if (gw === Math.floor(gw) && gs === Math.floor(gs) && Math.abs(s) + k * Math.abs(w) < 4_294_967_296) {
    return s + k * w;
  }
  for (let j = 0; j < k; j++) s += w;
  return s;
}

function entryKey(e: PodEntry): string {
  return `${e.pod}\u0000${e.tier}\u0000${e.speculative ? 1 : 0}\u0000${e.groupIdx ?? ''}`;
}
