/** The report's charts, from a summary's measured stages: latency percentiles and throughput per stage. */
import type { BenchSummary, StageResult } from '../run.js';
import { lineChart } from './svg.js';

export interface Chart {
  /** File name of the standalone SVG. */
  file: string;
  svg: string;
}

/** The x label of a stage: its rate or concurrency. */
export function stageLabel(s: StageResult): string {
  return s.load.type === 'concurrency' ? `c=${s.load.concurrency}` : `${s.load.rate}`;
}

function xTitle(stages: readonly StageResult[]): string {
  const first = stages[0];
  if (first === undefined) return 'stage';
  return first.load.type === 'concurrency' ? 'concurrency (in-flight requests)' : 'request rate (req/s)';
}

export function charts(summary: BenchSummary): Chart[] {
  const stages = summary.stages.filter((s) => !s.warmup);
  const x = stages.map(stageLabel);
  const xLabel = xTitle(stages);
  const ms = (pick: (s: StageResult) => number): number[] => stages.map((s) => pick(s) * 1000);
  const ttft = (s: StageResult) => s.metrics.latency.time_to_first_token;
  const itl = (s: StageResult) => s.metrics.latency.inter_token_latency;
  const label = summary.label === '' ? '' : ` — ${summary.label}`;
  return [
    {
      file: 'latency.svg',
      svg: lineChart({
        title: `Time to first token${label}`,
        xLabel,
        yLabel: 'TTFT (ms)',
        x,
        series: [
          { name: 'p50', values: ms((s) => ttft(s).p50) },
          { name: 'p90', values: ms((s) => ttft(s).p90) },
          { name: 'p99', values: ms((s) => ttft(s).p99) },
          { name: 'mean', values: ms((s) => ttft(s).mean), dashed: true },
        ],
      }),
    },
    {
      file: 'itl.svg',
      svg: lineChart({
        title: `Inter-token latency and TPOT${label}`,
        xLabel,
        yLabel: 'ms per token',
        x,
        series: [
          { name: 'ITL p50', values: ms((s) => itl(s).p50) },
          { name: 'ITL p90', values: ms((s) => itl(s).p90) },
          { name: 'ITL p99', values: ms((s) => itl(s).p99) },
          {
            name: 'TPOT mean',
            values: ms((s) => s.metrics.latency.time_per_output_token.mean),
            dashed: true,
          },
        ],
      }),
    },
    {
      file: 'throughput.svg',
      svg: lineChart({
        title: `Output throughput${label}`,
        xLabel,
        yLabel: 'output tokens/s',
        x,
        series: [
          { name: 'output tok/s', values: stages.map((s) => s.metrics.throughput.output_tokens_per_sec) },
          ...(summary.aggregate.goodput !== null
            ? [
                {
                  name: 'goodput tok/s',
                  values: stages.map((s) => s.metrics.goodput?.output_tokens_per_sec ?? NaN),
                  dashed: true,
                },
              ]
            : []),
        ],
      }),
    },
    {
      file: 'requests.svg',
      svg: lineChart({
        title: `Completed requests per second${label}`,
        xLabel,
        yLabel: 'req/s',
        x,
        series: [
          { name: 'req/s', values: stages.map((s) => s.metrics.throughput.requests_per_sec) },
          ...(summary.aggregate.goodput !== null
            ? [
                {
                  name: 'goodput req/s',
                  values: stages.map((s) => s.metrics.goodput?.requests_per_sec ?? NaN),
                  dashed: true,
                },
              ]
            : []),
        ],
      }),
    },
  ];
}
