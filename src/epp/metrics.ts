/**
 * The EPP's Prometheus metrics, served on `--metrics-port`: llm-d's current `llm_d_epp_*` names
 * (llm-d-router `docs/metrics.md`) and, emitted in parallel, the legacy `inference_objective_*`,
 * `inference_pool_*`, `inference_extension_*` and `llm_d_inference_scheduler_*` twins that existing
 * dashboards read. Request-label values from clients are capped (1000 distinct, then `other`).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
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

/** The labels of one request, capped. */
export interface RequestLabels {
  readonly model_name: string;
  readonly target_model_name: string;
  readonly fairness_id: string;
  readonly priority: string;
}

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
  private pool: PoolSnapshot | null = null;

  constructor(info: { commit: string; buildRef: string }) {
    this.c = build(this.registry, () => this.pool);
    this.c.info.set({ commit: info.commit, build_ref: info.buildRef }, 1);
    this.c.legacyInfo.set({ commit: info.commit, build_ref: info.buildRef }, 1);
  }

  /** Pool gauges are computed from this at scrape time. */
  setPool(pool: PoolSnapshot): void {
    this.pool = pool;
  }

  labels(model: string, target: string, fairnessId: string, priority: number): RequestLabels {
    return {
      model_name: this.models.value(model),
      target_model_name: this.models.value(target),
      fairness_id: this.fairness.value(fairnessId),
      priority: String(priority),
    };
  }

  requestStarted(l: RequestLabels, sizeBytes: number): void {
    const legacy = { model_name: l.model_name, target_model_name: l.target_model_name };
    this.c.requestTotal.inc(l);
    this.c.legacyRequestTotal.inc(legacy);
    this.c.requestSize.observe(l, sizeBytes);
    this.c.legacyRequestSize.observe(legacy, sizeBytes);
    this.c.running.inc(l);
    this.c.legacyRunning.inc(legacy);
  }

  requestFinished(l: RequestLabels, seconds: number): void {
    const legacy = { model_name: l.model_name, target_model_name: l.target_model_name };
    this.c.running.dec(l);
    this.c.legacyRunning.dec(legacy);
    this.c.duration.observe(l, seconds);
    this.c.legacyDuration.observe(legacy, seconds);
  }

  requestError(l: RequestLabels, errorCode: string): void {
    this.c.errorTotal.inc({ ...l, error_code: errorCode });
    this.c.legacyErrorTotal.inc({
      model_name: l.model_name,
      target_model_name: l.target_model_name,
      error_code: errorCode,
    });
  }

  /** Rejected before it was counted as started (parse errors, no endpoints, shedding). */
  requestRejected(l: RequestLabels, errorCode: string): void {
    this.c.requestTotal.inc(l);
    this.c.legacyRequestTotal.inc({ model_name: l.model_name, target_model_name: l.target_model_name });
    this.requestError(l, errorCode);
  }

  responseObserved(
    l: RequestLabels,
    r: {
      sizeBytes: number;
      streaming: boolean;
      ttftSeconds: number | null;
      e2eSeconds: number;
      promptTokens: number | null;
      completionTokens: number | null;
      cachedTokens: number | null;
      itlSeconds: readonly number[];
    },
  ): void {
    const legacy = { model_name: l.model_name, target_model_name: l.target_model_name };
    this.c.responseSize.observe(l, r.sizeBytes);
    this.c.legacyResponseSize.observe(legacy, r.sizeBytes);
    if (r.ttftSeconds !== null) this.c.ttft.observe({ ...l, streaming: String(r.streaming) }, r.ttftSeconds);
    if (r.promptTokens !== null) {
      this.c.inputTokens.observe(l, r.promptTokens);
      this.c.legacyInputTokens.observe(legacy, r.promptTokens);
    }
    if (r.completionTokens !== null) {
      this.c.outputTokens.observe(l, r.completionTokens);
      this.c.legacyOutputTokens.observe(legacy, r.completionTokens);
      if (r.completionTokens > 0) {
        const ntpot = r.e2eSeconds / r.completionTokens;
        this.c.ntpot.observe(l, ntpot);
        this.c.legacyNtpot.observe(legacy, ntpot);
        if (r.streaming && r.ttftSeconds !== null && r.completionTokens > 1) {
          this.c.streamingTpot.observe(l, (r.e2eSeconds - r.ttftSeconds) / (r.completionTokens - 1));
        }
      }
    }
    if (r.cachedTokens !== null) this.c.cachedTokens.observe(l, r.cachedTokens);
    for (const itl of r.itlSeconds) this.c.streamingItl.observe(l, itl);
  }

  schedulerLatency(seconds: number): void {
    this.c.schedulerE2e.observe(seconds);
    this.c.legacySchedulerE2e.observe(seconds);
  }

  schedulerAttempt(status: 'success' | 'failure', targetModel: string, endpoint: Endpoint | null): void {
    const labels = {
      status,
      target_model_name: this.models.value(targetModel),
      endpoint_name: endpoint?.meta.name ?? '',
      namespace: endpoint?.meta.namespace ?? '',
      port: endpoint ? String(endpoint.meta.port) : '',
    };
    this.c.attempts.inc(labels);
    this.c.legacyAttempts.inc(labels);
  }

  disaggDecision(plugin: { type: string; name: string }, model: string, decision: string): void {
    const m = this.models.value(model === '' ? 'unknown' : model);
    this.c.disagg.inc({
      plugin_name: plugin.name,
      plugin_type: plugin.type,
      model_name: m,
      decision_type: decision,
    });
    this.c.legacyDisagg.inc({ model_name: m, decision_type: decision });
  }

  pluginDuration(point: ExtensionPoint, type: string, name: string, seconds: number): void {
    const labels = { extension_point: point, plugin_type: type, plugin_name: name };
    this.c.pluginDuration.observe(labels, seconds);
    this.c.legacyPluginDuration.observe(labels, seconds);
  }

  pluginError(point: ExtensionPoint, type: string, name: string): void {
    this.c.pluginErrors.inc({ extension_point: point, plugin_type: type, plugin_name: name });
  }

  pollError(sourceType: string): void {
    this.c.pollErrors.inc({ source_type: sourceType });
    this.c.legacyPollErrors.inc({ source_type: sourceType });
  }

  extractError(sourceType: string, extractorType: string): void {
    this.c.extractErrors.inc({ source_type: sourceType, extractor_type: extractorType });
    this.c.legacyExtractErrors.inc({ source_type: sourceType, extractor_type: extractorType });
  }

  requestProcessing(seconds: number): void {
    this.c.requestProcessing.observe(seconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

function build(r: Registry, pool: () => PoolSnapshot | null) {
  const registers = [r];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers });
  const hist = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]) =>
    new Histogram<L>({ name, help, labelNames, buckets, registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Gauge<L>({ name, help, labelNames, registers });

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

  return {
    info: gauge('llm_d_epp_info', 'Build information.', ['commit', 'build_ref']),
    legacyInfo: gauge('inference_extension_info', 'Build information.', ['commit', 'build_ref']),
    requestTotal: counter('llm_d_epp_request_total', 'Total requests.', REQUEST_LABELS),
    legacyRequestTotal: counter(
      'inference_objective_request_total',
      'Total requests.',
      LEGACY_REQUEST_LABELS,
    ),
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
    legacyRunning: gauge(
      'inference_objective_running_requests',
      'Requests currently in flight.',
      LEGACY_REQUEST_LABELS,
    ),
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
    schedulerE2e: hist(
      'llm_d_epp_scheduler_e2e_duration_seconds',
      'End-to-end scheduling latency.',
      [],
      SCHEDULER_BUCKETS,
    ),
    legacySchedulerE2e: hist(
      'inference_extension_scheduler_e2e_duration_seconds',
      'End-to-end scheduling latency.',
      [],
      SCHEDULER_BUCKETS,
    ),
    attempts: counter('llm_d_epp_scheduler_attempts_total', 'Scheduling attempts.', [
      'status',
      'target_model_name',
      'endpoint_name',
      'namespace',
      'port',
    ]),
    legacyAttempts: counter('inference_extension_scheduler_attempts_total', 'Scheduling attempts.', [
      'status',
      'target_model_name',
      'endpoint_name',
      'namespace',
      'port',
    ]),
    pluginDuration: hist(
      'llm_d_epp_plugin_duration_seconds',
      'Per-plugin execution time (sampled).',
      ['extension_point', 'plugin_type', 'plugin_name'],
      SCHEDULER_BUCKETS,
    ),
    legacyPluginDuration: hist(
      'inference_extension_plugin_duration_seconds',
      'Per-plugin execution time (sampled).',
      ['extension_point', 'plugin_type', 'plugin_name'],
      SCHEDULER_BUCKETS,
    ),
    pluginErrors: counter('llm_d_epp_plugin_errors_total', 'Plugins that threw during a scheduling cycle.', [
      'extension_point',
      'plugin_type',
      'plugin_name',
    ]),
    disagg: counter('llm_d_epp_disagg_decision_total', 'Requests by disaggregation decision.', [
      'plugin_name',
      'plugin_type',
      'model_name',
      'decision_type',
    ]),
    legacyDisagg: counter(
      'llm_d_inference_scheduler_disagg_decision_total',
      'Requests by disaggregation decision.',
      ['model_name', 'decision_type'],
    ),
    pollErrors: counter('llm_d_epp_datalayer_poll_errors_total', 'Data-source poll failures.', [
      'source_type',
    ]),
    legacyPollErrors: counter(
      'llm_d_inference_scheduler_datalayer_poll_errors_total',
      'Data-source poll failures.',
      ['source_type'],
    ),
    extractErrors: counter('llm_d_epp_datalayer_extract_errors_total', 'Extractor failures.', [
      'source_type',
      'extractor_type',
    ]),
    legacyExtractErrors: counter(
      'llm_d_inference_scheduler_datalayer_extract_errors_total',
      'Extractor failures.',
      ['source_type', 'extractor_type'],
    ),
    requestProcessing: hist(
      'llm_d_epp_request_processing_duration_seconds',
      'Time from request receipt until the request has been scheduled and sent.',
      [],
      SCHEDULER_BUCKETS,
    ),
  };
}
