/**
 * Data-layer extension points (upstream `framework/interface/datalayer`): discovery tells the
 * datastore which endpoints exist; data sources poll each endpoint on a tick and hand what they got to
 * their extractors, which write it onto the endpoint (metrics, LoRA state, cache geometry).
 */
import type { Endpoint, EndpointMetrics } from './endpoint.js';
import type { Plugin } from './plugin.js';

/** An endpoint as discovery reports it. */
export interface EndpointSpec {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
  /** Data-parallel rank / target-port index; part of the id (`ns/name-rank-i`). Default 0. */
  readonly rank?: number;
}

export interface DiscoverySink {
  /** The whole set as of now: endpoints not listed are removed. */
  replace(specs: readonly EndpointSpec[]): void;
  upsert(spec: EndpointSpec): void;
  remove(id: string): void;
}

export interface EndpointDiscovery extends Plugin {
  /** Resolves once the first full set was delivered. */
  start(sink: DiscoverySink): Promise<void>;
  stop(): void | Promise<void>;
}

/** An endpoint whose metrics an extractor may write. */
export interface MutableEndpoint extends Endpoint {
  readonly metrics: EndpointMetrics;
}

export interface Extractor extends Plugin {
  /** The `kind` of data source it understands (e.g. `metrics`). */
  readonly sourceKind: string;
}

export interface DataSource extends Plugin {
  readonly kind: string;
  /** Poll period; rounded up to the datastore's base tick. */
  readonly intervalMs: number;
  /**
   * One poll of one endpoint, feeding `extractors`. Never rejects: a failed or malformed poll is
   * reported as `false` (and counted by the caller), and the endpoint's metrics are left as they were.
   */
  poll(endpoint: MutableEndpoint, extractors: readonly Extractor[], signal: AbortSignal): Promise<boolean>;
  close?(): void | Promise<void>;
}

export function isEndpointDiscovery(p: Plugin): p is EndpointDiscovery {
  const d = p as Partial<EndpointDiscovery>;
  return typeof d.start === 'function' && typeof d.stop === 'function';
}
export function isDataSource(p: Plugin): p is DataSource {
  const d = p as Partial<DataSource>;
  return typeof d.poll === 'function' && typeof d.kind === 'string';
}
export function isExtractor(p: Plugin): p is Extractor {
  return typeof (p as Partial<Extractor>).sourceKind === 'string';
}
