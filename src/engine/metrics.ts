/**
 * `/metrics` of `llmd serve`: vLLM's Prometheus names, types, labels and buckets (vllm/v1/metrics/
 * loggers.py), so that llm-d's EPP, dashboards and alerts work unchanged. Gauges are read from the
 * engine when scraped; counters and histograms are fed as requests finish and tokens are delivered.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { FastHistogram } from '../core/metrics.js';
import type { EngineStats, FinishReason, RequestTimings } from './core/types.js';

const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
  80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
  960.0, 1920.0, 7680.0,
];
/** Fine below 3 ms, where the server's own goal lies (bench/engine.ts reads it). */
const DELIVERY_LAG_BUCKETS = [
  0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0012, 0.0014, 0.0016,
  0.0018, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/** vLLM's 1-2-5 series up to `max` (build_1_2_5_buckets). */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exp = 0; ; exp++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** exp;
      if (v > max) return out;
      out.push(v);
    }
  }
}

export interface EngineMetricsOptions {
  modelName: string;
  maxModelLen: number;
  /** `vllm:cache_config_info` labels; every value is stringified as vLLM does. */
  cacheConfig: Record<string, string | number | boolean>;
  stats: () => EngineStats;
}

/** Per-sequence figures at completion, in seconds. */
export interface FinishedSequence {
  finishReason: FinishReason;
  numPromptTokens: number;
  numGenerationTokens: number;
  maxTokens: number;
  timings: RequestTimings;
}

export class EngineMetrics {
  readonly registry = new Registry();
  private readonly labels: { model_name: string; engine: string };
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly requestSuccess: Counter;
  private readonly prefixQueries: Counter;
  private readonly prefixHits: Counter;
  private readonly preemptions: Counter;
  private readonly ttft: FastHistogram;
  private readonly itl: FastHistogram;
  private readonly tpotLegacy: FastHistogram;
  private readonly requestTpot: FastHistogram;
  private readonly e2e: FastHistogram;
  private readonly queueTime: FastHistogram;
  private readonly inferenceTime: FastHistogram;
  private readonly prefillTime: FastHistogram;
  private readonly decodeTime: FastHistogram;
  private readonly requestPromptTokens: FastHistogram;
  private readonly requestGenerationTokens: FastHistogram;
  private readonly requestMaxTokens: FastHistogram;
  private readonly requestN: FastHistogram;
  private readonly iterationTokens: FastHistogram;
  private readonly deliveryLag: FastHistogram;
  private readonly nixlXferTime: FastHistogram;
  private readonly nixlBytes: FastHistogram;
  private readonly nixlDescriptors: FastHistogram;
  private readonly nixlFailedTransfers: Counter;
  /** Engine counters are cumulative; Prometheus counters take increments. */
  private seen = { queries: 0, hits: 0, preemptions: 0 };
  /** Per-token counts wait here until a scrape. */
  private pendingGenerationTokens = 0;
  private pendingPromptTokens = 0;

  constructor(private readonly opts: EngineMetricsOptions) {
    const r = this.registry;
    this.labels = { model_name: opts.modelName, engine: '0' };
    const labelNames = ['model_name', 'engine'] as const;
    const stats = opts.stats;
    const labels = this.labels;

    new Gauge({
      name: 'vllm:num_requests_running',
      help: 'Number of requests in model execution batches.',
      labelNames,
      registers: [r],
      collect() {
        this.set(labels, stats().numRunning);
      },
    });
    new Gauge({
      name: 'vllm:num_requests_waiting',
      help: 'Number of requests waiting to be processed.',
      labelNames,
      registers: [r],
      collect() {
        this.set(labels, stats().numWaiting);
      },
    });
    new Gauge({
      name: 'vllm:kv_cache_usage_perc',
      help: 'KV-cache usage. 1 means 100 percent usage.',
      labelNames,
      registers: [r],
      collect() {
        this.set(labels, stats().kvCacheUsage);
      },
    });
    const infoLabels: Record<string, string> = { engine: '0' };
    for (const [k, v] of Object.entries(opts.cacheConfig)) infoLabels[k] = String(v);
    const info = new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Information of the LLMEngine CacheConfig',
      labelNames: Object.keys(infoLabels),
      registers: [r],
    });
    info.set(infoLabels, 1);

    const counter = (name: string, help: string, extra: string[] = []): Counter =>
      new Counter({ name, help, labelNames: [...labelNames, ...extra], registers: [r] });
    this.promptTokens = counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.');
    this.generationTokens = counter('vllm:generation_tokens_total', 'Number of generation tokens processed.');
    // vLLM labels this `finished_reason`; llm-d-inference-sim uses `finish_reason`. Both are set so
    // queries written for either work.
    this.requestSuccess = counter('vllm:request_success_total', 'Count of successfully processed requests.', [
      'finished_reason',
      'finish_reason',
    ]);
    this.prefixQueries = counter(
      'vllm:prefix_cache_queries_total',
      'Prefix cache queries, in terms of number of queried tokens.',
    );
    this.prefixHits = counter(
      'vllm:prefix_cache_hits_total',
      'Prefix cache hits, in terms of number of cached tokens.',
    );
    this.preemptions = counter(
      'vllm:num_preemptions_total',
      'Cumulative number of preemption from the engine.',
    );
    for (const c of [
      this.promptTokens,
      this.generationTokens,
      this.prefixQueries,
      this.prefixHits,
      this.preemptions,
    ]) {
      c.inc(this.labels, 0);
    }

    // Several of these are observed for every streamed token.
    const hist = (name: string, help: string, buckets: number[]): FastHistogram =>
      new FastHistogram(name, help, buckets, labels, r);
    this.ttft = hist(
      'vllm:time_to_first_token_seconds',
      'Histogram of time to first token in seconds.',
      TTFT_BUCKETS,
    );
    this.itl = hist(
      'vllm:inter_token_latency_seconds',
      'Histogram of inter-token latency in seconds.',
      ITL_BUCKETS,
    );
    this.tpotLegacy = hist(
      'vllm:time_per_output_token_seconds',
      'Histogram of time per output token in seconds. DEPRECATED: use vllm:inter_token_latency_seconds.',
      ITL_BUCKETS,
    );
    this.requestTpot = hist(
      'vllm:request_time_per_output_token_seconds',
      'Histogram of time_per_output_token_seconds per request.',
      ITL_BUCKETS,
    );
    this.e2e = hist(
      'vllm:e2e_request_latency_seconds',
      'Histogram of e2e request latency in seconds.',
      REQUEST_LATENCY_BUCKETS,
    );
    this.queueTime = hist(
      'vllm:request_queue_time_seconds',
      'Histogram of time spent in WAITING phase for request.',
      REQUEST_LATENCY_BUCKETS,
    );
    this.inferenceTime = hist(
      'vllm:request_inference_time_seconds',
      'Histogram of time spent in RUNNING phase for request.',
      REQUEST_LATENCY_BUCKETS,
    );
    this.prefillTime = hist(
      'vllm:request_prefill_time_seconds',
      'Histogram of time spent in PREFILL phase for request.',
      REQUEST_LATENCY_BUCKETS,
    );
    this.decodeTime = hist(
      'vllm:request_decode_time_seconds',
      'Histogram of time spent in DECODE phase for request.',
      REQUEST_LATENCY_BUCKETS,
    );
    const tokenBuckets = buckets125(opts.maxModelLen);
    this.requestPromptTokens = hist(
      'vllm:request_prompt_tokens',
      'Number of prefill tokens processed.',
      tokenBuckets,
    );
    this.requestGenerationTokens = hist(
      'vllm:request_generation_tokens',
      'Number of generation tokens processed.',
      tokenBuckets,
    );
    this.requestMaxTokens = hist(
      'vllm:request_params_max_tokens',
      'Histogram of the max_tokens request parameter.',
      tokenBuckets,
    );
    this.requestN = hist('vllm:request_params_n', 'Histogram of the n request parameter.', [1, 2, 5, 10, 20]);
    this.iterationTokens = hist(
      'vllm:iteration_tokens_total',
      'Histogram of number of tokens per engine_step.',
      [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
    );
    this.deliveryLag = hist(
      'llmd:token_delivery_lag_seconds',
      'Delay between the end of an engine step (or the moment its outputs were handed over, if that was earlier) and the hand-over of each output to the client socket.',
      DELIVERY_LAG_BUCKETS,
    );
    // vLLM's NIXL connector metrics (vllm/distributed/kv_transfer/kv_connector/v1/nixl_connector.py).
    this.nixlXferTime = hist(
      'vllm:nixl_xfer_time_seconds',
      'Histogram of transfer duration for NIXL KV Cache transfers.',
      [0.001, 0.005, 0.0125, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0],
    );
    this.nixlBytes = hist(
      'vllm:nixl_bytes_transferred',
      'Histogram of bytes transferred per NIXL KV Cache transfers.',
      [2 ** 14, 2 ** 16, 2 ** 18, 2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26, 2 ** 28, 2 ** 30, 2 ** 32],
    );
    this.nixlDescriptors = hist(
      'vllm:nixl_num_descriptors',
      'Histogram of number of descriptors per NIXL KV Cache transfers.',
      [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
    );
    this.nixlFailedTransfers = new Counter({
      name: 'vllm:nixl_num_failed_transfers_total',
      help: 'Number of failed NIXL KV Cache transfers.',
      labelNames,
      registers: [r],
    });
    this.nixlFailedTransfers.inc(labels, 0);
  }

  /** A KV pull from a prefiller completed (P/D decode). */
  observeTransfer(seconds: number, bytes: number, blocks: number): void {
    this.nixlXferTime.observe(seconds);
    this.nixlBytes.observe(bytes);
    this.nixlDescriptors.observe(blocks);
  }

  transferFailed(): void {
    this.nixlFailedTransfers.inc(this.labels, 1);
  }

  private syncCounters(): void {
    if (this.pendingGenerationTokens > 0)
      this.generationTokens.inc(this.labels, this.pendingGenerationTokens);
    if (this.pendingPromptTokens > 0) this.promptTokens.inc(this.labels, this.pendingPromptTokens);
    this.pendingGenerationTokens = 0;
    this.pendingPromptTokens = 0;
    const s = this.opts.stats();
    if (s.prefixCacheQueries > this.seen.queries)
      this.prefixQueries.inc(this.labels, s.prefixCacheQueries - this.seen.queries);
    if (s.prefixCacheHits > this.seen.hits)
      this.prefixHits.inc(this.labels, s.prefixCacheHits - this.seen.hits);
    if (s.numPreemptions > this.seen.preemptions)
      this.preemptions.inc(this.labels, s.numPreemptions - this.seen.preemptions);
    this.seen = { queries: s.prefixCacheQueries, hits: s.prefixCacheHits, preemptions: s.numPreemptions };
  }

  /** One engine step ran with this many tokens. */
  observeStep(numTokens: number): void {
    this.iterationTokens.observe(numTokens);
  }

  /** Tokens of one sequence arrived `interval` seconds after its previous ones. */
  observeTokens(count: number, interval: number): void {
    this.pendingGenerationTokens += count;
    this.itl.observe(interval);
    this.tpotLegacy.observe(interval);
  }

  observeFirstToken(ttft: number, numPromptTokens: number): void {
    this.ttft.observe(ttft);
    this.pendingPromptTokens += numPromptTokens;
    this.pendingGenerationTokens += 1;
  }

  observeDeliveryLag(seconds: number): void {
    this.deliveryLag.observe(seconds);
  }

  observeRequest(n: number): void {
    this.requestN.observe(n);
  }

  observeFinished(f: FinishedSequence): void {
    const t = f.timings;
    if (f.finishReason !== 'abort') {
      this.requestSuccess.inc({
        ...this.labels,
        finished_reason: f.finishReason,
        finish_reason: f.finishReason,
      });
    }
    this.e2e.observe(t.finishedTime - t.arrivalTime);
    this.queueTime.observe(t.firstScheduledTime - t.arrivalTime);
    this.inferenceTime.observe(t.finishedTime - t.firstScheduledTime);
    this.prefillTime.observe(t.firstTokenTime - t.firstScheduledTime);
    this.decodeTime.observe(t.lastTokenTime - t.firstTokenTime);
    if (f.numGenerationTokens > 1) {
      this.requestTpot.observe((t.lastTokenTime - t.firstTokenTime) / (f.numGenerationTokens - 1));
    }
    this.requestPromptTokens.observe(f.numPromptTokens);
    this.requestGenerationTokens.observe(f.numGenerationTokens);
    this.requestMaxTokens.observe(f.maxTokens);
  }

  async render(): Promise<string> {
    // The engine keeps cumulative counters; they are copied over at scrape time.
    this.syncCounters();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
