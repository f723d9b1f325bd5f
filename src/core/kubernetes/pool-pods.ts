/**
 * The pods of an InferencePool, as the EPP and the sidecar both follow them: one informer on the pool
 * (field selector `metadata.name=<pool>`), and one on the pods its selector picks, made again when the
 * selector changes. Without the CRD (`--endpoint-selector`) the pod informer alone, with a fixed
 * selector and target ports. Pods are matched locally too, so a selector change takes effect at once
 * for the pods already known, before the new informer has listed.
 */
import { silentLogger, type Logger } from '../log.js';
import type { KubeApi } from './client.js';
import { Informer, emptyInformerStats, type InformerEvent, type InformerStats } from './informer.js';
import { parsePod, podsPath, poolParser, poolsPath, type InferencePool, type Pod } from './resources.js';
import { selectorFromLabels, type LabelSelector } from './selector.js';

export type PoolSource =
  | { readonly kind: 'pool'; readonly name: string; readonly group: string }
  | { readonly kind: 'selector'; readonly selector: LabelSelector; readonly targetPorts: readonly number[] };

export interface InformerTuning {
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly watchTimeoutS?: number;
}

export interface PoolPodsOptions extends InformerTuning {
  readonly api: KubeApi;
  readonly namespace: string;
  readonly source: PoolSource;
  readonly logger?: Logger;
}

/** What the pods are matched against right now; null while there is no pool. */
export interface PoolTarget {
  readonly selector: LabelSelector;
  readonly targetPorts: readonly number[];
  /** The InferencePool, in pool mode. */
  readonly pool: InferencePool | null;
}

export interface PoolPodsListener {
  /** The target changed (pool added, updated or deleted; null = no pool): reconcile everything. */
  target?(target: PoolTarget | null): void;
  /** One pod changed. */
  pod?(e: InformerEvent<Pod>): void;
  /** The pod informer (re)listed: reconcile everything. */
  podsSynced?(): void;
}

export class PoolPodsWatch {
  private readonly log: Logger;
  private poolInformer: Informer<InferencePool> | null = null;
  private podInformer: Informer<Pod> | null = null;
  private targetNow: PoolTarget | null = null;
  private readonly listeners: PoolPodsListener[] = [];
  private retired: InformerStats[] = [];
  /** Pods of the previous pod informer that match the new selector, until the new one has listed. */
  private carried: Pod[] = [];
  private stopping = false;

  constructor(private readonly o: PoolPodsOptions) {
    this.log = o.logger ?? silentLogger();
  }

  /** What the watch follows, for logs. */
  describe(): string {
    const s = this.o.source;
    return s.kind === 'pool'
      ? `InferencePool ${this.o.namespace}/${s.name} (${s.group})`
      : `pods matching ${JSON.stringify(s.selector.text)} in ${this.o.namespace}`;
  }

  listen(l: PoolPodsListener): void {
    this.listeners.push(l);
  }

  get target(): PoolTarget | null {
    return this.targetNow;
  }

  /**
   * The pods known now that match the current selector: the live informer's once it has listed, until
   * then those of the previous informer that match.
   */
  pods(): Pod[] {
    const t = this.targetNow;
    const inf = this.podInformer;
    if (t === null || inf === null) return [];
    const from = inf.hasSynced ? inf.list() : this.carried;
    return from.filter((p) => t.selector.matches(p.labels));
  }

  start(): void {
    this.stopping = false;
    const s = this.o.source;
    if (s.kind === 'selector') {
      this.setTarget({ selector: s.selector, targetPorts: s.targetPorts, pool: null });
      return;
    }
    const inf = new Informer<InferencePool>({
      ...this.tuning(),
      api: this.o.api,
      path: poolsPath(this.o.namespace, s.group),
      fieldSelector: `metadata.name=${s.name}`,
      parse: poolParser(s.group),
      what: `inferencepool ${this.o.namespace}/${s.name}`,
      logger: this.log,
    });
    inf.onEvent(() => this.poolChanged(inf));
    inf.onSync(() => {
      this.poolChanged(inf);
      if (inf.get(`${this.o.namespace}/${s.name}`) === undefined) {
        this.log.warn(
          { pool: `${this.o.namespace}/${s.name}`, group: s.group },
          'the InferencePool does not exist (yet): no endpoints until it does',
        );
      }
    });
    this.poolInformer = inf;
    inf.start();
  }

  /**
   * Resolves when the pool has been listed and, when it exists, its pods too. Never rejects: a failing
   * API server is retried (and logged) until then.
   */
  async waitForSync(): Promise<void> {
    if (this.poolInformer !== null) await this.poolInformer.waitForSync();
    // The pod informer may be replaced while we wait (the selector changed): wait for the live one.
    for (;;) {
      const inf = this.podInformer;
      if (inf === null || this.stopping) return;
      await inf.waitForSync();
      if (inf === this.podInformer) return;
    }
  }

  /** Counters of every informer this watch ran. */
  stats(): InformerStats {
    const all = [...this.retired];
    if (this.poolInformer !== null) all.push(this.poolInformer.stats);
    if (this.podInformer !== null) all.push(this.podInformer.stats);
    const sum = emptyInformerStats();
    for (const s of all) for (const k of Object.keys(sum) as (keyof InformerStats)[]) sum[k] += s[k];
    return sum;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([this.poolInformer?.stop(), this.podInformer?.stop()]);
  }

  private tuning(): InformerTuning {
    return {
      initialBackoffMs: this.o.initialBackoffMs,
      maxBackoffMs: this.o.maxBackoffMs,
      watchTimeoutS: this.o.watchTimeoutS,
    };
  }

  private poolChanged(inf: Informer<InferencePool>): void {
    if (this.stopping || this.o.source.kind !== 'pool') return;
    const pool = inf.get(`${this.o.namespace}/${this.o.source.name}`);
    if (pool === undefined || pool.deleting) {
      if (this.targetNow !== null) {
        this.log.info(
          { pool: `${this.o.namespace}/${this.o.source.name}` },
          'InferencePool gone: no endpoints',
        );
      }
      this.setTarget(null);
      return;
    }
    const selector = selectorFromLabels(pool.matchLabels);
    const prev = this.targetNow;
    if (
      prev !== null &&
      prev.selector.text === selector.text &&
      sameNumbers(prev.targetPorts, pool.targetPorts) &&
      prev.pool?.appProtocol === pool.appProtocol
    ) {
      this.targetNow = { ...prev, pool };
      return;
    }
    this.log.info(
      { pool: `${pool.namespace}/${pool.name}`, selector: selector.text, target_ports: pool.targetPorts },
      'InferencePool set',
    );
    this.setTarget({ selector, targetPorts: pool.targetPorts, pool });
  }

  private setTarget(t: PoolTarget | null): void {
    const prevSelector = this.targetNow?.selector.text ?? null;
    this.targetNow = t;
    const nextSelector = t?.selector.text ?? null;
    if (nextSelector !== prevSelector) this.replacePodInformer(t);
    for (const l of this.listeners) this.call(() => l.target?.(t));
  }

  private replacePodInformer(t: PoolTarget | null): void {
    const old = this.podInformer;
    this.podInformer = null;
    if (old !== null) {
      this.retired.push(old.stats);
      void old.stop();
    }
    if (t === null) return;
    const inf = new Informer<Pod>({
      ...this.tuning(),
      api: this.o.api,
      path: podsPath(this.o.namespace),
      labelSelector: t.selector.text === '' ? undefined : t.selector.text,
      parse: parsePod,
      what: `pods ${JSON.stringify(t.selector.text)} in ${this.o.namespace}`,
      logger: this.log,
    });
    // Until the new informer has listed, the old one's pods that still match stand in for it.
    const carried = old?.list().filter((p) => t.selector.matches(p.labels)) ?? [];
    inf.onEvent((e) => {
      if (this.podInformer !== inf) return;
      for (const l of this.listeners) this.call(() => l.pod?.(e));
    });
    inf.onSync(() => {
      if (this.podInformer !== inf) return;
      for (const l of this.listeners) this.call(() => l.podsSynced?.());
    });
    this.podInformer = inf;
    this.carried = carried;
    inf.start();
  }

  private call(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.log.error({ err }, 'pool watch listener threw');
    }
  }
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
