/**
 * The EPP's Prometheus metrics, served on `--metrics-port`: llm-d's current `llm_d_epp_*` names
 * (llm-d-router `docs/metrics.md`) and, emitted in parallel, the legacy `inference_objective_*`,
 * `inference_pool_*`, `inference_extension_*` and `llm_d_inference_scheduler_*` twins that existing
 * dashboards read. Request-label values from clients are capped (1000 distinct, then `other`).
 */
import { Gauge, Registry } from 'prom-client';
import {
  CounterSeries,
  FastCounterVec,
  FastGaugeVec,
  FastHistogramVec,
  GaugeSeries,
  HistogramSeries,
} from '../core/metrics.js';
import type { Endpoint } from './framework/endpoint.js';
import type { ExtensionPoint, SchedulerObserver } from './scheduler/scheduler.js';

const LATENCY_BUCKETS = [
  0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120,
  180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
];
const SIZE_BUCKETS = [
  64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152,
  4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824,
];
const TOKEN_BUCKETS = [
  1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144, 524288,
  1048576,
];
const TPOT_BUCKETS = [
  0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1,
  1.5, 2, 3, 4.5, 6, 12, 18, 24, 30, 36, 48, 60, 90, 120, 180, 270, 360,
];
const SCHEDULER_BUCKETS = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1];

const REQUEST_LABELS = ['model_name', 'target_model_name', 'fairness_id', 'priority'] as const;
const LEGACY_REQUEST_LABELS = ['model_name', 'target_model_name'] as const;
const LABEL_CAP = 1000;

/** Caps the number of distinct values of a client-chosen label. */
class LabelCap {
  private readonly seen = new Set<string>();
  value(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= LABEL_CAP) return 'other';
    this.seen.add(v);
    return v;
  }
}

/**
 * Every per-request series of one label set (model, target model, fairness id, priority), current and
 * legacy, looked up once per label set: a request then updates plain numbers.
 */
export class RequestSeries {
  readonly total: CounterSeries[];
  readonly running: GaugeSeries[];
  readonly duration: HistogramSeries[];
  readonly requestSize: HistogramSeries[];
  readonly responseSize: HistogramSeries[];
  readonly inputTokens: HistogramSeries[];
  readonly outputTokens: HistogramSeries[];
  readonly ntpot: HistogramSeries[];
  readonly cachedTokens: HistogramSeries;
  readonly ttftStreaming: HistogramSeries;
  readonly ttftNonStreaming: HistogramSeries;
  readonly streamingTpot: HistogramSeries;
  readonly streamingItl: HistogramSeries;
  private readonly errors = new Map<string, CounterSeries[]>();

  constructor(
    private readonly v: ReturnType<typeof buildRequestVecs>,
    readonly model: string,
    readonly target: string,
    readonly fairness: string,
    readonly priority: string,
  ) {
    const cur = [model, target, fairness, priority];
    const old = [model, target];
    this.total = [v.requestTotal.child(...cur), v.legacyRequestTotal.child(model, target, priority)];
    this.running = [v.running.child(...cur), v.legacyRunning.child(model)];
    this.duration = [v.duration.child(...cur), v.legacyDuration.child(...old)];
    this.requestSize = [v.requestSize.child(...cur), v.legacyRequestSize.child(...old)];
    this.responseSize = [v.responseSize.child(...cur), v.legacyResponseSize.child(...old)];
    this.inputTokens = [v.inputTokens.child(...cur), v.legacyInputTokens.child(...old)];
    this.outputTokens = [v.outputTokens.child(...cur), v.legacyOutputTokens.child(...old)];
    this.ntpot = [v.ntpot.child(...cur), v.legacyNtpot.child(...old)];
    this.cachedTokens = v.cachedTokens.child(...cur);
    this.ttftStreaming = v.ttft.child(...cur, 'true');
    this.ttftNonStreaming = v.ttft.child(...cur, 'false');
    this.streamingTpot = v.streamingTpot.child(...cur);
    this.streamingItl = v.streamingItl.child(...cur);
  }

  errorsOf(code: string): CounterSeries[] {
    let e = this.errors.get(code);
    if (e === undefined) {
      e = [
        this.v.errorTotal.child(this.model, this.target, this.fairness, this.priority, code),
        this.v.legacyErrorTotal.child(this.model, this.target, code),
      ];
      this.errors.set(code, e);
    }
    return e;
  }
}

export interface ResponseFigures {
  sizeBytes: number;
  streaming: boolean;
  ttftSeconds: number | null;
  e2eSeconds: number;
  promptTokens: number | null;
  completionTokens: number | null;
  cachedTokens: number | null;
  itlSeconds: readonly number[];
}

export interface PoolSnapshot {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  isStale(e: Endpoint): boolean;
}

export class EppMetrics implements SchedulerObserver {
  readonly registry = new Registry();
  private readonly models = new LabelCap();
  private readonly fairness = new LabelCap();
  private readonly c: ReturnType<typeof build>;
  private readonly v: ReturnType<typeof buildRequestVecs>;
  private readonly bundles = new Map<string, RequestSeries>();
  private pool: PoolSnapshot | null = null;

  constructor(info: { commit: string; buildRef: string }) {
    this.v = buildRequestVecs(this.registry);
    this.c = build(this.registry, () => this.pool);
    this.c.info.child(info.commit, info.buildRef).set(1);
    this.c.legacyInfo.child(info.commit, info.buildRef).set(1);
  }

  /** Pool gauges are computed from this at scrape time. */
  setPool(pool: PoolSnapshot): void {
    this.pool = pool;
  }

  /** The series of one request's labels (client-chosen values capped). */
  labels(model: string, target: string, fairnessId: string, priority: number): RequestSeries {
    const key = model + '\u0000' + target + '\u0000' + fairnessId + '\u0000' + priority;
    let b = this.bundles.get(key);
    if (b === undefined) {
      b = new RequestSeries(
        this.v,
        this.models.value(model),
        this.models.value(target),
        this.fairness.value(fairnessId),
        String(priority),
      );
      this.bundles.set(key, b);
    }
    return b;
  }

  requestStarted(l: RequestSeries, sizeBytes: number): void {
    inc(l.total);
    inc(l.running);
    observe(l.requestSize, sizeBytes);
  }

  requestFinished(l: RequestSeries, seconds: number): void {
    dec(l.running);
    observe(l.duration, seconds);
  }

  requestError(l: RequestSeries, errorCode: string): void {
    inc(l.errorsOf(errorCode));
  }

  /** Rejected before it was counted as started (parse errors, no endpoints, shedding). */
  requestRejected(l: RequestSeries, errorCode: string): void {
    inc(l.total);
    this.requestError(l, errorCode);
  }

  responseObserved(l: RequestSeries, r: ResponseFigures): void {
    observe(l.responseSize, r.sizeBytes);
    if (r.ttftSeconds !== null) (r.streaming ? l.ttftStreaming : l.ttftNonStreaming).observe(r.ttftSeconds);
    if (r.promptTokens !== null) observe(l.inputTokens, r.promptTokens);
    if (r.completionTokens !== null) {
      observe(l.outputTokens, r.completionTokens);
      if (r.completionTokens > 0) {
        observe(l.ntpot, r.e2eSeconds / r.completionTokens);
        if (r.streaming && r.ttftSeconds !== null && r.completionTokens > 1) {
          l.streamingTpot.observe((r.e2eSeconds - r.ttftSeconds) / (r.completionTokens - 1));
        }
      }
    }
    if (r.cachedTokens !== null) l.cachedTokens.observe(r.cachedTokens);
    const itl = r.itlSeconds;
    for (let i = 0; i < itl.length; i++) l.streamingItl.observe(itl[i]!);
  }

  schedulerLatency(seconds: number): void {
    this.c.schedulerE2e.observe(seconds);
    this.c.legacySchedulerE2e.observe(seconds);
  }

  schedulerAttempt(status: 'success' | 'failure', targetModel: string, endpoint: Endpoint | null): void {
    const vals = [
      status,
      this.models.value(targetModel),
      endpoint?.meta.name ?? '',
      endpoint?.meta.namespace ?? '',
      endpoint ? String(endpoint.meta.port) : '',
    ];
    this.c.attempts.child(...vals).inc();
    // The legacy series names the endpoint `pod_name`.
    this.c.legacyAttempts.child(...vals).inc();
  }

  disaggDecision(plugin: { type: string; name: string }, model: string, decision: string): void {
    const m = this.models.value(model === '' ? 'unknown' : model);
    this.c.disagg.child(plugin.name, plugin.type, m, decision).inc();
    this.c.legacyDisagg.child(m, decision).inc();
  }

  pluginDuration(point: ExtensionPoint, type: string, name: string, seconds: number): void {
    this.c.pluginDuration.child(point, type, name).observe(seconds);
    this.c.legacyPluginDuration.child(point, type, name).observe(seconds);
  }

  pluginError(point: ExtensionPoint, type: string, name: string): void {
    this.c.pluginErrors.child(point, type, name).inc();
  }

  pollError(sourceType: string): void {
    this.c.pollErrors.child(sourceType).inc();
    this.c.legacyPollErrors.child(sourceType).inc();
  }

  extractError(sourceType: string, extractorType: string): void {
    this.c.extractErrors.child(sourceType, extractorType).inc();
    this.c.legacyExtractErrors.child(sourceType, extractorType).inc();
  }

  requestProcessing(seconds: number): void {
    this.c.requestProcessing.observe(seconds);
  }

  /** `prefix_indexer_size` of each approximate prefix index, read when scraped. */
  trackPrefixIndexers(indexers: readonly PrefixIndexer[]): void {
    for (const name of ['llm_d_epp_prefix_indexer_size', 'inference_extension_prefix_indexer_size']) {
      new Gauge({
        name,
        help: 'Entries in the approximate prefix index.',
        labelNames: ['plugin_name', 'plugin_type'],
        registers: [this.registry],
        collect() {
          for (const p of indexers) {
            this.set({ plugin_name: p.typedName.name, plugin_type: p.typedName.type }, p.stats().entries);
          }
        },
      });
    }
  }

  /**
   * The Kubernetes watches behind discovery, read when scraped: lists, re-lists after 410 Gone,
   * events, skipped (malformed) objects and failed calls, so a broken watch (RBAC, a missing CRD, an
   * API server that keeps going away) shows on a dashboard, not only in the log.
   */
  trackKubernetesWatches(stats: () => KubernetesWatchStats | null): void {
    const fields: [keyof KubernetesWatchStats, string, string][] = [
      ['lists', 'llmd_epp_kubernetes_lists_total', 'Lists of the InferencePool and its pods.'],
      [
        'relists',
        'llmd_epp_kubernetes_relists_total',
        'Lists again because the watched version was gone (410).',
      ],
      [
        'events',
        'llmd_epp_kubernetes_watch_events_total',
        'Watch events received for the pool and its pods.',
      ],
      [
        'malformed',
        'llmd_epp_kubernetes_malformed_objects_total',
        'Objects that could not be read, skipped.',
      ],
      [
        'errors',
        'llmd_epp_kubernetes_errors_total',
        'Failed lists or watches (each retried after a backoff).',
      ],
    ];
    for (const [field, name, help] of fields) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(stats()?.[field] ?? 0);
        },
      });
    }
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** What the metrics read of the Kubernetes watches (counts since start). */
export interface KubernetesWatchStats {
  readonly lists: number;
  readonly relists: number;
  readonly events: number;
  readonly malformed: number;
  readonly errors: number;
}

/** What the metrics need of an approximate prefix-cache producer. */
export interface PrefixIndexer {
  readonly typedName: { readonly type: string; readonly name: string };
  stats(): { readonly entries: number };
}

function inc(series: readonly { inc(n?: number): void }[]): void {
  for (let i = 0; i < series.length; i++) series[i]!.inc();
}

function dec(series: readonly GaugeSeries[]): void {
  for (let i = 0; i < series.length; i++) series[i]!.dec();
}

function observe(series: readonly HistogramSeries[], v: number): void {
  for (let i = 0; i < series.length; i++) series[i]!.observe(v);
}

function buildRequestVecs(r: Registry) {
  const counter = (name: string, help: string, labels: readonly string[]) =>
    new FastCounterVec(name, help, labels, r);
  const gauge = (name: string, help: string, labels: readonly string[]) =>
    new FastGaugeVec(name, help, labels, r);
  const hist = (name: string, help: string, labels: readonly string[], buckets: number[]) =>
    new FastHistogramVec(name, help, labels, buckets, r);
  return {
    requestTotal: counter('llm_d_epp_request_total', 'Total requests.', REQUEST_LABELS),
    legacyRequestTotal: counter('inference_objective_request_total', 'Total requests.', [
      ...LEGACY_REQUEST_LABELS,
      'priority',
    ]),
    errorTotal: counter('llm_d_epp_request_error_total', 'Errored requests.', [
      ...REQUEST_LABELS,
      'error_code',
    ]),
    legacyErrorTotal: counter('inference_objective_request_error_total', 'Errored requests.', [
      ...LEGACY_REQUEST_LABELS,
      'error_code',
    ]),
    duration: hist(
      'llm_d_epp_request_duration_seconds',
      'End-to-end request latency.',
      REQUEST_LABELS,
      LATENCY_BUCKETS,
    ),
    legacyDuration: hist(
      'inference_objective_request_duration_seconds',
      'End-to-end request latency.',
      LEGACY_REQUEST_LABELS,
      LATENCY_BUCKETS,
    ),
    requestSize: hist('llm_d_epp_request_size_bytes', 'Request body size.', REQUEST_LABELS, SIZE_BUCKETS),
    legacyRequestSize: hist(
      'inference_objective_request_sizes',
      'Request body size.',
      LEGACY_REQUEST_LABELS,
      SIZE_BUCKETS,
    ),
    responseSize: hist('llm_d_epp_response_size_bytes', 'Response body size.', REQUEST_LABELS, SIZE_BUCKETS),
    legacyResponseSize: hist(
      'inference_objective_response_sizes',
      'Response body size.',
      LEGACY_REQUEST_LABELS,
      SIZE_BUCKETS,
    ),
    inputTokens: hist('llm_d_epp_request_input_tokens', 'Input token count.', REQUEST_LABELS, TOKEN_BUCKETS),
    legacyInputTokens: hist(
      'inference_objective_input_tokens',
      'Input token count.',
      LEGACY_REQUEST_LABELS,
      TOKEN_BUCKETS,
    ),
    outputTokens: hist(
      'llm_d_epp_request_output_tokens',
      'Output token count.',
      REQUEST_LABELS,
      TOKEN_BUCKETS,
    ),
    legacyOutputTokens: hist(
      'inference_objective_output_tokens',
      'Output token count.',
      LEGACY_REQUEST_LABELS,
      TOKEN_BUCKETS,
    ),
    cachedTokens: hist(
      'llm_d_epp_request_cached_tokens',
      'Prompt tokens served from cache.',
      REQUEST_LABELS,
      TOKEN_BUCKETS,
    ),
    running: gauge('llm_d_epp_request_running', 'Requests currently in flight.', REQUEST_LABELS),
    legacyRunning: gauge('inference_objective_running_requests', 'Requests currently in flight.', [
      'model_name',
    ]),
    ntpot: hist(
      'llm_d_epp_request_ntpot_seconds',
      'Normalized time per output token.',
      REQUEST_LABELS,
      TPOT_BUCKETS,
    ),
    legacyNtpot: hist(
      'inference_objective_normalized_time_per_output_token_seconds',
      'Normalized time per output token.',
      LEGACY_REQUEST_LABELS,
      TPOT_BUCKETS,
    ),
    ttft: hist(
      'llm_d_epp_request_ttft_seconds',
      'Time to first token.',
      [...REQUEST_LABELS, 'streaming'],
      LATENCY_BUCKETS,
    ),
    streamingTpot: hist(
      'llm_d_epp_request_streaming_tpot_seconds',
      'Time per output token for streaming.',
      REQUEST_LABELS,
      TPOT_BUCKETS,
    ),
    streamingItl: hist(
      'llm_d_epp_request_streaming_itl_seconds',
      'Inter-token latency for streaming.',
      REQUEST_LABELS,
      TPOT_BUCKETS,
    ),
  };
}

function build(r: Registry, pool: () => PoolSnapshot | null) {
  // Pool gauges are computed when scraped: prom-client's `collect` hook is the right tool there.
  const registers = [r];

  const poolGauge = (names: [string, string], help: string, value: (eps: readonly Endpoint[]) => number) => {
    for (const name of names) {
      // Current standard-deviation series have no legacy twin.
      if (name === '') continue;
      new Gauge({
        name,
        help,
        labelNames: ['name'],
        registers,
        collect() {
          this.reset();
          const p = pool();
          if (p === null) return;
          const live = p.endpoints.filter((e) => !p.isStale(e));
          this.set({ name: p.name }, value(live));
        },
      });
    }
  };
  const mean = (xs: number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
  const sd = (xs: number[]): number => {
    if (xs.length === 0) return 0;
    const m = mean(xs);
    return Math.sqrt(mean(xs.map((x) => (x - m) ** 2)));
  };
  poolGauge(
    ['llm_d_epp_average_kv_cache_utilization', 'inference_pool_average_kv_cache_utilization'],
    'Mean KV-cache utilization across the pool.',
    (eps) => mean(eps.map((e) => e.metrics.kvCacheUsagePercent)),
  );
  poolGauge(
    ['llm_d_epp_average_queue_size', 'inference_pool_average_queue_size'],
    'Mean queue depth across the pool.',
    (eps) => mean(eps.map((e) => e.metrics.waitingQueueSize)),
  );
  poolGauge(
    ['llm_d_epp_average_running_requests', 'inference_pool_average_running_requests'],
    'Mean running requests across the pool.',
    (eps) => mean(eps.map((e) => e.metrics.runningRequestsSize)),
  );
  poolGauge(['llm_d_epp_std_dev_kv_cache_utilization', ''], 'Spread of KV-cache utilization.', (eps) =>
    sd(eps.map((e) => e.metrics.kvCacheUsagePercent)),
  );
  poolGauge(['llm_d_epp_std_dev_queue_size', ''], 'Spread of queue depth.', (eps) =>
    sd(eps.map((e) => e.metrics.waitingQueueSize)),
  );
  poolGauge(['llm_d_epp_std_dev_running_requests', ''], 'Spread of running requests.', (eps) =>
    sd(eps.map((e) => e.metrics.runningRequestsSize)),
  );
  poolGauge(
    ['llm_d_epp_ready_endpoints', 'inference_pool_ready_pods'],
    'Ready endpoints in the pool.',
    (eps) => eps.length,
  );
  for (const [name, endpointLabel] of [
    ['llm_d_epp_per_endpoint_queue_size', 'model_server_endpoint'],
    ['inference_pool_per_pod_queue_size', 'model_server_pod'],
  ] as const) {
    new Gauge({
      name,
      help: 'Queue depth of each endpoint.',
      labelNames: ['name', endpointLabel],
      registers,
      collect() {
        this.reset();
        const p = pool();
        if (p === null) return;
        for (const e of p.endpoints) {
          this.set({ name: p.name, [endpointLabel]: e.meta.name }, e.metrics.waitingQueueSize);
        }
      },
    });
  }

  const fc = (name: string, help: string, labels: readonly string[]) =>
    new FastCounterVec(name, help, labels, r);
  const fh = (name: string, help: string, labels: readonly string[], buckets: number[]) =>
    new FastHistogramVec(name, help, labels, buckets, r);
  const attemptLabels = ['status', 'target_model_name', 'endpoint_name', 'namespace', 'port'];
  const pluginLabels = ['extension_point', 'plugin_type', 'plugin_name'];
  return {
    info: new FastGaugeVec('llm_d_epp_info', 'Build information.', ['commit', 'build_ref'], r),
    legacyInfo: new FastGaugeVec(
      'inference_extension_info',
      'Build information.',
      ['commit', 'build_ref'],
      r,
    ),
    schedulerE2e: fh(
      'llm_d_epp_scheduler_e2e_duration_seconds',
      'End-to-end scheduling latency.',
      [],
      SCHEDULER_BUCKETS,
    ).child(),
    legacySchedulerE2e: fh(
      'inference_extension_scheduler_e2e_duration_seconds',
      'End-to-end scheduling latency.',
      [],
      SCHEDULER_BUCKETS,
    ).child(),
    attempts: fc('llm_d_epp_scheduler_attempts_total', 'Scheduling attempts.', attemptLabels),
    legacyAttempts: fc('inference_extension_scheduler_attempts_total', 'Scheduling attempts.', [
      'status',
      'target_model_name',
      'pod_name',
      'namespace',
      'port',
    ]),
    pluginDuration: fh(
      'llm_d_epp_plugin_duration_seconds',
      'Per-plugin execution time (sampled).',
      pluginLabels,
      SCHEDULER_BUCKETS,
    ),
    legacyPluginDuration: fh(
      'inference_extension_plugin_duration_seconds',
      'Per-plugin execution time (sampled).',
      pluginLabels,
      SCHEDULER_BUCKETS,
    ),
    pluginErrors: fc(
      'llm_d_epp_plugin_errors_total',
      'Plugins that threw during a scheduling cycle.',
      pluginLabels,
    ),
    disagg: fc('llm_d_epp_disagg_decision_total', 'Requests by disaggregation decision.', [
      'plugin_name',
      'plugin_type',
      'model_name',
      'decision_type',
    ]),
    legacyDisagg: fc(
      'llm_d_inference_scheduler_disagg_decision_total',
      'Requests by disaggregation decision.',
      ['model_name', 'decision_type'],
    ),
    pollErrors: fc('llm_d_epp_datalayer_poll_errors_total', 'Data-source poll failures.', ['source_type']),
    legacyPollErrors: fc(
      'llm_d_inference_scheduler_datalayer_poll_errors_total',
      'Data-source poll failures.',
      ['source_type'],
    ),
    extractErrors: fc('llm_d_epp_datalayer_extract_errors_total', 'Extractor failures.', [
      'source_type',
      'extractor_type',
    ]),
    legacyExtractErrors: fc(
      'llm_d_inference_scheduler_datalayer_extract_errors_total',
      'Extractor failures.',
      ['source_type', 'extractor_type'],
    ),
    requestProcessing: fh(
      'llm_d_epp_request_processing_duration_seconds',
      'Time from request receipt until the request has been scheduled and sent.',
      [],
      SCHEDULER_BUCKETS,
    ).child(),
  };
}
