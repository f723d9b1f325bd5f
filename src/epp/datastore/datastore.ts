/**
 * The live endpoint set. Discovery writes it (`DiscoverySink`), plugins read it (`EndpointSource`), the
 * scraper polls what is in it. Each endpoint keeps one small dense `slot` for its whole life, so that
 * per-request arrays can be indexed by slot; a freed slot is reused by the next endpoint that arrives.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { MutableEndpoint } from '../framework/datalayer.js';
import type { DiscoverySink, EndpointSpec } from '../framework/datalayer.js';
import {
  emptyMetrics,
  joinHostPort,
  type Endpoint,
  type EndpointMetadata,
  type EndpointMetrics,
  type EndpointSource,
} from '../framework/endpoint.js';
import { AttributeMap } from './attributes.js';

/** Upstream's endpoint id: `namespace/<pod>-rank-<i>`. */
export function endpointId(namespace: string, name: string, rank = 0): string {
  return `${namespace}/${name}-rank-${rank}`;
}

/**
 * The one implementation of `MutableEndpoint`. Plugins see it as a read-only `Endpoint`; extractors
 * write its metrics; the scraper keeps its poll bookkeeping here.
 */
export class DatastoreEndpoint implements MutableEndpoint {
  readonly attributes = new AttributeMap();
  /** Monotonic ms (scraper clock) of the last successful poll; 0 = never. */
  lastPollOk = 0;
  /** Failed polls since the last successful one. */
  consecutiveFailures = 0;
  /**
   * Bumped when the id starts pointing at a different server (new address or port): a poll started
   * before the change must not write what it read from the old server.
   */
  generation = 0;

  constructor(
    readonly slot: number,
    public meta: EndpointMetadata,
    public metrics: EndpointMetrics = emptyMetrics(),
  ) {}
}

export type EndpointChangeKind = 'add' | 'update' | 'remove';

export interface EndpointChange {
  readonly kind: EndpointChangeKind;
  readonly endpoint: DatastoreEndpoint;
  /** For `update`: the address or port changed, so metrics were reset and in-flight polls are void. */
  readonly serverChanged: boolean;
}

export interface DatastoreOptions {
  logger?: Logger;
}

export class Datastore implements EndpointSource, DiscoverySink {
  private readonly byId = new Map<string, DatastoreEndpoint>();
  /** Index = slot; holes are free slots. Trailing holes are trimmed so `length` is `slotCount()`. */
  private readonly slots: (DatastoreEndpoint | undefined)[] = [];
  private cached: readonly DatastoreEndpoint[] | null = Object.freeze([]);
  private readonly removeListeners: ((endpoint: Endpoint) => void)[] = [];
  private readonly changeListeners: ((change: EndpointChange) => void)[] = [];
  private readonly logger: Logger;

  constructor(opts: DatastoreOptions = {}) {
    this.logger = opts.logger ?? silentLogger();
  }

  /** In slot order. Replaced, never mutated, when the set changes; rebuilt lazily on first read. */
  list(): readonly DatastoreEndpoint[] {
    if (this.cached === null) {
      const out: DatastoreEndpoint[] = [];
      for (const e of this.slots) if (e !== undefined) out.push(e);
      this.cached = Object.freeze(out);
    }
    return this.cached;
  }

  get(id: string): DatastoreEndpoint | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }

  slotCount(): number {
    return this.slots.length;
  }

  /** Returns a function that unsubscribes. */
  onRemove(listener: (endpoint: Endpoint) => void): () => void {
    return subscribe(this.removeListeners, listener);
  }

  /** Every add, update and remove, after it was applied. Returns a function that unsubscribes. */
  onChange(listener: (change: EndpointChange) => void): () => void {
    return subscribe(this.changeListeners, listener);
  }

  upsert(spec: EndpointSpec): void {
    this.apply(validateSpec(spec));
  }

  remove(id: string): void {
    const e = this.byId.get(id);
    if (e === undefined) return;
    this.byId.delete(id);
    this.slots[e.slot] = undefined;
    while (this.slots.length > 0 && this.slots[this.slots.length - 1] === undefined) this.slots.pop();
    this.cached = null;
    for (const l of this.removeListeners) this.call(l, e, 'remove');
    this.emit({ kind: 'remove', endpoint: e, serverChanged: false });
  }

  /** The whole set: every spec is validated before anything changes, so a bad set changes nothing. */
  replace(specs: readonly EndpointSpec[]): void {
    const next = new Map<string, ValidSpec>();
    for (const s of specs) {
      const v = validateSpec(s);
      next.set(v.id, v);
    }
    for (const id of [...this.byId.keys()]) if (!next.has(id)) this.remove(id);
    for (const v of next.values()) this.apply(v);
  }

  clear(): void {
    for (const id of [...this.byId.keys()]) this.remove(id);
  }

  private apply(v: ValidSpec): void {
    const existing = this.byId.get(v.id);
    if (existing === undefined) {
      const e = new DatastoreEndpoint(this.freeSlot(), metadataOf(v));
      this.byId.set(v.id, e);
      this.slots[e.slot] = e;
      this.cached = null;
      this.emit({ kind: 'add', endpoint: e, serverChanged: false });
      return;
    }
    const old = existing.meta;
    const serverChanged = old.address !== v.address || old.port !== v.port;
    if (!serverChanged && sameLabels(old.labels, v.labels)) return;
    existing.meta = metadataOf(v);
    if (serverChanged) {
      // Another server behind the same id: what we knew about the old one says nothing about it.
      // Attributes stay, because plugins balance per-endpoint counters (in-flight load) on them.
      existing.metrics = emptyMetrics();
      existing.lastPollOk = 0;
      existing.consecutiveFailures = 0;
      existing.generation++;
    }
    this.emit({ kind: 'update', endpoint: existing, serverChanged });
  }

  private freeSlot(): number {
    const s = this.slots;
    for (let i = 0; i < s.length; i++) if (s[i] === undefined) return i;
    return s.length;
  }

  private emit(change: EndpointChange): void {
    for (const l of this.changeListeners) this.call(l, change, 'change');
  }

  /** A listener's bug must not leave the datastore half-updated. */
  private call<T>(listener: (arg: T) => void, arg: T, what: string): void {
    try {
      listener(arg);
    } catch (err) {
      this.logger.error({ err }, `datastore ${what} listener threw`);
    }
  }
}

interface ValidSpec {
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * Discovery sources validate their own input with better messages; this is the last line, so that a
 * bug in one of them cannot put an endpoint with no usable address into the set.
 */
function validateSpec(spec: EndpointSpec): ValidSpec {
  const where = `endpoint ${JSON.stringify(spec.name)}`;
  if (typeof spec.name !== 'string' || spec.name === '' || spec.name.includes('/')) {
    throw new ConfigError(`${where}: name must be a non-empty string without '/'`, 'name');
  }
  if (typeof spec.namespace !== 'string' || spec.namespace === '' || spec.namespace.includes('/')) {
    throw new ConfigError(`${where}: namespace must be a non-empty string without '/'`, 'namespace');
  }
  if (typeof spec.address !== 'string' || isIP(spec.address) === 0) {
    throw new ConfigError(
      `${where}: address ${JSON.stringify(spec.address)} is not an IP address`,
      'address',
    );
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) {
    throw new ConfigError(`${where}: port ${String(spec.port)} is not in 1..65535`, 'port');
  }
  const rank = spec.rank ?? 0;
  if (!Number.isInteger(rank) || rank < 0) {
    throw new ConfigError(`${where}: rank ${String(rank)} is not a non-negative integer`, 'rank');
  }
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.labels ?? {})) {
    if (k === '' || k === '__proto__' || /\s/.test(k)) {
      throw new ConfigError(`${where}: label key ${JSON.stringify(k)} is not valid`, 'labels');
    }
    if (typeof v !== 'string') throw new ConfigError(`${where}: label ${k} is not a string`, 'labels');
    labels[k] = v;
  }
  return {
    id: endpointId(spec.namespace, spec.name, rank),
    name: spec.name,
    namespace: spec.namespace,
    address: spec.address,
    port: spec.port,
    labels: Object.freeze(labels),
  };
}

function metadataOf(v: ValidSpec): EndpointMetadata {
  return Object.freeze({
    id: v.id,
    name: v.name,
    namespace: v.namespace,
    address: v.address,
    port: v.port,
    hostPort: joinHostPort(v.address, v.port),
    labels: v.labels,
  });
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k] || !Object.hasOwn(b, k)) return false;
  return true;
}

function subscribe<T>(list: T[], listener: T): () => void {
  list.push(listener);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}
