/**
 * Prometheus metrics for hot paths: counters, gauges and histograms whose series are looked up once
 * (`child(labelValues)`, cached) and then updated with plain arithmetic on typed arrays. prom-client's
 * own `inc`/`observe` validate and hash their labels and allocate on every call, which costs tens of
 * microseconds per proxied request and shows up per streamed token. These register in a prom-client
 * `Registry` and render exactly as prom-client renders its own metrics, so one `/metrics` page mixes
 * both.
 */
import type { Metric, Registry } from 'prom-client';

interface PromValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface PromMetric {
  name: string;
  help: string;
  type: string;
  values: PromValue[];
  aggregator: string;
}

const SEP = '\u0000';

abstract class Vec<S> {
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, { labels: Record<string, string>; s: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  protected abstract create(): S;
  protected abstract render(name: string, labels: Record<string, string>, s: S, out: PromValue[]): void;

  /** The series for these label values (in `labelNames` order); created on first use, then cached. */
  child(...values: string[]): S {
    const key = values.length === 1 ? values[0]! : values.join(SEP);
    let e = this.series.get(key);
    if (e === undefined) {
      if (values.length !== this.labelNames.length) {
        throw new RangeError(
          `${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`,
        );
      }
      const labels: Record<string, string> = {};
      for (let i = 0; i < values.length; i++) labels[this.labelNames[i]!] = values[i]!;
      e = { labels, s: this.create() };
      this.series.set(key, e);
    }
    return e.s;
  }

  /** Drops every series (gauges recomputed at scrape time). */
  clear(): void {
    this.series.clear();
  }

  /** The shape prom-client's registry renders (`Registry.getMetricsAsString`). */
  getForPromString(): PromMetric {
    const values: PromValue[] = [];
    for (const { labels, s } of this.series.values()) this.render(this.name, labels, s, values);
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  get(): PromMetric {
    return this.getForPromString();
  }
}

export class CounterSeries {
  value = 0;
  inc(n = 1): void {
    if (n > 0) this.value += n;
  }
}

export class GaugeSeries {
  value = 0;
  set(v: number): void {
    this.value = v;
  }
  inc(n = 1): void {
    this.value += n;
  }
  dec(n = 1): void {
    this.value -= n;
  }
}

export class HistogramSeries {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
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

  /** Cumulative count of observations ≤ `bound` (a configured bound or Infinity). */
  countAtMost(bound: number): number {
    if (bound === Infinity) return this.count;
    let acc = 0;
    for (let i = 0; i < this.bounds.length && this.bounds[i]! <= bound; i++) acc += this.counts[i]!;
    return acc;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

export class FastCounterVec extends Vec<CounterSeries> {
  readonly type = 'counter';
  protected create(): CounterSeries {
    return new CounterSeries();
  }
  protected render(_n: string, labels: Record<string, string>, s: CounterSeries, out: PromValue[]): void {
    out.push({ value: s.value, labels });
  }
}

export class FastGaugeVec extends Vec<GaugeSeries> {
  readonly type = 'gauge';
  protected create(): GaugeSeries {
    return new GaugeSeries();
  }
  protected render(_n: string, labels: Record<string, string>, s: GaugeSeries, out: PromValue[]): void {
    out.push({ value: s.value, labels });
  }
}

export class FastHistogramVec extends Vec<HistogramSeries> {
  readonly type = 'histogram';
  private readonly bounds: Float64Array;

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new RangeError(`${name}: buckets must increase`);
    }
    this.bounds = Float64Array.from(buckets);
  }

  protected create(): HistogramSeries {
    return new HistogramSeries(this.bounds);
  }

  protected render(name: string, labels: Record<string, string>, s: HistogramSeries, out: PromValue[]): void {
    const bucket = name + '_bucket';
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += s.counts[i]!;
      out.push({ value: acc, labels: { le: this.bounds[i]!, ...labels }, metricName: bucket });
    }
    out.push({ value: s.count, labels: { le: '+Inf', ...labels }, metricName: bucket });
    out.push({ value: s.sum, labels, metricName: name + '_sum' });
    out.push({ value: s.count, labels, metricName: name + '_count' });
  }
}

/** A histogram with one fixed label set. */
export class FastHistogram {
  private readonly series: HistogramSeries;

  constructor(
    name: string,
    help: string,
    buckets: readonly number[],
    labels: Readonly<Record<string, string>>,
    registry: Registry,
  ) {
    const names = Object.keys(labels);
    this.series = new FastHistogramVec(name, help, names, buckets, registry).child(
      ...names.map((k) => labels[k]!),
    );
  }

  observe(value: number): void {
    this.series.observe(value);
  }

  countAtMost(bound: number): number {
    return this.series.countAtMost(bound);
  }

  get totalCount(): number {
    return this.series.count;
  }

  get totalSum(): number {
    return this.series.sum;
  }

  reset(): void {
    this.series.reset();
  }
}
