import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import { parsePrometheusText } from '../../../../src/epp/datastore/prometheus-text.js';
import {
  CoreMetricsExtractor,
  definition,
  TYPE,
} from '../../../../src/epp/plugins/datalayer/core-metrics-extractor.js';
import { isMetricsExtractor } from '../../../../src/epp/plugins/datalayer/metrics-extractor.js';
import { create, makeEndpoint, testHandle } from '../../helpers.js';

function extractor(params: unknown = {}, now = 42): CoreMetricsExtractor {
  const handle = testHandle();
  handle.now = now;
  return create<CoreMetricsExtractor>(definition, params, handle);
}

function run(ex: CoreMetricsExtractor, text: string, labels: Record<string, string> = {}) {
  const ep = makeEndpoint({ labels, metrics: { updateTime: 0 } });
  const problem = ex.extract(parsePrometheusText(text, ex.metricNames), ep);
  return { m: ep.metrics, problem };
}

const VLLM = `
vllm:num_requests_waiting{model_name="m",engine="0"} 4
vllm:num_requests_running{model_name="m",engine="0"} 7
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.375
vllm:cache_config_info{engine="0",block_size="16",num_gpu_blocks="38587",cache_dtype="auto"} 1
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m",engine="0"} 3
`;

describe('core-metrics-extractor', () => {
  it('has the plugin shape', () => {
    const ex = extractor();
    expect(TYPE).toBe('core-metrics-extractor');
    expect(ex.typedName).toEqual({ type: TYPE, name: TYPE });
    expect(ex.sourceKind).toBe('metrics');
    expect(isMetricsExtractor(ex)).toBe(true);
  });

  it('reads vLLM metrics by default', () => {
    const { m, problem } = run(extractor({}, 1234), VLLM);
    expect(problem).toBeNull();
    expect(m).toMatchObject({
      waitingQueueSize: 4,
      runningRequestsSize: 7,
      kvCacheUsagePercent: 0.375,
      cacheBlockSize: 16,
      cacheNumBlocks: 38587,
      updateTime: 1234,
    });
    expect(m.activeModels.size).toBe(0);
  });

  it('asks the parser for the built-in engines’ names only', () => {
    const names = extractor().metricNames;
    for (const n of [
      'vllm:num_requests_waiting',
      'vllm:lora_requests_info',
      'sglang:token_usage',
      'trtllm_kv_cache_max_blocks',
      'nv_trt_llm_request_metrics',
    ]) {
      expect(names.has(n)).toBe(true);
    }
    expect(names.has('vllm:time_to_first_token_seconds_bucket')).toBe(false);
  });

  it('reads SGLang metrics on endpoints labelled sglang, also with the legacy label', () => {
    const page = `
sglang:num_queue_reqs{model_name="m"} 3
sglang:num_running_reqs{model_name="m"} 5
sglang:token_usage{model_name="m"} 0.5
sglang:cache_config_info{page_size="64",num_pages="1200"} 1
`;
    const ex = extractor();
    for (const labels of <Record<string, string>[]>[
      { 'llm-d.ai/engine-type': 'sglang' },
      { 'inference.networking.k8s.io/engine-type': 'sglang' },
    ]) {
      const { m, problem } = run(ex, page, labels);
      expect(problem).toBeNull();
      expect(m).toMatchObject({
        waitingQueueSize: 3,
        runningRequestsSize: 5,
        kvCacheUsagePercent: 0.5,
        cacheBlockSize: 64,
        cacheNumBlocks: 1200,
      });
    }
  });

  it('reads trtllm-serve gauges for block size and count', () => {
    const page = `
trtllm_num_requests_waiting 1
trtllm_num_requests_running 2
trtllm_kv_cache_utilization 0.1
trtllm_kv_cache_tokens_per_block 32
trtllm_kv_cache_max_blocks 4096
`;
    const { m, problem } = run(extractor(), page, { 'llm-d.ai/engine-type': 'trtllm-serve' });
    expect(problem).toBeNull();
    expect(m).toMatchObject({
      waitingQueueSize: 1,
      runningRequestsSize: 2,
      kvCacheUsagePercent: 0.1,
      cacheBlockSize: 32,
      cacheNumBlocks: 4096,
    });
  });

  it('reads Triton TensorRT-LLM series by label', () => {
    const page = `
nv_trt_llm_request_metrics{model="ensemble",request_type="waiting",version="1"} 6
nv_trt_llm_request_metrics{model="ensemble",request_type="scheduled",version="1"} 8
nv_trt_llm_request_metrics{model="ensemble",request_type="context",version="1"} 99
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="ensemble"} 0.2
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="ensemble"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="ensemble"} 512
`;
    const { m, problem } = run(extractor(), page, { 'llm-d.ai/engine-type': 'triton-tensorrt-llm' });
    expect(problem).toBeNull();
    expect(m).toMatchObject({
      waitingQueueSize: 6,
      runningRequestsSize: 8,
      kvCacheUsagePercent: 0.2,
      cacheBlockSize: 64,
      cacheNumBlocks: 512,
    });
  });

  it('reads LoRA info from the series with the largest value', () => {
    const page = `${VLLM}
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters=""} 1700000000.5
vllm:lora_requests_info{max_lora="4",running_lora_adapters="c, d",waiting_lora_adapters="e"} 1700000003.5
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1700000001.5
`;
    const { m, problem } = run(extractor(), page);
    expect(problem).toBeNull();
    expect([...m.activeModels]).toEqual(['c', 'd']);
    expect([...m.waitingModels]).toEqual(['e']);
    expect(m.maxActiveModels).toBe(4);
  });

  it('treats missing LoRA info as normal and other missing metrics as extract errors', () => {
    const { m, problem } = run(extractor(), 'vllm:num_requests_waiting 2\n');
    expect(m.waitingQueueSize).toBe(2);
    expect(m.updateTime).toBe(42);
    expect(problem).toBe(
      'vllm:num_requests_running: no matching sample; vllm:kv_cache_usage_perc: no matching sample; ' +
        'vllm:cache_config_info: no matching sample',
    );
    const none = run(extractor(), '');
    expect(none.m.updateTime).toBe(0);
  });

  it('uses the sample with the latest timestamp when several match', () => {
    const page = `${VLLM}
vllm:num_requests_waiting{model_name="m",engine="1"} 9 2000
vllm:num_requests_waiting{model_name="m",engine="2"} 5 1000
`;
    expect(run(extractor(), page).m.waitingQueueSize).toBe(9);
  });

  it('clamps KV usage to a fraction and rejects values that are not finite', () => {
    expect(run(extractor(), VLLM.replace('0.375', '1.7')).m.kvCacheUsagePercent).toBe(1);
    const r = run(extractor(), VLLM.replace('0.375', 'NaN').replace('} 4', '} +Inf'));
    expect(r.m.kvCacheUsagePercent).toBe(0);
    expect(r.m.waitingQueueSize).toBe(0);
    expect(r.problem).toMatch(/vllm:num_requests_waiting: value is not a finite number/);
    expect(r.problem).toMatch(/vllm:kv_cache_usage_perc: value is not a finite number/);
  });

  it('truncates counts like Go’s int() and never goes below zero', () => {
    const r = run(extractor(), VLLM.replace('} 4', '} 4.9').replace('} 7', '} -3'));
    expect(r.m.waitingQueueSize).toBe(4);
    expect(r.m.runningRequestsSize).toBe(0);
  });

  it('reports malformed cache info labels', () => {
    const r = run(extractor(), VLLM.replace('block_size="16"', 'block_size="sixteen"'));
    expect(r.problem).toBe('vllm:cache_config_info: block_size "sixteen" is not an integer');
    expect(r.m.cacheNumBlocks).toBe(38587);
  });

  it('merges engineConfigs over the built-in of the same name, field by field', () => {
    const ex = extractor({
      engineConfigs: [{ name: 'vllm', kvUsageSpec: 'vllm:gpu_cache_usage_perc', cacheInfoSpec: '' }],
    });
    const page = 'vllm:num_requests_waiting 1\nvllm:num_requests_running 2\nvllm:gpu_cache_usage_perc 0.9\n';
    const { m, problem } = run(ex, page);
    expect(problem).toBeNull();
    expect(m).toMatchObject({ waitingQueueSize: 1, runningRequestsSize: 2, kvCacheUsagePercent: 0.9 });
    expect(ex.metricNames.has('vllm:cache_config_info')).toBe(false);
  });

  it('adds new engines with custom metrics, and honours defaultEngine', () => {
    const ex = extractor({
      defaultEngine: 'mine',
      engineLabelKey: 'example.com/engine',
      engineConfigs: [
        {
          name: 'mine',
          queuedRequestsSpec: 'my_queue{pool="p1"}',
          runningRequestsSpec: 'my_running',
          customMetrics: { tokensPerSecond: 'my_tps', hits: 'my_hits{kind="prefix"}' },
        },
        {
          name: 'other',
          runningRequestsSpec: 'other_running',
          customMetrics: [{ name: 'x', spec: 'other_x' }],
        },
      ],
    });
    const page = `my_queue{pool="p0"} 100\nmy_queue{pool="p1"} 3\nmy_running 4\nmy_tps 55.5\nmy_hits{kind="prefix"} 7\nother_running 9\nother_x 1\n`;
    const unlabeled = run(ex, page);
    expect(unlabeled.problem).toBeNull();
    expect(unlabeled.m.waitingQueueSize).toBe(3);
    expect(unlabeled.m.runningRequestsSize).toBe(4);
    expect([...unlabeled.m.custom]).toEqual([
      ['tokensPerSecond', 55.5],
      ['hits', 7],
    ]);
    const other = run(ex, page, { 'example.com/engine': 'other' });
    expect(other.m.runningRequestsSize).toBe(9);
    expect(other.m.custom.get('x')).toBe(1);
    // The built-ins are still there.
    expect(run(ex, VLLM, { 'example.com/engine': 'vllm' }).m.waitingQueueSize).toBe(4);
  });

  it('reports an unknown engine and leaves the metrics alone', () => {
    const { m, problem } = run(extractor(), VLLM, { 'llm-d.ai/engine-type': 'mystery' });
    expect(problem).toBe('unknown engine type "mystery"');
    expect(m.updateTime).toBe(0);
  });

  it.each([
    [
      { engineConfigs: [{ name: 'vllm', kvUsageSpec: 'vllm:x{a=b' }] },
      /engineConfigs\[0\] \(vllm\)\.kvUsageSpec: .*not closed/,
    ],
    [
      { engineConfigs: [{ name: 'x', customMetrics: { a: '' } }] },
      /engineConfigs\[0\] \(x\)\.customMetrics\.a: empty spec/,
    ],
    [
      { engineConfigs: [{ name: 'x', customMetrics: { a: '1bad' } }] },
      /customMetrics\.a: .*not a metric name/,
    ],
    [{ defaultEngine: 'nope' }, /defaultEngine "nope" is not one of vllm, sglang/],
    [{ engineConfigs: [{ name: 'a' }, { name: 'a' }] }, /engineConfigs\[1\]: engine a is configured twice/],
  ])('fails at creation on %j', (params, message) => {
    expect(() => extractor(params)).toThrow(ConfigError);
    expect(() => extractor(params)).toThrow(message);
  });

  it('rejects unknown params', () => {
    expect(definition.params.safeParse({ engine: 'vllm' }).success).toBe(false);
    expect(definition.params.safeParse({ engineConfigs: [{ name: 'a', queueSpec: 'x' }] }).success).toBe(
      false,
    );
  });
});
