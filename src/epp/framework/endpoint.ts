/**
 * Endpoints as plugins see them: identity and labels (from discovery), the model server's metrics
 * (from scraping), and attributes that plugins keep per endpoint. Each endpoint has a dense `slot`
 * number, stable for its lifetime, so per-request data can live in typed arrays indexed by slot
 * instead of maps.
 */

export interface EndpointMetadata {
  /** `namespace/<pod>-rank-<i>`, as upstream names endpoints. */
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly port: number;
  /** `address:port`, IPv6 bracketed: what goes into `x-gateway-destination-endpoint`. */
  readonly hostPort: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** The metrics upstream's `core-metrics-extractor` fills in. */
export interface EndpointMetrics {
  waitingQueueSize: number;
  runningRequestsSize: number;
  /** Fraction 0..1. */
  kvCacheUsagePercent: number;
  activeModels: ReadonlySet<string>;
  waitingModels: ReadonlySet<string>;
  maxActiveModels: number;
  /** Tokens per KV block (vLLM `cache_config_info{block_size}`); 0 when unknown. */
  cacheBlockSize: number;
  /** KV blocks (vLLM `cache_config_info{num_gpu_blocks}`); 0 when unknown. */
  cacheNumBlocks: number;
  /** Monotonic ms of the last successful scrape; 0 = never scraped. */
  updateTime: number;
  /** Custom metrics an extractor was configured to read, by name. */
  custom: Map<string, number>;
}

/** A typed key for per-endpoint attributes: `attributes.get(KEY)` is a `T` without a cast. */
export class AttributeKey<T> {
  declare private readonly _type: T;
  constructor(readonly name: string) {}
}

export interface Attributes {
  get<T>(key: AttributeKey<T>): T | undefined;
  set<T>(key: AttributeKey<T>, value: T): void;
  delete(key: AttributeKey<unknown>): void;
}

export interface Endpoint {
  readonly slot: number;
  readonly meta: EndpointMetadata;
  readonly metrics: Readonly<EndpointMetrics>;
  readonly attributes: Attributes;
}

/** The live endpoint set, as plugins may read it. */
export interface EndpointSource {
  /** The current endpoints; the array is replaced, never mutated, when the set changes. */
  list(): readonly Endpoint[];
  get(id: string): Endpoint | undefined;
  /** One more than the largest slot in use: the length of slot-indexed arrays. */
  slotCount(): number;
  /** Called when an endpoint leaves, so plugins can drop what they keep about it. */
  onRemove(listener: (endpoint: Endpoint) => void): void;
}

export function emptyMetrics(): EndpointMetrics {
  return {
    waitingQueueSize: 0,
    runningRequestsSize: 0,
    kvCacheUsagePercent: 0,
    activeModels: new Set(),
    waitingModels: new Set(),
    maxActiveModels: 0,
    cacheBlockSize: 0,
    cacheNumBlocks: 0,
    updateTime: 0,
    custom: new Map(),
  };
}

/** `ip:port`, with IPv6 addresses in brackets (Go's `net.JoinHostPort`). */
export function joinHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
