/**
 * llm-d's benchmark report ("BR", schema v0.2, spec C.3) from a run's aggregate: `version`, `run`,
 * `scenario` (the stack under test and the load, in `standardized` and `native` form) and
 * `results.request_performance.aggregate` with inference-perf's metric names. Fields the BR does not
 * define (goodput, KV-cache hit %, failures by status, schedule delay) sit beside the defined ones.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Stage } from '../load.js';
import type { Aggregate, LatencyStats, Stats } from '../metrics.js';
import type { BenchOptions } from '../options.js';
import type { WorkloadDescription } from '../workload/workload.js';

export interface ReportContext {
  opts: BenchOptions;
  workload: WorkloadDescription;
  startedAt: Date;
  endedAt: Date;
  version: string;
}

export interface BenchmarkReport {
  version: '0.2';
  run: {
    uid: string;
    eid: string;
    description: string;
    keywords: string[];
    time: { start: string; end: string; duration: number };
  };
  scenario: {
    stack: {
      metadata: { label: string; url: string };
      standardized: { kind: 'inference_engine'; tool: string; role: string; model: { name: string } };
    }[];
    load: {
      metadata: { stage: number | null };
      standardized: {
        tool: string;
        tool_version: string;
        source: string;
        input_seq_len: WorkloadDescription['input_seq_len'];
        output_seq_len: WorkloadDescription['output_seq_len'];
        rate_qps: number | null;
        concurrency: number | null;
        stage: number | null;
        multi_turn: { enabled: boolean };
      };
      native: { config: unknown };
    };
  };
  results: {
    request_performance: {
      aggregate: {
        requests: {
          total: number;
          failures: number;
          successes: number;
          failures_by_status: Record<string, number>;
          input_length: Stats;
          output_length: Stats;
        };
        latency: LatencyStats;
        throughput: {
          output_tokens_per_sec: number;
          requests_per_sec: number;
          total_tokens_per_sec: number;
          input_tokens_per_sec: number;
        };
        goodput: Aggregate['goodput'];
        kv_cache_hit_percent: number | null;
        schedule_delay: Stats;
        time: { duration: number };
      };
    };
  };
}

const NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8'; // RFC 4122 URL namespace

/** RFC 4122 version-5 UUID (SHA-1) of a name in a namespace. */
export function uuid5(name: string, namespace = NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const h = createHash('sha1').update(ns).update(name, 'utf8').digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** A stable id of the experiment: same target, model, workload and load give the same `eid`. */
function experimentId(ctx: ReportContext): string {
  const o = ctx.opts;
  return JSON.stringify([o.label, o.url, o.model, o.api, o.workload, o.stages, o.seed]);
}

export function buildReport(
  ctx: ReportContext,
  agg: Aggregate,
  stages: readonly Stage[],
  stageIndex: number | null,
): BenchmarkReport {
  const o = ctx.opts;
  const rate = stages.length === 1 && stages[0]!.type !== 'concurrency' ? stages[0]!.rate : null;
  const conc = stages.length === 1 && stages[0]!.type === 'concurrency' ? stages[0]!.concurrency : null;
  const keywords = ['llmd', ctx.workload.source, o.loadType, o.api];
  if (o.label !== '') keywords.push(o.label);
  return {
    version: '0.2',
    run: {
      uid: randomUUID(),
      eid: uuid5(experimentId(ctx)),
      description: o.description,
      keywords,
      time: {
        start: ctx.startedAt.toISOString(),
        end: ctx.endedAt.toISOString(),
        duration: agg.time.duration,
      },
    },
    scenario: {
      stack: [
        {
          metadata: { label: o.label, url: o.url },
          standardized: {
            kind: 'inference_engine',
            tool: 'unknown',
            role: 'replica',
            model: { name: o.model },
          },
        },
      ],
      load: {
        metadata: { stage: stageIndex },
        standardized: {
          tool: 'llmd-bench',
          tool_version: ctx.version,
          source: ctx.workload.source,
          input_seq_len: ctx.workload.input_seq_len,
          output_seq_len: ctx.workload.output_seq_len,
          rate_qps: rate,
          concurrency: conc,
          stage: stageIndex,
          multi_turn: ctx.workload.multi_turn,
        },
        native: { config: o.raw },
      },
    },
    results: {
      request_performance: {
        aggregate: {
          requests: {
            total: agg.requests.total,
            failures: agg.requests.failures,
            successes: agg.requests.successes,
            failures_by_status: agg.requests.failures_by_status,
            input_length: agg.requests.input_length,
            output_length: agg.requests.output_length,
          },
          latency: agg.latency,
          throughput: {
            output_tokens_per_sec: agg.throughput.output_tokens_per_sec,
            requests_per_sec: agg.throughput.requests_per_sec,
            total_tokens_per_sec: agg.throughput.total_tokens_per_sec,
            input_tokens_per_sec: agg.throughput.input_tokens_per_sec,
          },
          goodput: agg.goodput,
          kv_cache_hit_percent: agg.kv_cache_hit_percent,
          schedule_delay: agg.schedule_delay,
          time: { duration: agg.time.duration },
        },
      },
    },
  };
}
