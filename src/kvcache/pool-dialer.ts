/**
 * `llmd kv-indexer` dialling the KV-event publishers of an InferencePool's pods (llm-d's
 * `discoverPods`): every target port a ready pod serves is a server `podIP:port`, whose events are
 * read from `tcp://<podIP>:<socketPort>`, or from the pod's `llm-d.ai/kv-events-endpoint` annotation.
 * The dialled set is made exactly that on every change; a pod that leaves is unsubscribed and its
 * entries are cleared from the index.
 */
import { KV_EVENTS_ENDPOINT_ANNOTATION, servingPorts } from '../core/kubernetes/readiness.js';
import type { PoolPodsWatch } from '../core/kubernetes/pool-pods.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { EventEndpoint } from './events/subscriber.js';

export interface PoolDialerOptions {
  readonly watch: PoolPodsWatch;
  readonly ingest: { setEndpoints(endpoints: readonly EventEndpoint[]): Promise<void> };
  /** llm-d's `podDiscoveryConfig.socketPort`. */
  readonly socketPort: number;
  readonly logger?: Logger;
}

export class PoolDialer {
  private readonly log: Logger;
  private running: Promise<void> | null = null;
  private dirty = false;

  constructor(private readonly o: PoolDialerOptions) {
    this.log = o.logger ?? silentLogger();
    const changed = (): void => this.schedule();
    o.watch.listen({ target: changed, pod: changed, podsSynced: changed });
  }

  /** What should be dialled now. */
  wanted(): EventEndpoint[] {
    const t = this.o.watch.target;
    if (t === null) return [];
    const out: EventEndpoint[] = [];
    for (const pod of this.o.watch.pods()) {
      const host = pod.podIP.includes(':') ? `[${pod.podIP}]` : pod.podIP;
      const endpoint = pod.annotations[KV_EVENTS_ENDPOINT_ANNOTATION] ?? `tcp://${host}:${this.o.socketPort}`;
      for (const { port } of servingPorts(pod, t.targetPorts)) out.push({ id: `${host}:${port}`, endpoint });
    }
    return out;
  }

  /** Resolves when the dialled set has caught up with the pods (tests, start-up). */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  /** Changes arriving while a sync runs are folded into one more sync after it. */
  private schedule(): void {
    this.dirty = true;
    if (this.running !== null) return;
    this.running = (async () => {
      while (this.dirty) {
        this.dirty = false;
        const want = this.wanted();
        try {
          await this.o.ingest.setEndpoints(want);
          this.log.debug({ servers: want.length }, 'dialled KV-event publishers updated');
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, "cannot subscribe to the pods' KV events");
        }
      }
    })().finally(() => {
      this.running = null;
    });
  }
}
