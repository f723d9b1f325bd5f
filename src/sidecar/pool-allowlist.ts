/**
 * The SSRF allowlist of `--inference-pool`: the pods of that InferencePool, as llm-d's sidecar builds
 * it — for every pod its selector picks that has an address (whatever its phase), the pod IP and the
 * pod name — kept current by watching the pool and its pods. `--allowed-prefill-hosts` entries are
 * allowed as well. Start-up waits until the pool and its pods have been listed, and fails with a hint
 * at RBAC when that does not happen in time.
 */
import { createKubeClient, type KubeApi } from '../core/kubernetes/client.js';
import { PoolPodsWatch, type InformerTuning } from '../core/kubernetes/pool-pods.js';
import { KubernetesApiError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { StaticAllowlist, canonicalHost, type PrefillAllowlist } from './ssrf.js';

export interface PoolAllowlistOptions extends InformerTuning {
  /** `namespace/name`, or `name` in namespace `default`. */
  readonly inferencePool: string;
  readonly poolGroup: string;
  /** Hosts allowed besides the pool's pods. */
  readonly extraHosts?: readonly string[];
  readonly kubeconfig?: string;
  /** An API client to use instead of one made from the kubeconfig. */
  readonly api?: KubeApi;
  /** How long start-up waits for the first lists. Default 30 s. */
  readonly syncTimeoutMs?: number;
  readonly logger?: Logger;
}

export function parseInferencePool(value: string): { namespace: string; name: string } {
  const slash = value.indexOf('/');
  return slash < 0
    ? { namespace: 'default', name: value }
    : { namespace: value.slice(0, slash), name: value.slice(slash + 1) };
}

export class PoolAllowlist implements PrefillAllowlist {
  private hosts: ReadonlySet<string> = new Set();
  private readonly extra: StaticAllowlist;

  private constructor(
    private readonly watch: PoolPodsWatch,
    extraHosts: readonly string[],
    private readonly log: Logger,
  ) {
    this.extra = new StaticAllowlist(extraHosts);
    const rebuild = (): void => this.rebuild();
    watch.listen({ target: rebuild, pod: rebuild, podsSynced: rebuild });
  }

  static async start(o: PoolAllowlistOptions): Promise<PoolAllowlist> {
    const log = (o.logger ?? silentLogger()).child({ ssrf_allowlist: o.inferencePool });
    const { namespace, name } = parseInferencePool(o.inferencePool);
    const api = o.api ?? (await createKubeClient({ kubeconfig: o.kubeconfig }));
    const watch = new PoolPodsWatch({
      api,
      namespace,
      source: { kind: 'pool', name, group: o.poolGroup },
      logger: log,
      initialBackoffMs: o.initialBackoffMs,
      maxBackoffMs: o.maxBackoffMs,
      watchTimeoutS: o.watchTimeoutS,
    });
    const list = new PoolAllowlist(watch, o.extraHosts ?? [], log);
    watch.start();
    const timeoutMs = o.syncTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const synced = await Promise.race([
      watch.waitForSync().then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!synced) {
      await watch.stop();
      throw new KubernetesApiError(
        `SSRF allowlist: InferencePool ${namespace}/${name} (${o.poolGroup}) was not listed within ${timeoutMs} ms from ${api.server}: check RBAC permissions (get, list, watch on pods and inferencepools) and that pool '${name}' exists`,
        0,
      );
    }
    if (watch.target === null) {
      log.warn(
        { pool: `${namespace}/${name}` },
        'the InferencePool does not exist (yet): prefill targets are refused until it does',
      );
    }
    log.info(
      { pool: `${namespace}/${name}`, allowed: list.size },
      'SSRF allowlist follows the InferencePool',
    );
    return list;
  }

  get size(): number {
    return this.hosts.size + this.extra.size;
  }

  allows(host: string): boolean {
    return this.hosts.has(canonicalHost(host)) || this.extra.allows(host);
  }

  close(): Promise<void> {
    return this.watch.stop();
  }

  /** Rebuilt whole on every change, as upstream does: the set is small and always exact. */
  private rebuild(): void {
    const next = new Set<string>();
    for (const p of this.watch.pods()) {
      if (p.podIP === '') continue;
      next.add(canonicalHost(p.podIP));
      next.add(canonicalHost(p.name));
    }
    this.hosts = next;
    this.log.debug({ allowed: next.size }, 'SSRF allowlist rebuilt');
  }
}
