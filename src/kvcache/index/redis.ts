/**
 * The Redis (or Valkey) backend of the KV-block index: the shared state of several EPP replicas, in
 * llm-d's exact layout (`redis-layout.ts`), so Go replicas can share it too. Writes follow upstream
 * command for command (Add = ZADD + HSET in one pipeline; Evict = HDEL then the prune scripts; Clear =
 * SCAN, HDEL, prune). Reads add two things upstream lacks: `score` walks the prefix server-side in one
 * EVALSHA (`redis-scripts.ts`), so a 512-block prompt costs one round trip and a few hundred bytes back;
 * and a client-side cache of the keys it walked, kept coherent by Redis's client tracking
 * (`redis-tracking.ts`), so a prefix scored again is walked in process, without a round trip, until
 * any client changes one of its keys.
 *
 * Redis going away must not take the EPP with it: commands are never queued while disconnected and
 * are bounded by a timeout, so a call fails fast with `KvIndexUnavailableError`; the client keeps
 * reconnecting on its own, `available` says whether it is connected and answering now (the EPP
 * reports it and falls back; after a command timed out it stays false, calls failing at once, until
 * a PING is answered), and everything works again once Redis is back, scripts reloaded on NOSCRIPT.
 */
import { isIP } from 'node:net';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { ServiceUnavailableError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { KeyList } from '../keys.js';
import {
  KeyType,
  scoreLookup,
  tierWeight,
  type KvBlockIndex,
  type PodEntry,
  type PrefixScore,
  type TierWeights,
} from './index.js';
import { parseRedisAddress, type RedisAddress } from './redis-address.js';
import {
  ENGINE_KEY_PREFIX,
  decimalKey,
  decodePodField,
  encodePodField,
  engineKeyName,
  parseDecimalKey,
} from './redis-layout.js';
import { FieldCache, type FieldCacheStats } from './redis-field-cache.js';
import { FrameWriter } from './redis-frame.js';
import { RedisTracking } from './redis-tracking.js';
import {
  COUNT_KEYS,
  LuaScript,
  PRUNE_ENGINE_KEY,
  PRUNE_REQUEST_KEY,
  SCORE,
  isNoScript,
} from './redis-scripts.js';

/** The index's Redis cannot be reached (down, restarting, too slow): the caller should fall back. */
export class KvIndexUnavailableError extends ServiceUnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

export interface RedisIndexConfig {
  /** llm-d's `redisConfig.address`: `redis://`, `rediss://`, `valkey://`, `valkeys://`, `unix://` or `host:port`. */
  readonly address: string;
  /**
   * A command with no reply by then fails (a hung or overloaded Redis), and the index turns
   * unavailable until Redis answers a PING. Default 1000 ms.
   */
  readonly commandTimeoutMs?: number;
  /** A connection attempt taking longer is abandoned and retried. Default 2000 ms (or the address's `dial_timeout`). */
  readonly connectTimeoutMs?: number;
  /** Reconnection backs off exponentially from 50 ms up to this. Default 1000 ms. */
  readonly maxReconnectDelayMs?: number;
  /**
   * Request keys the client-side cache holds (their field names, a few hundred bytes each); 0 turns
   * it off. It needs Redis ≥ 6 (RESP3 and client tracking) and one more connection. Default 100,000.
   */
  readonly clientCacheKeys?: number;
  readonly logger?: Logger;
}

/** Distinct field strings decoded once and kept before the memo starts over. */
const DECODED_LIMIT = 65_536;

const SCAN_BATCH = 1024;
/** Keys per countKeysByPod step: a few milliseconds of Redis time, so scores in between wait little. */
const COUNT_BATCH = 512;
const DISCONNECT_TIMEOUT_MS = 20;
/** ioredis's error for a command with no reply within `commandTimeout`. */
const COMMAND_TIMED_OUT = 'Command timed out';

type PipelineResult = [Error | null, unknown][];

export class RedisIndex implements KvBlockIndex {
  readonly backend = 'redis' as const;
  readonly address: RedisAddress;
  private readonly client: Redis;
  private readonly log: Logger;
  private readonly listeners = new Set<(available: boolean) => void>();
  private readonly pruneRequest = new LuaScript(PRUNE_REQUEST_KEY);
  private readonly pruneEngine = new LuaScript(PRUNE_ENGINE_KEY);
  private readonly scoreScript = new LuaScript(SCORE);
  private readonly countKeys = new LuaScript(COUNT_KEYS);
  private readonly frame = new FrameWriter();
  private readonly fieldCache: FieldCache | null;
  private readonly tracking: RedisTracking | null;
  /** Keys being read into the cache, so concurrent misses of one prompt read each once. */
  private readonly warming = new Set<string>();
  private decoded = new Map<string, PodEntry | null>();
  /**
   * Bumped by each of this process's writes: a cache read issued before one may answer after it,
   * with what the write replaced, so it must not fill the cache (Redis's invalidation for the write
   * would remove it, but only once it arrives; our own writes are visible to our next score at once).
   */
  private writeGen = 0;
  private readonly maxDelayMs: number;
  private up = false;
  private closed = false;
  /** A command timed out on an open connection: PINGs run until Redis answers again. */
  private probing = false;
  private lastError: string | null = null;

  /**
   * Connects in the background: the index is usable once `available` (see `connect` to wait for
   * it). An unreachable Redis is not an error here; calls fail with KvIndexUnavailableError until
   * it answers. A malformed address throws a ConfigError.
   */
  constructor(config: RedisIndexConfig) {
    this.address = parseRedisAddress(config.address);
    this.log = (config.logger ?? silentLogger()).child({ kv_index: 'redis', address: this.address.display });
    const maxDelay = (this.maxDelayMs = config.maxReconnectDelayMs ?? 1000);
    const a = this.address;
    const options: RedisOptions = {
      ...(a.path !== undefined ? { path: a.path } : { host: a.host!, port: a.port! }),
      // SNI carries host names only (RFC 6066): none for an IP address.
      ...(a.tls
        ? {
            tls: { ...(isIP(a.host!) === 0 ? { servername: a.host! } : {}), rejectUnauthorized: a.verifyTls },
          }
        : {}),
      ...(a.username !== undefined ? { username: a.username } : {}),
      ...(a.password !== undefined ? { password: a.password } : {}),
      ...(a.clientName !== undefined ? { connectionName: a.clientName } : {}),
      db: a.db,
      // RESP2 works with every Redis and Valkey; nothing here needs RESP3's types.
      protocol: 2,
      // Fail fast instead of queueing: a command issued while disconnected errors at once, one in
      // flight when the connection drops errors at once too, and none waits longer than the timeout.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: config.commandTimeoutMs ?? 1000,
      connectTimeout: config.connectTimeoutMs ?? a.connectTimeoutMs ?? 2000,
      // Never give up reconnecting: Redis coming back must bring the index back with it.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times - 1, 10), maxDelay),
      disableClientInfo: true,
      // ioredis's disconnect() arms a timer that destroys the socket if it has not closed by then;
      // on a socket that had already closed (Redis unreachable) nothing clears it, and it would
      // hold the process open that long after close(). Keep it short.
      disconnectTimeout: DISCONNECT_TIMEOUT_MS,
    };
    this.client = new Redis(options);
    // Without an 'error' listener ioredis reports every failed reconnect as unhandled; the state
    // changes are logged once each below instead.
    this.client.on('error', (err: Error) => {
      this.lastError = err.message;
      this.log.debug({ err: err.message }, 'redis connection error');
    });
    this.client.on('ready', () => this.setUp(true));
    this.client.on('close', () => this.setUp(false));
    this.client.on('end', () => this.setUp(false));
    const cacheKeys = config.clientCacheKeys ?? 100_000;
    this.fieldCache = cacheKeys > 0 ? new FieldCache(cacheKeys) : null;
    this.tracking =
      this.fieldCache === null
        ? null
        : new RedisTracking({
            address: a,
            cache: this.fieldCache,
            connectTimeoutMs: options.connectTimeout!,
            commandTimeoutMs: options.commandTimeout!,
            maxReconnectDelayMs: maxDelay,
            logger: this.log,
          });
  }

  /** The client-side cache's counters; null when it is off. */
  clientCacheStats(): FieldCacheStats | null {
    return this.fieldCache?.stats() ?? null;
  }

  /** Whether the client-side cache is connected and filling (tracking on). */
  get clientCacheReady(): boolean {
    return this.tracking?.ready ?? false;
  }

  /**
   * Like upstream's constructor: connect and wait until Redis answers, or fail with
   * KvIndexUnavailableError (and close). Takes the whole config, or the address and the rest.
   */
  static async connect(
    config: RedisIndexConfig | string,
    options: Omit<RedisIndexConfig, 'address'> & { readonly timeoutMs?: number } = {},
  ): Promise<RedisIndex> {
    const c = typeof config === 'string' ? { ...options, address: config } : { ...options, ...config };
    const index = new RedisIndex(c);
    try {
      await index.whenAvailable(options.timeoutMs ?? 5000);
    } catch (err) {
      await index.close();
      throw err;
    }
    return index;
  }

  /** Whether Redis is connected and answering now (never after close()). */
  get available(): boolean {
    return this.up && !this.closed;
  }

  /** Calls `listener` on every change of `available`; returns the unsubscribe function. */
  onAvailability(listener: (available: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once `available`; rejects with KvIndexUnavailableError after `timeoutMs`. */
  whenAvailable(timeoutMs: number): Promise<void> {
    if (this.up) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(this.unavailable('connect', `not connected after ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onAvailability((up) => {
        if (!up) return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  private setUp(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    if (up) this.log.info('redis index available');
    else if (!this.closed) this.log.warn({ err: this.lastError }, 'redis index unavailable, reconnecting');
    for (const l of this.listeners) {
      try {
        l(up);
      } catch (err) {
        this.log.error({ err: String(err) }, 'availability listener threw');
      }
    }
  }

  private unavailable(op: string, why: string, cause?: unknown): KvIndexUnavailableError {
    return new KvIndexUnavailableError(`KV-block index (Redis ${this.address.display}): ${op}: ${why}`, {
      cause,
    });
  }

  /** Runs `fn` against Redis; any failure to get an answer becomes a KvIndexUnavailableError. */
  private async call<T>(op: string, fn: (client: Redis) => Promise<T>): Promise<T> {
    if (this.closed) throw this.unavailable(op, 'the index is closed');
    if (!this.up) {
      throw this.unavailable(
        op,
        `${this.probing ? 'not answering' : 'not connected'}${this.lastError ? ` (${this.lastError})` : ''}`,
      );
    }
    try {
      return await fn(this.client);
    } catch (err) {
      // A pipeline reports a timeout in its results: the caller wraps it, the cause tells.
      const cause = err instanceof KvIndexUnavailableError ? (err as { cause?: unknown }).cause : err;
      if (cause instanceof Error && cause.message === COMMAND_TIMED_OUT) this.unresponsive();
      if (err instanceof KvIndexUnavailableError) throw err;
      throw this.unavailable(op, err instanceof Error ? err.message : String(err), err);
    }
  }

  /**
   * A command timed out while the connection stays open: Redis hangs (stopped, swapping, a long
   * script). Rather than let every call wait the whole timeout, the index turns unavailable (calls
   * fail at once) and PINGs, backing off, until Redis answers; a dropped connection hands over to
   * reconnection, whose 'ready' brings it back.
   */
  private unresponsive(): void {
    if (this.probing || this.closed || !this.up) return;
    this.probing = true;
    this.lastError = 'a command timed out';
    this.setUp(false);
    let delay = 50;
    const probe = (): void => {
      if (this.closed || this.client.status !== 'ready') {
        this.probing = false;
        return;
      }
      this.client.ping().then(
        () => {
          this.probing = false;
          if (!this.closed && this.client.status === 'ready') this.setUp(true);
        },
        () => {
          setTimeout(probe, delay).unref();
          delay = Math.min(delay * 2, this.maxDelayMs);
        },
      );
    };
    probe();
  }

  /** A pipeline's results, or the error that kept it from running. */
  private static async exec(pipe: ReturnType<Redis['pipeline']>): Promise<PipelineResult> {
    const res = (await pipe.exec()) as PipelineResult | null;
    if (res === null) throw new Error('pipeline aborted');
    return res;
  }

  /**
   * A reply error that is about one key's data (a key of another type sharing the namespace), not
   * about the connection: it counts as "no entries" there, as upstream's Lookup treats it.
   */
  private static dataError(err: Error | null): boolean {
    return err !== null && err instanceof ReplyError && err.message.startsWith('WRONGTYPE');
  }

  async lookup(keys: KeyList, pods?: ReadonlySet<string>): Promise<PodEntry[][]> {
    const n = keys.length >>> 1;
    // An empty filter admits no pod (the interface's "only those of `pods`", as the memory index does).
    if (n === 0 || pods?.size === 0) return [];
    const res = await this.call('lookup', async (c) => {
      const pipe = c.pipeline();
      for (let i = 0; i < n; i++) pipe.hkeys(decimalKey(keys[2 * i]!, keys[2 * i + 1]!));
      const r = await RedisIndex.exec(pipe);
      for (const [err] of r) if (err !== null && !RedisIndex.dataError(err)) throw err;
      return r;
    });
    const filter = pods ?? null;
    // The same few fields repeat on every block of a prompt: decode each once.
    const decoded = new Map<string, PodEntry | null>();
    const out: PodEntry[][] = [];
    for (const [err, fields] of res) {
      // Only data errors are left: a key of another type holds no entry.
      if (err !== null) break;
      const entries: PodEntry[] = [];
      for (const f of fields as string[]) {
        let e = decoded.get(f);
        if (e === undefined) {
          e = decodePodField(f);
          decoded.set(f, e);
        }
        if (e !== null && (filter === null || filter.has(e.pod))) entries.push(e);
      }
      if (entries.length === 0) break;
      out.push(entries);
    }
    return out;
  }

  async score(
    keys: KeyList,
    weights: TierWeights,
    pods?: ReadonlySet<string>,
  ): Promise<Map<string, PrefixScore>> {
    const n = keys.length >>> 1;
    if (n === 0 || pods?.size === 0) return new Map();
    const tiers = Object.entries(weights);
    // A weight Lua could not order as JS does (NaN, ±Infinity): score on this side instead.
    for (const [, w] of tiers)
      if (!Number.isFinite(w)) return scoreLookup(await this.lookup(keys, pods), weights);
    const filter = pods ?? null;
    let missAt = -1;
    if (this.tracking?.ready && this.up && !this.closed) {
      const local = this.scoreCached(keys, weights, filter);
      if (typeof local !== 'number') return local;
      missAt = local;
    }
    // EVALSHA sha numKeys key… nWeights (tier weight)… nPods pod…
    const f = this.frame.begin(3 + n + 1 + 2 * tiers.length + 1 + (filter === null ? 0 : filter.size));
    f.arg('EVALSHA').arg(this.scoreScript.sha).arg(String(n));
    for (let i = 0; i < n; i++) f.key(keys[2 * i]!, keys[2 * i + 1]!);
    f.arg(String(tiers.length));
    for (const [tier, w] of tiers) f.arg(tier).arg(String(w));
    f.arg(String(filter === null ? 0 : filter.size));
    if (filter !== null) for (const p of filter) f.arg(p);
    const frame = f.finish();

    const reply = await this.call('score', (c) => this.scoreScript.runFrame(c, frame));
    if (!Array.isArray(reply) || (reply[0] !== 0 && reply[0] !== 1)) {
      throw this.unavailable('score', 'unexpected reply from the score script');
    }
    // A field the script does not parse itself: the tolerant decoder on this side decides.
    if (reply[0] === 1) {
      const perKey = await this.lookup(keys, pods);
      if (missAt >= 0) this.warm(keys, missAt, Math.min(n, perKey.length + 1));
      return scoreLookup(perKey, weights);
    }
    // The walk read keys [0, walked] (the last one: where it stopped): the next walk of this prefix
    // needs just those in the cache.
    if (missAt >= 0) this.warm(keys, missAt, Math.min(n, walkedBlocks(reply as unknown[]) + 1));
    return scoreRuns(reply as unknown[], tiers);
  }

  /**
   * `score` from the client-side cache: the same walk as scoreLookup, block by block in the same
   * order (so the same doubles), or the index of the first key the cache lacks.
   */
  private scoreCached(
    keys: KeyList,
    weights: TierWeights,
    filter: ReadonlySet<string> | null,
  ): Map<string, PrefixScore> | number {
    const cache = this.fieldCache!;
    const n = keys.length >>> 1;
    const active = new Map<string, { score: number; blocks: number }>();
    const best = new Map<string, number>();
    let prev: readonly string[] | null = null;
    for (let i = 0; i < n; i++) {
      const fields = cache.get(decimalKey(keys[2 * i]!, keys[2 * i + 1]!));
      if (fields === undefined) return i;
      // Along a shared prefix every key holds the same fields: the per-pod best tier carries over.
      if (prev === null || !sameFields(fields, prev)) {
        best.clear();
        for (const f of fields) {
          const e = this.decodeField(f);
          if (e === null || (filter !== null && !filter.has(e.pod))) continue;
          const w = tierWeight(weights, e.tier);
          const b = best.get(e.pod);
          if (b === undefined || w > b) best.set(e.pod, w);
        }
        prev = fields;
      }
      let any = false;
      if (i === 0) {
        for (const [pod, w] of best) active.set(pod, { score: w, blocks: 1 });
        any = best.size > 0;
      } else {
        for (const [pod, s] of active) {
          if (s.blocks !== i) continue;
          const w = best.get(pod);
          if (w === undefined) continue;
          s.score += w;
          s.blocks++;
          any = true;
        }
      }
      if (!any) break;
    }
    return active;
  }

  private decodeField(f: string): PodEntry | null {
    let e = this.decoded.get(f);
    if (e === undefined) {
      e = decodePodField(f);
      if (this.decoded.size >= DECODED_LIMIT) this.decoded = new Map();
      this.decoded.set(f, e);
    }
    return e;
  }

  /** Reads keys [from, to) into the client-side cache in the background (those not there yet). */
  private warm(keys: KeyList, from: number, to: number): void {
    const tracking = this.tracking;
    const cache = this.fieldCache;
    if (tracking === null || cache === null || !tracking.ready) return;
    const names: string[] = [];
    for (let i = from; i < to; i++) {
      const name = decimalKey(keys[2 * i]!, keys[2 * i + 1]!);
      if (cache.has(name) || this.warming.has(name)) continue;
      this.warming.add(name);
      names.push(name);
    }
    if (names.length === 0) return;
    const done = (): void => {
      for (const name of names) this.warming.delete(name);
    };
    const gen = this.writeGen;
    tracking
      .warm(names, () => this.writeGen === gen)
      .then(done, (err: Error) => {
        done();
        this.log.debug({ err: err.message }, 'client cache: read failed');
      });
  }

  /** This process's own writes: drop the keys now rather than when Redis's invalidation arrives. */
  private forget(names: readonly string[]): void {
    const cache = this.fieldCache;
    if (cache === null) return;
    this.writeGen++;
    if (cache.size > 0) cache.invalidate(names);
  }

  async add(engineKeys: KeyList | null, requestKeys: KeyList, entries: readonly PodEntry[]): Promise<void> {
    const nr = requestKeys.length >>> 1;
    if (nr === 0 || entries.length === 0) return;
    const requestNames = new Array<string>(nr);
    for (let i = 0; i < nr; i++) requestNames[i] = decimalKey(requestKeys[2 * i]!, requestKeys[2 * i + 1]!);
    const fields: string[] = [];
    for (const e of entries) fields.push(encodePodField(e), '');
    this.forget(requestNames);
    await this.call('add', async (c) => {
      const pipe = c.pipeline();
      if (engineKeys !== null) {
        for (const [engine, members] of engineMapping(engineKeys, requestNames)) {
          // Score = position within this engine key's list: the highest is the last mapped key.
          const zargs: string[] = [];
          for (let j = 0; j < members.length; j++) zargs.push(String(j), members[j]!);
          pipe.zadd(engine, ...zargs);
        }
      }
      for (const name of requestNames) pipe.hset(name, ...fields);
      const res = await RedisIndex.exec(pipe);
      // A name held by a key of another type (not ours) cannot take the entry: skipped, as a
      // lookup skips it.
      for (const [err] of res) if (err !== null && !RedisIndex.dataError(err)) throw err;
    });
  }

  async evict(type: KeyType, keys: KeyList, entries: readonly PodEntry[]): Promise<void> {
    const n = keys.length >>> 1;
    if (n === 0 || entries.length === 0) return;
    const fields = entries.map(encodePodField);
    await this.call('evict', async (c) => {
      // Per key, upstream's sequence: HDEL from each of its request keys, prune each, then (engine
      // keys) prune the mapping. One pipeline keeps that order on the server in one round trip.
      const groups: { engine: string | null; requests: string[] }[] = [];
      if (type === KeyType.Request) {
        for (let i = 0; i < n; i++) {
          groups.push({ engine: null, requests: [decimalKey(keys[2 * i]!, keys[2 * i + 1]!)] });
        }
      } else {
        const lookup = c.pipeline();
        const engines: string[] = [];
        for (let i = 0; i < n; i++) {
          const name = engineKeyName(keys[2 * i]!, keys[2 * i + 1]!);
          engines.push(name);
          lookup.zrange(name, '0', '-1');
        }
        const res = await RedisIndex.exec(lookup);
        for (let i = 0; i < n; i++) {
          const [err, members] = res[i]!;
          if (err !== null) {
            if (RedisIndex.dataError(err)) continue;
            throw err;
          }
          // Only well-formed members name request keys; an unknown engine key maps to none (no-op).
          const requests = (members as string[]).filter((m) => parseDecimalKey(m) !== null);
          if (requests.length > 0) groups.push({ engine: engines[i]!, requests });
        }
      }
      if (groups.length === 0) return;
      for (const g of groups) this.forget(g.requests);
      await this.runEvictions(c, groups, fields);
    });
  }

  private async runEvictions(
    c: Redis,
    groups: readonly { engine: string | null; requests: string[] }[],
    fields: readonly string[],
  ): Promise<void> {
    const pipe = c.pipeline();
    const prunes: { script: LuaScript; keys: string[] }[] = [];
    const at: number[] = [];
    let idx = 0;
    const prune = (script: LuaScript, keys: string[]): void => {
      pipe.evalsha(script.sha, keys.length, ...keys);
      prunes.push({ script, keys });
      at.push(idx++);
    };
    for (const g of groups) {
      for (const r of g.requests) {
        pipe.hdel(r, ...fields);
        idx++;
      }
      for (const r of g.requests) prune(this.pruneRequest, [r]);
      if (g.engine !== null) prune(this.pruneEngine, [g.engine, ...g.requests]);
    }
    const res = await RedisIndex.exec(pipe);
    // After a Redis restart or SCRIPT FLUSH the prunes answer NOSCRIPT: load and run them again,
    // in order (each is a check-then-delete, safe to repeat).
    let retry = false;
    for (let i = 0; i < res.length; i++) {
      const err = res[i]![0];
      if (err === null || RedisIndex.dataError(err)) continue;
      if (isNoScript(err)) retry = true;
      else throw err;
    }
    if (!retry) return;
    for (let k = 0; k < prunes.length; k++) {
      const err = res[at[k]!]![0];
      if (err !== null && isNoScript(err)) await prunes[k]!.script.run(c, prunes[k]!.keys);
    }
  }

  async getRequestKey(engineHi: number, engineLo: number): Promise<readonly [number, number] | null> {
    const top = await this.call('getRequestKey', (c) =>
      // An engine name held by a key of another type maps to nothing.
      c.zrevrange(engineKeyName(engineHi, engineLo), 0, 0).catch((err: Error) => {
        if (RedisIndex.dataError(err)) return [] as string[];
        throw err;
      }),
    );
    return top.length === 0 ? null : parseDecimalKey(top[0]!);
  }

  async clear(pod: string): Promise<void> {
    let removed = 0;
    this.writeGen++;
    this.fieldCache?.flush();
    await this.call('clear', async (c) => {
      let cursor = '0';
      do {
        const [next, found] = await c.scan(cursor, 'COUNT', SCAN_BATCH);
        cursor = next;
        const names = found.filter((k) => !k.startsWith(ENGINE_KEY_PREFIX));
        if (names.length === 0) continue;
        const read = c.pipeline();
        for (const k of names) read.hkeys(k);
        const res = await RedisIndex.exec(read);
        const write = c.pipeline();
        const pruned: string[] = [];
        for (let i = 0; i < names.length; i++) {
          const [err, fields] = res[i]!;
          if (err !== null) {
            // Another application's key of another type: not ours to clear.
            if (RedisIndex.dataError(err)) continue;
            throw err;
          }
          const stale = (fields as string[]).filter((f) => decodePodField(f)?.pod === pod);
          if (stale.length === 0) continue;
          write.hdel(names[i]!, ...stale);
          write.evalsha(this.pruneRequest.sha, 1, names[i]!);
          pruned.push(names[i]!);
          removed += stale.length;
        }
        if (pruned.length === 0) continue;
        const wres = await RedisIndex.exec(write);
        for (let i = 0; i < wres.length; i++) {
          const err = wres[i]![0];
          if (err === null || RedisIndex.dataError(err)) continue;
          if (!isNoScript(err)) throw err;
          await this.pruneRequest.run(c, [pruned[(i - 1) / 2]!]);
        }
      } while (cursor !== '0');
    });
    this.log.info({ pod, removed }, 'cleared pod from the index');
  }

  /**
   * Per server, the request keys holding a confirmed entry of it (any tier or group). Walks the
   * keyspace in small SCAN steps, each one EVALSHA (`COUNT_KEYS`) that counts on the server and
   * answers per pod, so ~100k keys cost a few hundred round trips of a few dozen bytes per pod, and
   * scores interleave with the walk. Only keys named as request keys (decimal uint64s) count: engine
   * ZSETs, legacy `model@hash` keys and other applications' keys do not. A debug path, with SCAN's
   * guarantee: a key present throughout is counted, and counted twice if Redis resized its table
   * during the walk and SCAN returned it twice (writes go on meanwhile, so it is a view, not a ledger).
   */
  async countKeysByPod(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const add = (pod: string, n: number): void => {
      out.set(pod, (out.get(pod) ?? 0) + n);
    };
    const pods = new Set<string>();
    await this.call('countKeysByPod', async (c) => {
      let cursor = '0';
      do {
        const reply = (await this.countKeys.run(c, [], [cursor, String(COUNT_BATCH)])) as unknown[];
        cursor = String(reply[0]);
        const n = Number(reply[1]);
        let p = 2;
        for (let i = 0; i < n; i++, p += 2) add(String(reply[p]), Number(reply[p + 1]));
        // Keys with a field the script does not parse: the tolerant decoder decides.
        for (; p < reply.length; p++) {
          pods.clear();
          for (const f of reply[p] as string[]) {
            const e = decodePodField(f);
            if (e !== null && !e.speculative) pods.add(e.pod);
          }
          for (const pod of pods) add(pod, 1);
        }
      } while (cursor !== '0');
    });
    return out;
  }

  /** Quits cleanly when connected, and stops reconnecting in any case. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.tracking?.close();
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
        return;
      } catch {
        // Fall through: drop the connection.
      }
    }
    this.client.disconnect();
  }
}

/**
 * llm-d's engine → request mapping by the ratio of the counts: with n = max(|E|, |R|), for i < n,
 * E[⌊i·|E|/n⌋] → R[⌊i·|R|/n⌋]. Engine ZSET name → its request keys in order.
 */
function engineMapping(engineKeys: KeyList, requestNames: readonly string[]): Map<string, string[]> {
  const ne = engineKeys.length >>> 1;
  const nr = requestNames.length;
  const out = new Map<string, string[]>();
  if (ne === 0 || nr === 0) return out;
  const n = Math.max(ne, nr);
  for (let i = 0; i < n; i++) {
    const e = Math.floor((i * ne) / n);
    const name = engineKeyName(engineKeys[2 * e]!, engineKeys[2 * e + 1]!);
    let list = out.get(name);
    if (list === undefined) out.set(name, (list = []));
    list.push(requestNames[Math.floor((i * nr) / n)]!);
  }
  return out;
}

/** Keys the score script's walk went through: the sum of its runs' lengths. */
function walkedBlocks(reply: readonly unknown[]): number {
  const runs = Number(reply[1]);
  let walked = 0;
  let p = 2;
  for (let r = 0; r < runs; r++) {
    walked += Number(reply[p]);
    p += 2 + 2 * Number(reply[p + 1]);
  }
  return walked;
}

function sameFields(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The score script's runs into scores: per run, each pod holding it adds its tier's weight once per
 * block, in block order, as `scoreLookup` does, so the sums are the same doubles.
 */
function scoreRuns(
  reply: readonly unknown[],
  tiers: readonly (readonly [string, number])[],
): Map<string, PrefixScore> {
  const out = new Map<string, { score: number; blocks: number }>();
  const runs = Number(reply[1]);
  let p = 2;
  for (let r = 0; r < runs; r++) {
    const len = Number(reply[p++]);
    const m = Number(reply[p++]);
    for (let j = 0; j < m; j++) {
      const pod = String(reply[p++]);
      const k = Number(reply[p++]);
      const w = k === 0 ? 1 : tiers[k - 1]![1];
      let s = out.get(pod);
      let from = 0;
      if (s === undefined) {
        // Block 0 sets the score, as in scoreLookup (0 + w would turn a -0 weight into 0).
        out.set(pod, (s = { score: w, blocks: 1 }));
        from = 1;
      }
      for (let t = from; t < len; t++) s.score += w;
      s.blocks += len - from;
    }
  }
  return out;
}
