/**
 * Metrics helpers for hot paths. `FastHistogram` is a Prometheus histogram with one fixed label set,
 * registered in a prom-client `Registry` and exposed in exactly prom-client's text format, whose
 * `observe` is a bucket search over a typed array: prom-client's own `observe` validates and hashes
 * labels and allocates per call, which shows up when it runs for every streamed token.
 */
import type { Metric, Registry } from 'prom-client';

interface PromValue {
  value: number;
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string>;
  metricName: string;
}

export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    private readonly labels: Readonly<Record<string, string>>,
    registry: Registry,
  ) {
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new RangeError(`${name}: buckets must increase`);
    }
    this.bounds = Float64Array.from(buckets);
    this.counts = new Float64Array(buckets.length + 1);
    registry.registerMetric(this as unknown as Metric);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    // Binary search for the first bound ≥ value (Prometheus buckets are `le`).
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (b[mid]! < value) lo = mid + 1;
      else hi = mid;
    }
    this.counts[lo]!++;
    this.sum += value;
    this.count++;
  }

  /** Cumulative count of observations ≤ `bound` (a configured bound or Infinity); for tests. */
  countAtMost(bound: number): number {
    let acc = 0;
    for (let i = 0; i < this.bounds.length && this.bounds[i]! <= bound; i++) acc += this.counts[i]!;
    return bound === Infinity ? this.count : acc;
  }

  get totalCount(): number {
    return this.count;
  }

  get totalSum(): number {
    return this.sum;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }

  /** The shape prom-client's registry renders (`Registry.getMetricsAsString`). */
  getForPromString(): { name: string; help: string; type: string; values: PromValue[]; aggregator: string } {
    const values: PromValue[] = [];
    const shared = this.labels as Record<string, string>;
    const bucket = this.name + '_bucket';
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.counts[i]!;
      values.push({ value: acc, labels: { le: this.bounds[i]! }, sharedLabels: shared, metricName: bucket });
    }
    values.push({ value: this.count, labels: { le: '+Inf' }, sharedLabels: shared, metricName: bucket });
    values.push({ value: this.sum, labels: {}, sharedLabels: shared, metricName: this.name + '_sum' });
    values.push({ value: this.count, labels: {}, sharedLabels: shared, metricName: this.name + '_count' });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  get(): ReturnType<FastHistogram['getForPromString']> {
    return this.getForPromString();
  }
}
