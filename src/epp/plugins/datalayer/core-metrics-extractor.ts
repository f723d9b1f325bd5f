/**
 * `core-metrics-extractor`: reads the model server's queue, running requests, KV usage, LoRA state
 * and KV-cache geometry off a scraped page into the endpoint's metrics. Which metric names to read
 * depends on the engine, named by the endpoint label `llm-d.ai/engine-type` (legacy
 * `inference.networking.k8s.io/engine-type`), default `vllm`. `engineConfigs` entries are merged field
 * by field over the built-in engine of the same name (an empty string disables a metric) or add new
 * engines. Every spec is parsed at creation; a bad one fails start-up naming the field.
 */
import { z } from 'zod';
import { ConfigError } from '../../../core/errors.js';
import type { MetricsPage } from '../../datastore/prometheus-text.js';
import type { MutableEndpoint } from '../../framework/datalayer.js';
import type { Endpoint } from '../../framework/endpoint.js';
import { definePlugin, type PluginHandle, type TypedName } from '../../framework/plugin.js';
import { METRICS_KIND, type MetricsExtractor } from './metrics-extractor.js';
import { largestSample, latestSample, parseMetricSpec, type MetricSpec } from './metric-spec.js';

export const TYPE = 'core-metrics-extractor';
export const ENGINE_LABEL_KEY = 'llm-d.ai/engine-type';
export const LEGACY_ENGINE_LABEL_KEY = 'inference.networking.k8s.io/engine-type';
export const DEFAULT_ENGINE = 'vllm';

const SPEC_FIELDS = [
  'queuedRequestsSpec',
  'runningRequestsSpec',
  'kvUsageSpec',
  'loraSpec',
  'cacheInfoSpec',
  'cacheBlockSizeSpec',
  'cacheNumBlocksSpec',
] as const;

const customMetrics = z.union([
  z.record(z.string()),
  z.array(z.object({ name: z.string().min(1), spec: z.string() }).strict()),
]);

const engineConfig = z
  .object({
    name: z.string().min(1),
    queuedRequestsSpec: z.string().optional(),
    runningRequestsSpec: z.string().optional(),
    kvUsageSpec: z.string().optional(),
    loraSpec: z.string().optional(),
    cacheInfoSpec: z.string().optional(),
    cacheBlockSizeLabelName: z.string().optional(),
    cacheNumBlocksLabelName: z.string().optional(),
    cacheBlockSizeSpec: z.string().optional(),
    cacheNumBlocksSpec: z.string().optional(),
    customMetrics: customMetrics.optional(),
  })
  .strict();

export type EngineConfig = z.output<typeof engineConfig>;

export const paramsSchema = z
  .object({
    engineLabelKey: z.string().min(1).default(ENGINE_LABEL_KEY),
    defaultEngine: z.string().min(1).default(DEFAULT_ENGINE),
    engineConfigs: z.array(engineConfig).default([]),
  })
  .strict();

export type CoreMetricsExtractorParams = z.output<typeof paramsSchema>;

/** Upstream's built-in engines (`extractor/metrics/factories.go`). */
export const BUILTIN_ENGINES: readonly EngineConfig[] = Object.freeze([
  {
    name: 'vllm',
    queuedRequestsSpec: 'vllm:num_requests_waiting',
    runningRequestsSpec: 'vllm:num_requests_running',
    kvUsageSpec: 'vllm:kv_cache_usage_perc',
    loraSpec: 'vllm:lora_requests_info',
    cacheInfoSpec: 'vllm:cache_config_info',
  },
  {
    name: 'sglang',
    queuedRequestsSpec: 'sglang:num_queue_reqs',
    runningRequestsSpec: 'sglang:num_running_reqs',
    kvUsageSpec: 'sglang:token_usage',
    cacheInfoSpec: 'sglang:cache_config_info',
    cacheBlockSizeLabelName: 'page_size',
    cacheNumBlocksLabelName: 'num_pages',
  },
  {
    name: 'trtllm-serve',
    queuedRequestsSpec: 'trtllm_num_requests_waiting',
    runningRequestsSpec: 'trtllm_num_requests_running',
    kvUsageSpec: 'trtllm_kv_cache_utilization',
    cacheBlockSizeSpec: 'trtllm_kv_cache_tokens_per_block',
    cacheNumBlocksSpec: 'trtllm_kv_cache_max_blocks',
  },
  {
    name: 'triton-tensorrt-llm',
    queuedRequestsSpec: 'nv_trt_llm_request_metrics{request_type=waiting}',
    runningRequestsSpec: 'nv_trt_llm_request_metrics{request_type=scheduled}',
    kvUsageSpec: 'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}',
    cacheBlockSizeSpec: 'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}',
    cacheNumBlocksSpec: 'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}',
  },
  {
    // Triton without the TensorRT-LLM backend (classic models): queue and executions only.
    name: 'triton',
    queuedRequestsSpec: 'nv_inference_pending_request_count',
    runningRequestsSpec: 'nv_inference_exec_count',
  },
]);

interface EngineMapping {
  readonly name: string;
  readonly queued: MetricSpec | null;
  readonly running: MetricSpec | null;
  readonly kvUsage: MetricSpec | null;
  readonly lora: MetricSpec | null;
  readonly cacheInfo: MetricSpec | null;
  readonly blockSizeLabel: string;
  readonly numBlocksLabel: string;
  readonly cacheBlockSize: MetricSpec | null;
  readonly cacheNumBlocks: MetricSpec | null;
  readonly custom: readonly { readonly name: string; readonly spec: MetricSpec }[];
}

export class CoreMetricsExtractor implements MetricsExtractor {
  readonly sourceKind = METRICS_KIND;
  readonly typedName: TypedName;
  readonly metricNames: ReadonlySet<string>;
  readonly engineLabelKey: string;
  readonly defaultEngine: string;
  private readonly engines: ReadonlyMap<string, EngineMapping>;
  private readonly clock: () => number;
  private readonly problems: string[] = [];

  constructor(name: string, params: CoreMetricsExtractorParams, clock: () => number) {
    this.typedName = { type: TYPE, name };
    this.clock = clock;
    this.engineLabelKey = params.engineLabelKey;
    this.defaultEngine = params.defaultEngine;
    this.engines = compileEngines(name, params.engineConfigs);
    if (!this.engines.has(params.defaultEngine)) {
      throw new ConfigError(
        `${TYPE} ${name}: defaultEngine ${JSON.stringify(params.defaultEngine)} is not one of ` +
          `${[...this.engines.keys()].join(', ')}`,
        'defaultEngine',
      );
    }
    const names = new Set<string>();
    for (const m of this.engines.values()) {
      for (const s of [
        m.queued,
        m.running,
        m.kvUsage,
        m.lora,
        m.cacheInfo,
        m.cacheBlockSize,
        m.cacheNumBlocks,
      ]) {
        if (s !== null) names.add(s.name);
      }
      for (const c of m.custom) names.add(c.spec.name);
    }
    this.metricNames = names;
  }

  /** The engine whose metric names apply to `endpoint`. */
  engineOf(endpoint: Endpoint): string {
    const labels = endpoint.meta.labels;
    const v = labels[this.engineLabelKey] || labels[LEGACY_ENGINE_LABEL_KEY];
    return v ? v : this.defaultEngine;
  }

  extract(page: MetricsPage, endpoint: MutableEndpoint): string | null {
    const engine = this.engineOf(endpoint);
    const m = this.engines.get(engine);
    if (m === undefined) return `unknown engine type ${JSON.stringify(engine)}`;
    const metrics = endpoint.metrics;
    // Reused: extract is synchronous, and a clean poll should allocate nothing for bookkeeping.
    const problems = this.problems;
    problems.length = 0;
    let updated = false;

    if (m.queued !== null) {
      const v = count(page, m.queued, problems);
      if (v !== null) {
        metrics.waitingQueueSize = v;
        updated = true;
      }
    }
    if (m.running !== null) {
      const v = count(page, m.running, problems);
      if (v !== null) {
        metrics.runningRequestsSize = v;
        updated = true;
      }
    }
    if (m.kvUsage !== null) {
      const s = latestSample(page, m.kvUsage);
      if (s === null) problems.push(m.kvUsage.missing);
      else if (!Number.isFinite(s.value)) problems.push(m.kvUsage.notFinite);
      else {
        // A fraction: scorers compute 1 − usage and must not see a value outside 0..1.
        metrics.kvCacheUsagePercent = Math.min(1, Math.max(0, s.value));
        updated = true;
      }
    }
    if (m.lora !== null) {
      // vLLM only exposes LoRA info once an adapter is loaded: absence is normal, not an error.
      const s = largestSample(page, m.lora);
      if (s !== null) {
        metrics.activeModels = adapters(s.labels['running_lora_adapters']);
        metrics.waitingModels = adapters(s.labels['waiting_lora_adapters']);
        const max = s.labels['max_lora'];
        if (max !== undefined && max !== '') {
          const n = nonNegativeInt(max);
          if (n === null) problems.push(`${m.lora.text}: max_lora ${JSON.stringify(max)} is not an integer`);
          else metrics.maxActiveModels = n;
        }
        updated = true;
      }
    }
    if (m.cacheInfo !== null) {
      const s = latestSample(page, m.cacheInfo);
      if (s === null) problems.push(m.cacheInfo.missing);
      else {
        const bs = s.labels[m.blockSizeLabel];
        const nb = s.labels[m.numBlocksLabel];
        if (bs !== undefined && bs !== '') {
          const n = nonNegativeInt(bs);
          if (n === null)
            problems.push(`${m.cacheInfo.text}: ${m.blockSizeLabel} ${JSON.stringify(bs)} is not an integer`);
          else metrics.cacheBlockSize = n;
        }
        if (nb !== undefined && nb !== '') {
          const n = nonNegativeInt(nb);
          if (n === null)
            problems.push(`${m.cacheInfo.text}: ${m.numBlocksLabel} ${JSON.stringify(nb)} is not an integer`);
          else metrics.cacheNumBlocks = n;
        }
        updated = true;
      }
    }
    if (m.cacheBlockSize !== null) {
      const v = count(page, m.cacheBlockSize, problems);
      if (v !== null) {
        metrics.cacheBlockSize = v;
        updated = true;
      }
    }
    if (m.cacheNumBlocks !== null) {
      const v = count(page, m.cacheNumBlocks, problems);
      if (v !== null) {
        metrics.cacheNumBlocks = v;
        updated = true;
      }
    }
    for (const c of m.custom) {
      const s = latestSample(page, c.spec);
      if (s === null) problems.push(c.spec.missing);
      else {
        metrics.custom.set(c.name, s.value);
        updated = true;
      }
    }
    if (updated) metrics.updateTime = this.clock();
    if (problems.length === 0) return null;
    const out = problems.length === 1 ? problems[0]! : problems.join('; ');
    problems.length = 0;
    return out;
  }
}

/** A gauge read as a count: Go's `int(value)` truncation, never negative. */
function count(page: MetricsPage, spec: MetricSpec, problems: string[]): number | null {
  const s = latestSample(page, spec);
  if (s === null) {
    problems.push(spec.missing);
    return null;
  }
  if (!Number.isFinite(s.value)) {
    problems.push(spec.notFinite);
    return null;
  }
  return Math.max(0, Math.trunc(s.value));
}

const EMPTY: ReadonlySet<string> = new Set();

function adapters(csv: string | undefined): ReadonlySet<string> {
  if (csv === undefined || csv === '') return EMPTY;
  const out = new Set<string>();
  for (const a of csv.split(',')) {
    const t = a.trim();
    if (t !== '') out.add(t);
  }
  return out;
}

function nonNegativeInt(s: string): number | null {
  return /^\s*\d{1,15}\s*$/.test(s) ? Number(s) : null;
}

function compileEngines(plugin: string, user: readonly EngineConfig[]): Map<string, EngineMapping> {
  const seen = new Set<string>();
  user.forEach((c, i) => {
    if (seen.has(c.name)) {
      throw new ConfigError(
        `${TYPE} ${plugin}: engineConfigs[${i}]: engine ${c.name} is configured twice`,
        'engineConfigs',
      );
    }
    seen.add(c.name);
  });
  const configs = new Map<string, { config: EngineConfig; where: string }>();
  for (const b of BUILTIN_ENGINES) configs.set(b.name, { config: b, where: `built-in engine ${b.name}` });
  user.forEach((c, i) => {
    const base = configs.get(c.name)?.config;
    configs.set(c.name, {
      config: base ? mergeConfig(base, c) : c,
      where: `engineConfigs[${i}] (${c.name})`,
    });
  });
  const out = new Map<string, EngineMapping>();
  for (const [name, { config, where }] of configs) out.set(name, compileEngine(plugin, config, where));
  return out;
}

/** Fields the user set win; fields left out keep the built-in's value. */
function mergeConfig(base: EngineConfig, over: EngineConfig): EngineConfig {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) out[k] = v;
  return out as EngineConfig;
}

function compileEngine(plugin: string, c: EngineConfig, where: string): EngineMapping {
  const spec = (field: string, text: string | undefined): MetricSpec | null => {
    try {
      return parseMetricSpec(text ?? '');
    } catch (err) {
      throw new ConfigError(`${TYPE} ${plugin}: ${where}.${field}: ${(err as Error).message}`, field);
    }
  };
  const specs = Object.fromEntries(SPEC_FIELDS.map((f) => [f, spec(f, c[f])])) as Record<
    (typeof SPEC_FIELDS)[number],
    MetricSpec | null
  >;
  const custom: { name: string; spec: MetricSpec }[] = [];
  const entries = Array.isArray(c.customMetrics)
    ? c.customMetrics.map((x) => [x.name, x.spec] as const)
    : Object.entries(c.customMetrics ?? {});
  for (const [name, text] of entries) {
    const s = spec(`customMetrics.${name}`, text);
    if (s === null)
      throw new ConfigError(`${TYPE} ${plugin}: ${where}.customMetrics.${name}: empty spec`, 'customMetrics');
    custom.push({ name, spec: s });
  }
  return {
    name: c.name,
    queued: specs.queuedRequestsSpec,
    running: specs.runningRequestsSpec,
    kvUsage: specs.kvUsageSpec,
    lora: specs.loraSpec,
    cacheInfo: specs.cacheInfoSpec,
    blockSizeLabel: c.cacheBlockSizeLabelName || 'block_size',
    numBlocksLabel: c.cacheNumBlocksLabelName || 'num_gpu_blocks',
    cacheBlockSize: specs.cacheBlockSizeSpec,
    cacheNumBlocks: specs.cacheNumBlocksSpec,
    custom,
  };
}

export const definition = definePlugin({
  type: TYPE,
  params: paramsSchema,
  create: (name, params, handle: PluginHandle) => new CoreMetricsExtractor(name, params, handle.clock),
});
