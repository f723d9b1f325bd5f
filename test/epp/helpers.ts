/** Builders for EPP plugin tests: endpoints, requests and a plugin handle, without any I/O. */
import { silentLogger } from '../../src/core/log.js';
import { Rng } from '../../src/core/rng.js';
import { AttributeMap } from '../../src/epp/datastore/attributes.js';
import { CycleState } from '../../src/epp/framework/cycle-state.js';
import {
  emptyMetrics,
  joinHostPort,
  type Endpoint,
  type EndpointMetrics,
  type EndpointSource,
} from '../../src/epp/framework/endpoint.js';
import type { Plugin, PluginDefinition, PluginHandle } from '../../src/epp/framework/plugin.js';
import type { InferenceRequest, RequestBody } from '../../src/epp/framework/request.js';

export interface EndpointInit {
  slot?: number;
  name?: string;
  namespace?: string;
  address?: string;
  port?: number;
  labels?: Record<string, string>;
  metrics?: Partial<EndpointMetrics>;
}

let nextSlot = 0;

export function makeEndpoint(init: EndpointInit = {}): Endpoint & { metrics: EndpointMetrics } {
  const slot = init.slot ?? nextSlot++;
  const name = init.name ?? `pod-${slot}`;
  const namespace = init.namespace ?? 'default';
  const address = init.address ?? `10.0.0.${(slot % 250) + 1}`;
  const port = init.port ?? 8000;
  return {
    slot,
    meta: {
      id: `${namespace}/${name}-rank-0`,
      name,
      namespace,
      address,
      port,
      hostPort: joinHostPort(address, port),
      labels: init.labels ?? {},
    },
    metrics: { ...emptyMetrics(), updateTime: 1, ...init.metrics },
    attributes: new AttributeMap(),
  };
}

/** `n` endpoints with slots 0..n-1. */
export function makeEndpoints(n: number, init: (i: number) => EndpointInit = () => ({})): Endpoint[] {
  return Array.from({ length: n }, (_, i) => makeEndpoint({ slot: i, ...init(i) }));
}

export interface RequestInit {
  requestId?: string;
  path?: string;
  model?: string;
  targetModel?: string;
  headers?: Record<string, string>;
  body?: Partial<RequestBody>;
  json?: Record<string, unknown>;
  priority?: number;
  recordDecision?: boolean;
}

export function makeRequest(init: RequestInit = {}): InferenceRequest {
  const model = init.model ?? 'm';
  const json = init.json ?? { model, prompt: 'hello' };
  const raw = Buffer.from(JSON.stringify(json));
  return {
    requestId: init.requestId ?? 'req-1',
    path: init.path ?? '/v1/completions',
    incomingModel: model,
    targetModel: init.targetModel ?? model,
    headers: init.headers ?? {},
    body: {
      kind: 'completions',
      json,
      raw,
      model,
      stream: false,
      prompt: typeof json.prompt === 'string' ? json.prompt : undefined,
      ...init.body,
    },
    fairnessId: 'default-flow',
    priority: init.priority ?? 0,
    requestSizeBytes: raw.length,
    state: new CycleState(),
    receivedAt: 0,
    recordDecision: init.recordDecision ?? false,
  };
}

/** A plugin handle over a fixed endpoint list; `plugins` can be filled in after creation. */
export function testHandle(
  endpoints: Endpoint[] = [],
  seed = 1,
): PluginHandle & {
  register(p: Plugin): void;
  now: number;
} {
  const byName = new Map<string, Plugin>();
  const removeListeners: ((e: Endpoint) => void)[] = [];
  const source: EndpointSource & { endpoints: Endpoint[] } = {
    endpoints,
    list: () => source.endpoints,
    get: (id) => source.endpoints.find((e) => e.meta.id === id),
    slotCount: () => source.endpoints.reduce((m, e) => Math.max(m, e.slot + 1), 0),
    onRemove: (l) => removeListeners.push(l),
  };
  const handle = {
    now: 0,
    logger: silentLogger(),
    rng: new Rng(seed),
    clock: () => handle.now,
    endpoints: source,
    plugin: (name: string) => byName.get(name),
    plugins: () => [...byName.values()],
    register: (p: Plugin) => void byName.set(p.typedName.name, p),
  };
  return handle;
}

/** Validates `params` with the definition's schema and creates the plugin, as the loader does. */
export function create<T extends Plugin>(
  def: PluginDefinition,
  params: unknown = {},
  handle: PluginHandle = testHandle(),
  name = def.type,
): T {
  const parsed = def.params.parse(params ?? {});
  return def.create(name, parsed, handle) as T;
}
