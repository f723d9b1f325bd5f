/**
 * Endpoints from Kubernetes: the pods of an InferencePool (`--pool-name`, `--pool-namespace`,
 * `--pool-group`), or of a label selector without the CRD (`--endpoint-selector` +
 * `--endpoint-target-ports`). Each pod event changes that pod's endpoints at once; a pool change or a
 * re-list reconciles the whole set. See pods.ts for which pods take traffic and on which ports.
 */
import { createKubeClient, type KubeApi } from '../../../core/kubernetes/client.js';
import { PoolPodsWatch, type InformerTuning, type PoolSource } from '../../../core/kubernetes/pool-pods.js';
import type { InformerStats } from '../../../core/kubernetes/informer.js';
import type { Pod } from '../../../core/kubernetes/resources.js';
import { silentLogger, type Logger } from '../../../core/log.js';
import type { DiscoverySink, EndpointDiscovery, EndpointSpec } from '../../framework/datalayer.js';
import type { TypedName } from '../../framework/plugin.js';
import { endpointId } from '../datastore.js';
import { podEndpoints } from './pods.js';

export interface KubernetesDiscoveryOptions extends InformerTuning {
  readonly namespace: string;
  readonly source: PoolSource;
  /** A kubeconfig file; otherwise the default loading rules (KUBECONFIG, ~/.kube/config, in-cluster). */
  readonly kubeconfig?: string;
  /** An API client to use instead of one made from the kubeconfig. */
  readonly api?: KubeApi;
  readonly logger?: Logger;
}

/**
 * The pool `appProtocol`s the EPP's request parsers read: HTTP/1.1 OpenAI-style APIs. A pool of
 * `kubernetes.io/h2c` model servers (vLLM's gRPC API) has no parser here, so the EPP stays unready
 * for it, as upstream's readiness check does.
 */
export const SUPPORTED_APP_PROTOCOLS: ReadonlySet<string> = new Set(['http']);

export class KubernetesDiscovery implements EndpointDiscovery {
  readonly typedName: TypedName = { type: 'kubernetes-discovery', name: 'kubernetes' };
  private readonly log: Logger;
  private watch: PoolPodsWatch | null = null;
  private sink: DiscoverySink | null = null;
  /** Pod key → the ids of its endpoints in the sink. */
  private readonly byPod = new Map<string, Set<string>>();
  private lastProtocol: string | null = null;

  constructor(private readonly o: KubernetesDiscoveryOptions) {
    this.log = (o.logger ?? silentLogger()).child({ discovery: 'kubernetes' });
  }

  /** Resolves once the pool (if any) and its pods have been listed; API failures are retried until then. */
  async start(sink: DiscoverySink): Promise<void> {
    this.sink = sink;
    const api = this.o.api ?? (await createKubeClient({ kubeconfig: this.o.kubeconfig }));
    const watch = new PoolPodsWatch({
      api,
      namespace: this.o.namespace,
      source: this.o.source,
      logger: this.log,
      initialBackoffMs: this.o.initialBackoffMs,
      maxBackoffMs: this.o.maxBackoffMs,
      watchTimeoutS: this.o.watchTimeoutS,
    });
    watch.listen({
      target: () => this.reconcileAll(),
      podsSynced: () => this.reconcileAll(),
      pod: (e) => this.reconcilePod(e.key, e.type === 'delete' ? null : e.object),
    });
    this.watch = watch;
    this.log.info({ server: api.server, source: watch.describe() }, 'watching Kubernetes for endpoints');
    watch.start();
    await watch.waitForSync();
    this.log.info(
      { source: watch.describe(), endpoints: [...this.byPod.values()].reduce((n, s) => n + s.size, 0) },
      'Kubernetes endpoints listed',
    );
  }

  async stop(): Promise<void> {
    await this.watch?.stop();
    this.watch = null;
  }

  stats(): InformerStats | null {
    return this.watch?.stats() ?? null;
  }

  private specsOf(pod: Pod): EndpointSpec[] {
    const t = this.watch?.target ?? null;
    if (t === null || !t.selector.matches(pod.labels)) return [];
    return podEndpoints(pod, t.targetPorts);
  }

  /** Whether the pool's `appProtocol` is one the parsers read (true without a pool or a CRD). */
  protocolSupported(): boolean {
    const t = this.watch?.target ?? null;
    return t?.pool == null || SUPPORTED_APP_PROTOCOLS.has(t.pool.appProtocol);
  }

  private reconcileAll(): void {
    const sink = this.sink;
    const watch = this.watch;
    if (sink === null || watch === null) return;
    const protocol = watch.target?.pool?.appProtocol ?? null;
    if (protocol !== this.lastProtocol) {
      this.lastProtocol = protocol;
      if (protocol !== null && !SUPPORTED_APP_PROTOCOLS.has(protocol)) {
        this.log.error(
          { app_protocol: protocol, supported: [...SUPPORTED_APP_PROTOCOLS] },
          "the pool's appProtocol has no parser here: the EPP reports NOT_SERVING",
        );
      }
    }
    const specs: EndpointSpec[] = [];
    const byPod = new Map<string, Set<string>>();
    for (const pod of watch.pods()) {
      const mine = this.specsOf(pod);
      if (mine.length === 0) continue;
      specs.push(...mine);
      byPod.set(`${pod.namespace}/${pod.name}`, new Set(mine.map(idOf)));
    }
    try {
      sink.replace(specs);
    } catch (err) {
      // One endpoint the datastore refuses must not hold back the others.
      this.log.error({ err: (err as Error).message }, 'endpoint set refused; applying pod by pod');
      for (const id of [...this.byPod.values()].flatMap((s) => [...s])) sink.remove(id);
      for (const s of specs) this.upsert(s);
    }
    this.byPod.clear();
    for (const [k, v] of byPod) this.byPod.set(k, v);
  }

  private reconcilePod(key: string, pod: Pod | null): void {
    const sink = this.sink;
    if (sink === null) return;
    const specs = pod === null ? [] : this.specsOf(pod);
    const ids = new Set(specs.map(idOf));
    for (const id of this.byPod.get(key) ?? []) if (!ids.has(id)) sink.remove(id);
    for (const s of specs) this.upsert(s);
    if (ids.size === 0) this.byPod.delete(key);
    else this.byPod.set(key, ids);
    this.log.debug({ pod: key, endpoints: ids.size }, 'pod reconciled');
  }

  private upsert(s: EndpointSpec): void {
    try {
      this.sink?.upsert(s);
    } catch (err) {
      this.log.error({ err: (err as Error).message, endpoint: idOf(s) }, 'endpoint refused');
    }
  }
}

function idOf(s: EndpointSpec): string {
  return endpointId(s.namespace, s.name, s.rank ?? 0);
}
