/**
 * A Kubernetes API server test double: a real HTTP server on a loopback port that serves list and
 * watch for pods (core/v1) and InferencePools (inference.networking.k8s.io/v1 and
 * inference.networking.x-k8s.io/v1alpha2), with what informers depend on:
 *
 * - one monotonically increasing resourceVersion across every kind, stamped on each write;
 * - lists filtered by namespace, `labelSelector` and `fieldSelector`, paged with `limit`/`continue`;
 * - watches from a resourceVersion (history replayed, then live), label-selector transitions turned
 *   into ADDED/DELETED as the real server does, BOOKMARK events on request;
 * - `410 Gone` for a version older than the last compaction: an ERROR event (code 410) on a 200
 *   stream, or the HTTP status itself (`goneAs`);
 * - dropping every connection, and stopping and starting again on the same port (state kept, as
 *   etcd keeps it across an API server restart).
 *
 * Tests drive it directly (`apply`, `remove`, `putRaw`, `expireWatches`, ...) and wait on `watchers()`
 * and `requests` instead of sleeping.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';

export const PODS = 'pods';
export const POOLS_V1 = 'inference.networking.k8s.io/v1/inferencepools';
export const POOLS_ALPHA = 'inference.networking.x-k8s.io/v1alpha2/inferencepools';
export type Resource = typeof PODS | typeof POOLS_V1 | typeof POOLS_ALPHA;

type Obj = Record<string, unknown>;

interface HistoryEvent {
  readonly rv: number;
  readonly resource: Resource;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: unknown;
  /** The state before a MODIFIED, for selector transitions. */
  readonly prev: unknown;
}

interface Watcher {
  readonly resource: Resource;
  readonly namespace: string;
  readonly match: (o: unknown) => boolean;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
}

export interface RecordedRequest {
  readonly resource: Resource | null;
  readonly watch: boolean;
  readonly query: Readonly<Record<string, string>>;
  readonly status: number;
}

export class FakeKubeApi {
  port = 0;
  /** How a too-old resourceVersion is refused. */
  goneAs: 'event' | 'http' = 'event';
  readonly requests: RecordedRequest[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly store = new Map<Resource, Map<string, unknown>>();
  private history: HistoryEvent[] = [];
  private rv = 1000;
  private compactedRv = 0;
  private readonly live = new Set<Watcher>();

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Listens on `port` (0 = a free one; after `stop`, the same one again). */
  async start(port = this.port): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Goes away as an API server that is killed: every connection is cut, new ones are refused. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    this.dropConnections();
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Cuts every open connection (watches included); the server keeps listening. */
  dropConnections(): void {
    for (const w of this.live) w.res.destroy();
    this.live.clear();
    for (const s of this.sockets) s.destroy();
  }

  /** Open watches on `resource`. */
  watchers(resource?: Resource): number {
    let n = 0;
    for (const w of this.live) if (resource === undefined || w.resource === resource) n++;
    return n;
  }

  /** Lists (not watches) of `resource` served so far. */
  lists(resource: Resource): number {
    return this.requests.filter((r) => r.resource === resource && !r.watch && r.status === 200).length;
  }

  /** Creates or replaces an object; metadata.resourceVersion is stamped. Returns the stored object. */
  apply(resource: Resource, object: Obj): Obj {
    const meta = { ...((object.metadata as Obj | undefined) ?? {}) };
    const key = `${String(meta.namespace)}/${String(meta.name)}`;
    const rv = ++this.rv;
    meta.resourceVersion = String(rv);
    const stored = { ...object, metadata: meta };
    const objects = this.objects(resource);
    const prev = objects.get(key);
    objects.set(key, stored);
    this.publish({ rv, resource, type: prev === undefined ? 'ADDED' : 'MODIFIED', object: stored, prev });
    return stored;
  }

  /** Stores anything under `namespace/name`, malformed or not, and announces it as ADDED/MODIFIED. */
  putRaw(resource: Resource, namespace: string, name: string, object: unknown): void {
    const rv = ++this.rv;
    const objects = this.objects(resource);
    const key = `${namespace}/${name}`;
    const prev = objects.get(key);
    const stored =
      object !== null && typeof object === 'object' && !Array.isArray(object)
        ? {
            ...(object as Obj),
            metadata: {
              ...(((object as Obj).metadata as Obj | undefined) ?? {}),
              resourceVersion: String(rv),
            },
          }
        : object;
    objects.set(key, stored);
    this.publish({ rv, resource, type: prev === undefined ? 'ADDED' : 'MODIFIED', object: stored, prev });
  }

  /** Sends one raw line to every watcher of `resource` (no store change). */
  sendRaw(resource: Resource, line: string): void {
    for (const w of this.live)
      if (w.resource === resource) w.res.write(line.endsWith('\n') ? line : `${line}\n`);
  }

  remove(resource: Resource, namespace: string, name: string): void {
    const objects = this.objects(resource);
    const key = `${namespace}/${name}`;
    const prev = objects.get(key);
    if (prev === undefined) return;
    objects.delete(key);
    const rv = ++this.rv;
    const gone =
      prev !== null && typeof prev === 'object'
        ? { ...(prev as Obj), metadata: { ...((prev as Obj).metadata as Obj), resourceVersion: String(rv) } }
        : prev;
    this.publish({ rv, resource, type: 'DELETED', object: gone, prev });
  }

  get(resource: Resource, namespace: string, name: string): Obj | undefined {
    return this.objects(resource).get(`${namespace}/${name}`) as Obj | undefined;
  }

  /** A BOOKMARK at the current resourceVersion to every watcher that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.live) {
      if (!w.bookmarks) continue;
      w.res.write(
        `${JSON.stringify({ type: 'BOOKMARK', object: { kind: kindOf(w.resource), apiVersion: apiVersionOf(w.resource), metadata: { resourceVersion: String(this.rv) } } })}\n`,
      );
    }
  }

  /** Forgets history up to now: watches from an older version get 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Compacts, then ends every open watch with an ERROR 410 event, as etcd compaction does. */
  expireWatches(): void {
    this.compact();
    for (const w of this.live) {
      w.res.end(`${JSON.stringify({ type: 'ERROR', object: goneStatus() })}\n`);
    }
    this.live.clear();
  }

  /** A kubeconfig for the double, for `--kubeconfig` and `KUBECONFIG`. */
  writeKubeconfig(dir: string): string {
    const path = join(dir, 'kubeconfig.yaml');
    writeFileSync(path, kubeconfigYaml(this.url));
    return path;
  }

  /** Options for `KubeConfig.loadFromOptions`. */
  kubeConfigOptions(): Obj {
    return {
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake', token: 'test-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake', namespace: 'default' }],
      currentContext: 'fake',
    };
  }

  private objects(resource: Resource): Map<string, unknown> {
    let m = this.store.get(resource);
    if (m === undefined) {
      m = new Map();
      this.store.set(resource, m);
    }
    return m;
  }

  private publish(e: HistoryEvent): void {
    this.history.push(e);
    for (const w of this.live) if (w.resource === e.resource) this.deliver(w, e);
  }

  private deliver(w: Watcher, e: HistoryEvent): void {
    if (!inNamespace(e.object, w.namespace) && !inNamespace(e.prev, w.namespace)) return;
    const now = w.match(e.object);
    if (e.type === 'DELETED') {
      if (w.match(e.prev) || now) w.res.write(line('DELETED', e.object));
      return;
    }
    const before = e.prev !== undefined && w.match(e.prev);
    if (now && before) w.res.write(line('MODIFIED', e.object));
    else if (now) w.res.write(line('ADDED', e.object));
    else if (before) w.res.write(line('DELETED', e.object));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const route = routeOf(url.pathname);
    const watch = query.watch === 'true' || query.watch === '1';
    const record = (status: number): void => {
      this.requests.push({ resource: route?.resource ?? null, watch, query, status });
    };
    if (req.method !== 'GET' || route === null) {
      record(404);
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status(404, 'NotFound', `no route ${url.pathname}`)));
      return;
    }
    const labelMatch = parseSelector(query.labelSelector ?? '');
    const fieldMatch = parseFieldSelector(query.fieldSelector ?? '');
    if (labelMatch === null || fieldMatch === null) {
      record(400);
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status(400, 'BadRequest', 'unable to parse requirement')));
      return;
    }
    const match = (o: unknown): boolean => o !== undefined && labelMatch(labelsOf(o)) && fieldMatch(o);
    if (!watch) {
      record(200);
      this.list(route.resource, route.namespace, match, query, res);
      return;
    }
    const from = query.resourceVersion ?? '';
    const fromRv = from === '' || from === '0' ? null : Number(from);
    if (fromRv !== null && (!Number.isFinite(fromRv) || fromRv < this.compactedRv)) {
      if (this.goneAs === 'http') {
        record(410);
        res.writeHead(410, { 'content-type': 'application/json' });
        res.end(JSON.stringify(goneStatus()));
        return;
      }
      record(200);
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: goneStatus() })}\n`);
      return;
    }
    record(200);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = {
      resource: route.resource,
      namespace: route.namespace,
      match,
      bookmarks: query.allowWatchBookmarks === 'true',
      res,
    };
    if (fromRv === null) {
      for (const o of this.objects(route.resource).values()) {
        if (inNamespace(o, route.namespace) && match(o)) res.write(line('ADDED', o));
      }
    } else {
      for (const e of this.history) if (e.resource === route.resource && e.rv > fromRv) this.deliver(w, e);
    }
    this.live.add(w);
    res.on('close', () => this.live.delete(w));
  }

  private list(
    resource: Resource,
    namespace: string,
    match: (o: unknown) => boolean,
    query: Record<string, string>,
    res: ServerResponse,
  ): void {
    const all = [...this.objects(resource).entries()]
      .filter(([, o]) => inNamespace(o, namespace) && match(o))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o);
    const offset = query.continue ? Number(Buffer.from(query.continue, 'base64url').toString('utf8')) : 0;
    const limit = query.limit ? Number(query.limit) : all.length;
    const items = all.slice(offset, offset + limit);
    const next =
      offset + limit < all.length ? Buffer.from(String(offset + limit)).toString('base64url') : undefined;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: `${kindOf(resource)}List`,
        apiVersion: apiVersionOf(resource),
        metadata: { resourceVersion: String(this.rv), ...(next === undefined ? {} : { continue: next }) },
        items,
      }),
    );
  }
}

export async function startFakeKubeApi(): Promise<FakeKubeApi> {
  const api = new FakeKubeApi();
  await api.start(0);
  return api;
}

// --- object builders ---------------------------------------------------------------------------

export interface PodInput {
  readonly name: string;
  readonly namespace?: string;
  readonly ip?: string;
  readonly ready?: boolean;
  readonly phase?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly deleting?: boolean;
}

export function pod(p: PodInput): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: p.namespace ?? 'default',
      uid: `uid-${p.name}`,
      labels: p.labels ?? {},
      ...(p.annotations === undefined ? {} : { annotations: p.annotations }),
      ...(p.deleting === true ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: { containers: [{ name: 'vllm', image: 'vllm' }] },
    status: {
      phase: p.phase ?? 'Running',
      ...(p.ip === undefined ? {} : { podIP: p.ip, podIPs: [{ ip: p.ip }] }),
      conditions: [
        { type: 'Initialized', status: 'True' },
        { type: 'Ready', status: p.ready === false ? 'False' : 'True' },
        { type: 'ContainersReady', status: p.ready === false ? 'False' : 'True' },
      ],
    },
  };
}

export function poolV1(
  name: string,
  matchLabels: Record<string, string>,
  targetPorts: number[],
  namespace = 'default',
): Obj {
  return {
    apiVersion: 'inference.networking.k8s.io/v1',
    kind: 'InferencePool',
    metadata: { name, namespace },
    spec: {
      selector: { matchLabels },
      targetPorts: targetPorts.map((number) => ({ number })),
      appProtocol: 'http',
      endpointPickerRef: { group: '', kind: 'Service', name: `${name}-epp`, port: { number: 9002 } },
    },
  };
}

export function poolAlpha(
  name: string,
  selector: Record<string, string>,
  targetPortNumber: number,
  namespace = 'default',
): Obj {
  return {
    apiVersion: 'inference.networking.x-k8s.io/v1alpha2',
    kind: 'InferencePool',
    metadata: { name, namespace },
    spec: { selector, targetPortNumber, extensionRef: { name: `${name}-epp` } },
  };
}

// --- helpers -----------------------------------------------------------------------------------

function routeOf(path: string): { resource: Resource; namespace: string } | null {
  let m = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(path);
  if (m !== null) return { resource: PODS, namespace: decodeURIComponent(m[1]!) };
  m = /^\/apis\/([^/]+)\/([^/]+)\/namespaces\/([^/]+)\/inferencepools$/.exec(path);
  if (m !== null) {
    const resource = `${m[1]}/${m[2]}/inferencepools`;
    if (resource === POOLS_V1 || resource === POOLS_ALPHA) {
      return { resource, namespace: decodeURIComponent(m[3]!) };
    }
  }
  return null;
}

function kindOf(r: Resource): string {
  return r === PODS ? 'Pod' : 'InferencePool';
}

function apiVersionOf(r: Resource): string {
  return r === PODS ? 'v1' : r.split('/').slice(0, 2).join('/');
}

function line(type: string, object: unknown): string {
  return `${JSON.stringify({ type, object })}\n`;
}

function status(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function goneStatus(): Obj {
  return status(410, 'Expired', 'too old resource version');
}

function metaOf(o: unknown): Obj {
  if (o === null || typeof o !== 'object') return {};
  const m = (o as Obj).metadata;
  return m !== null && typeof m === 'object' ? (m as Obj) : {};
}

function labelsOf(o: unknown): Record<string, string> {
  const l = metaOf(o).labels;
  if (l === null || typeof l !== 'object') return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(l as Obj)) if (typeof v === 'string') out[k] = v;
  return out;
}

function inNamespace(o: unknown, ns: string): boolean {
  return o !== undefined && (metaOf(o).namespace ?? ns) === ns;
}

/** Equality, inequality, set and existence requirements, as the API server reads them. */
function parseSelector(text: string): ((labels: Record<string, string>) => boolean) | null {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of text) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  const tests: ((l: Record<string, string>) => boolean)[] = [];
  for (const raw of parts) {
    const p = raw.trim();
    if (p === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^!([\w./-]+)$/.exec(p)) !== null) {
      const k = m[1]!;
      tests.push((l) => !(k in l));
    } else if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(p)) !== null) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      tests.push(op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v);
    } else if ((m = /^([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(p)) !== null) {
      const k = m[1]!;
      const vs = new Set(m[3]!.split(',').map((s) => s.trim()));
      tests.push(m[2] === 'in' ? (l) => k in l && vs.has(l[k]!) : (l) => !(k in l) || !vs.has(l[k]!));
    } else if ((m = /^([\w./-]+)$/.exec(p)) !== null) {
      const k = m[1]!;
      tests.push((l) => k in l);
    } else {
      return null;
    }
  }
  return (l) => tests.every((t) => t(l));
}

function parseFieldSelector(text: string): ((o: unknown) => boolean) | null {
  const tests: ((o: unknown) => boolean)[] = [];
  for (const raw of text.split(',')) {
    const p = raw.trim();
    if (p === '') continue;
    const m = /^metadata\.(name|namespace)\s*(==|=|!=)\s*(.*)$/.exec(p);
    if (m === null) return null;
    const [, field, op, v] = m as unknown as [string, 'name' | 'namespace', string, string];
    tests.push((o) => (metaOf(o)[field] === v) === (op !== '!='));
  }
  return (o) => tests.every((t) => t(o));
}

function kubeconfigYaml(server: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '  - name: fake',
    '    cluster:',
    `      server: ${server}`,
    '      insecure-skip-tls-verify: true',
    'users:',
    '  - name: fake',
    '    user:',
    '      token: test-token',
    'contexts:',
    '  - name: fake',
    '    context:',
    '      cluster: fake',
    '      user: fake',
    '      namespace: default',
    'current-context: fake',
    '',
  ].join('\n');
}
