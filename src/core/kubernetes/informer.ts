/**
 * A list-then-watch cache of one collection, as client-go's reflector keeps one: list (paged), then
 * watch from the list's resourceVersion with bookmarks, follow every event's resourceVersion, and
 *
 * - re-list when the server says the version is gone (`410 Gone`, as an HTTP status or an ERROR
 *   event), diffing the new list against the cache so that consumers see only what changed;
 * - reconnect from the last version, with exponential backoff, when the stream ends or the API server
 *   cannot be reached; a watch that stays silent past its timeout is abandoned and reopened;
 * - skip an object it cannot read (counted and logged) rather than stop, and never let a consumer's
 *   exception escape into the stream.
 *
 * Events are delivered one at a time, synchronously, in the order the server sent them.
 */
import { z } from 'zod';
import { KubernetesApiError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { KubeApi, Query, WatchEvent, WatchHandle } from './client.js';

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

export interface InformerEvent<T> {
  readonly type: 'add' | 'update' | 'delete';
  /** `namespace/name`. */
  readonly key: string;
  readonly object: T;
  /** For `update`: what the cache held before. */
  readonly old?: T;
}

export interface InformerOptions<T> {
  readonly api: KubeApi;
  /** The collection, e.g. `/api/v1/namespaces/default/pods`. */
  readonly path: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Reads one object; its metadata has been checked already. */
  readonly parse: (raw: unknown) => ParseResult<T>;
  /** What is watched, for logs: `pods in ns default`. */
  readonly what: string;
  readonly logger?: Logger;
  /** First pause after a failure; doubled up to `maxBackoffMs`. Defaults 250 ms and 30 s. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Asked of the server per watch; the client gives up 30 s after it. Default 5 min. */
  readonly watchTimeoutS?: number;
  /** Items per list page. Default 500. */
  readonly pageSize?: number;
}

export interface InformerStats {
  lists: number;
  /** Re-lists because the watched version was gone (410). */
  relists: number;
  watches: number;
  events: number;
  bookmarks: number;
  /** Objects that could not be read and were skipped. */
  malformed: number;
  /** Failed lists or watches (each one retried after a backoff). */
  errors: number;
}

/** Every counter at zero: a new informer's, or the start of a sum over several. */
export function emptyInformerStats(): InformerStats {
  return { lists: 0, relists: 0, watches: 0, events: 0, bookmarks: 0, malformed: 0, errors: 0 };
}

const metadataSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().optional(),
    resourceVersion: z.string().optional(),
  }),
});

const statusSchema = z.object({ code: z.number().optional(), message: z.string().optional() }).passthrough();

type WatchOutcome = { kind: 'closed'; events: number } | { kind: 'gone' } | { kind: 'error'; err: unknown };

interface Entry<T> {
  readonly value: T;
  readonly resourceVersion: string;
}

export class Informer<T> {
  readonly stats: InformerStats = emptyInformerStats();
  private readonly cache = new Map<string, Entry<T>>();
  private readonly listeners: ((e: InformerEvent<T>) => void)[] = [];
  private readonly syncListeners: (() => void)[] = [];
  private readonly log: Logger;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly watchTimeoutS: number;
  private readonly pageSize: number;
  private resourceVersion = '';
  private backoffMs: number;
  private stopped = true;
  private synced = false;
  private loop: Promise<void> | null = null;
  private current: WatchHandle | null = null;
  private wake: (() => void) | null = null;
  private listing: AbortController | null = null;
  private syncWaiters: (() => void)[] = [];

  constructor(private readonly o: InformerOptions<T>) {
    this.log = (o.logger ?? silentLogger()).child({ watch: o.what });
    this.initialBackoffMs = o.initialBackoffMs ?? 250;
    this.maxBackoffMs = o.maxBackoffMs ?? 30_000;
    this.watchTimeoutS = o.watchTimeoutS ?? 300;
    this.pageSize = o.pageSize ?? 500;
    this.backoffMs = this.initialBackoffMs;
  }

  /** Every change to the cache. Returns a function that unsubscribes. */
  onEvent(listener: (e: InformerEvent<T>) => void): () => void {
    return subscribe(this.listeners, listener);
  }

  /** After each full list has been applied (the first one, and every re-list). */
  onSync(listener: () => void): () => void {
    return subscribe(this.syncListeners, listener);
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  /** The cached objects. */
  list(): T[] {
    return [...this.cache.values()].map((e) => e.value);
  }

  get(key: string): T | undefined {
    return this.cache.get(key)?.value;
  }

  /** Starts listing and watching in the background. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Resolves after the first list was applied; never rejects (failures are retried). */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.abort();
    this.current = null;
    this.listing?.abort();
    this.wake?.();
    await this.loop;
    this.loop = null;
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      if (needList) {
        try {
          await this.relist();
          needList = false;
          this.backoffMs = this.initialBackoffMs;
        } catch (err) {
          if (this.stopped) break;
          this.failed('list', err);
          await this.pause();
          continue;
        }
      }
      const started = Date.now();
      const outcome = await this.watchOnce();
      if (this.stopped) break;
      // A version the server no longer has: an ERROR event, or 410 on the watch request itself.
      const gone =
        outcome.kind === 'gone' ||
        (outcome.kind === 'error' &&
          outcome.err instanceof KubernetesApiError &&
          outcome.err.httpStatus === 410);
      if (gone) {
        this.stats.relists++;
        this.log.info({ resource_version: this.resourceVersion }, 'watch expired (410 Gone); listing again');
        needList = true;
      } else if (outcome.kind === 'error') {
        this.failed('watch', outcome.err);
        await this.pause();
      } else if (outcome.events === 0 && Date.now() - started < 1000) {
        // A server that closes every watch at once would otherwise be hammered.
        await this.pause();
      } else {
        this.backoffMs = this.initialBackoffMs;
      }
    }
  }

  private failed(what: 'list' | 'watch', err: unknown): void {
    this.stats.errors++;
    const status = err instanceof KubernetesApiError ? err.httpStatus : undefined;
    const hint =
      status === 401 || status === 403
        ? 'check the RBAC permissions of the service account (get, list, watch)'
        : status === 404
          ? 'is the resource (CRD) installed?'
          : undefined;
    this.log.warn(
      {
        err: err instanceof Error ? err.message : String(err),
        status,
        hint,
        retry_in_ms: this.backoffMs,
      },
      `${what} failed; retrying`,
    );
  }

  private pause(): Promise<void> {
    const ms = this.backoffMs;
    this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake?.(), ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  private async relist(): Promise<void> {
    const seen = new Set<string>();
    const items: { key: string; entry: Entry<T> }[] = [];
    let token = '';
    let rv = '';
    do {
      const listing = new AbortController();
      this.listing = listing;
      let page;
      try {
        page = await this.o.api.list(
          this.o.path,
          { ...this.selectors(), limit: String(this.pageSize), continue: token === '' ? undefined : token },
          listing.signal,
        );
      } finally {
        this.listing = null;
      }
      if (this.stopped) return;
      rv = page.resourceVersion;
      token = page.continueToken;
      for (const raw of page.items) {
        const read = this.read(raw);
        if (read === null) continue;
        seen.add(read.key);
        if (read.entry !== null) items.push({ key: read.key, entry: read.entry });
      }
    } while (token !== '');
    this.stats.lists++;
    for (const [key, old] of [...this.cache]) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit({ type: 'delete', key, object: old.value });
      }
    }
    for (const { key, entry } of items) this.put(key, entry);
    this.resourceVersion = rv;
    this.log.debug({ objects: this.cache.size, resource_version: rv }, 'listed');
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
    for (const l of this.syncListeners) this.call(l, undefined);
  }

  private selectors(): Query {
    return { labelSelector: this.o.labelSelector, fieldSelector: this.o.fieldSelector };
  }

  private watchOnce(): Promise<WatchOutcome> {
    return new Promise<WatchOutcome>((resolve) => {
      let events = 0;
      let settled = false;
      let handle: WatchHandle | null = null;
      const finish = (outcome: WatchOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        handle?.abort();
        if (this.current === handle) this.current = null;
        resolve(outcome);
      };
      // The server should end the watch at `timeoutSeconds`; one that went silent is given up on.
      const deadline = setTimeout(
        () => finish({ kind: 'closed', events: 1 }),
        (this.watchTimeoutS + 30) * 1000,
      );
      deadline.unref();
      const onEvent = (e: WatchEvent): void => {
        if (settled) return;
        events++;
        if (this.handle(e) === 'gone') finish({ kind: 'gone' });
      };
      const onDone = (err: unknown): void => {
        if (err === null || err === undefined) finish({ kind: 'closed', events });
        else finish({ kind: 'error', err });
      };
      this.stats.watches++;
      this.o.api
        .watch(
          this.o.path,
          {
            ...this.selectors(),
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: 'true',
            timeoutSeconds: String(this.watchTimeoutS),
          },
          onEvent,
          onDone,
        )
        .then(
          (h) => {
            handle = h;
            if (settled || this.stopped) h.abort();
            else this.current = h;
            if (this.stopped) finish({ kind: 'closed', events });
          },
          (err: unknown) => finish({ kind: 'error', err }),
        );
    });
  }

  /** Applies one watch event; `gone` asks for a re-list. */
  private handle(e: WatchEvent): 'ok' | 'gone' {
    this.stats.events++;
    if (e.type === 'ERROR') {
      const s = statusSchema.safeParse(e.object);
      const code = s.success ? s.data.code : undefined;
      if (code === 410) return 'gone';
      this.stats.errors++;
      this.log.warn({ code, message: s.success ? s.data.message : undefined }, 'watch error event');
      return 'ok';
    }
    const meta = metadataSchema.safeParse(e.object);
    if (e.type === 'BOOKMARK') {
      this.stats.bookmarks++;
      const rv = (e.object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
      if (typeof rv === 'string' && rv !== '') this.resourceVersion = rv;
      return 'ok';
    }
    if (!meta.success) {
      this.malformed(undefined, 'no metadata.name');
      return 'ok';
    }
    const key = keyOf(meta.data.metadata);
    const rv = meta.data.metadata.resourceVersion ?? '';
    if (rv !== '') this.resourceVersion = rv;
    if (e.type === 'DELETED') {
      // The key is all a delete needs: a malformed last state still removes the object.
      const old = this.cache.get(key);
      if (old !== undefined) {
        this.cache.delete(key);
        this.emit({ type: 'delete', key, object: old.value });
      }
      return 'ok';
    }
    if (e.type !== 'ADDED' && e.type !== 'MODIFIED') {
      this.malformed(key, `unknown event type ${JSON.stringify(e.type)}`);
      return 'ok';
    }
    const read = this.read(e.object);
    if (read?.entry != null) this.put(key, read.entry);
    return 'ok';
  }

  /** Null when even the key is unreadable; `entry` null when only the body is. */
  private read(raw: unknown): { key: string; entry: Entry<T> | null } | null {
    const meta = metadataSchema.safeParse(raw);
    if (!meta.success) {
      this.malformed(undefined, 'no metadata.name');
      return null;
    }
    const key = keyOf(meta.data.metadata);
    const parsed = this.o.parse(raw);
    if (!parsed.ok) {
      this.malformed(key, parsed.error);
      return { key, entry: null };
    }
    return { key, entry: { value: parsed.value, resourceVersion: meta.data.metadata.resourceVersion ?? '' } };
  }

  private put(key: string, entry: Entry<T>): void {
    const old = this.cache.get(key);
    if (old !== undefined && old.resourceVersion !== '' && old.resourceVersion === entry.resourceVersion)
      return;
    this.cache.set(key, entry);
    if (old === undefined) this.emit({ type: 'add', key, object: entry.value });
    else this.emit({ type: 'update', key, object: entry.value, old: old.value });
  }

  private malformed(key: string | undefined, error: string): void {
    this.stats.malformed++;
    this.log.warn({ object: key, err: error }, 'skipped an object that cannot be read');
  }

  private emit(e: InformerEvent<T>): void {
    for (const l of this.listeners) this.call(l, e);
  }

  private call<A>(listener: (a: A) => void, arg: A): void {
    try {
      listener(arg);
    } catch (err) {
      this.log.error({ err }, 'watch listener threw');
    }
  }
}

function keyOf(m: { name: string; namespace?: string }): string {
  return `${m.namespace ?? ''}/${m.name}`;
}

function subscribe<L>(list: L[], listener: L): () => void {
  list.push(listener);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}
