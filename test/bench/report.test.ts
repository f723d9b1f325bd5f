import { describe, expect, it } from 'vitest';
import { aggregate } from '../../src/bench/metrics.js';
import { parseBenchOptions } from '../../src/bench/options.js';
import { charts } from '../../src/bench/report/charts.js';
import { toJson } from '../../src/bench/report/files.js';
import { htmlReport } from '../../src/bench/report/html.js';
import { recordLine } from '../../src/bench/report/jsonl.js';
import { buildReport, uuid5 } from '../../src/bench/report/summary.js';
import { escapeXml, fmt, fmtTick, lineChart, niceTicks } from '../../src/bench/report/svg.js';
import { summaryTable, textTable } from '../../src/bench/report/table.js';
import type { BenchSummary, StageResult } from '../../src/bench/run.js';
import type { WorkloadDescription } from '../../src/bench/workload/workload.js';
import { rec, wellFormed } from './helpers.js';

const opts = parseBenchOptions({
  url: 'http://127.0.0.1:8000',
  model: 'Qwen/Qwen3-32B',
  label: 'a <b> & "c"',
  workload: {
    type: 'shared-prefix',
    num_groups: 150,
    num_prompts_per_group: 5,
    system_prompt_len: 6000,
    question_len: 1200,
    output_len: 1000,
  },
  load: {
    type: 'poisson',
    stages: [
      { rate: 3, duration: 20 },
      { rate: 10, duration: 20 },
    ],
    warmup: 5,
  },
  slo: { ttft_ms: 200 },
});
const workload: WorkloadDescription = {
  source: 'shared_prefix',
  input_seq_len: { distribution: 'fixed', value: 7200 },
  output_seq_len: { distribution: 'fixed', value: 1000 },
  multi_turn: { enabled: false },
  parameters: {},
};
const ctx = { opts, workload, startedAt: new Date(0), endedAt: new Date(60_000), version: '0.1.0' };

function summary(): BenchSummary {
  const stages: StageResult[] = opts.stages.map((stage, index) => {
    const records = [rec([100 + index * 50, 150 + index * 50, 200 + index * 60], { sent: 0, end: 400 })];
    const metrics = aggregate(records, opts.slo);
    return {
      index,
      warmup: stage.warmup,
      load: stage,
      description: 'x',
      metrics,
      report: buildReport(ctx, metrics, [stage], index),
    };
  });
  const agg = aggregate(
    [rec([100, 200], { sent: 0 }), rec([], { ok: false, status: 503, error: '503 - Service Unavailable' })],
    opts.slo,
  );
  return {
    version: '1',
    label: opts.label,
    description: '',
    url: opts.url,
    model: opts.model,
    api: 'completions',
    started_at: new Date(0).toISOString(),
    ended_at: new Date(60_000).toISOString(),
    duration_s: 60,
    workload,
    stages,
    aggregate: agg,
    report: buildReport(
      ctx,
      agg,
      stages.filter((s) => !s.warmup).map((s) => s.load),
      null,
    ),
    files: null,
  };
}

describe('benchmark report (llm-d v0.2)', () => {
  it('has the spec’s sections and field names', () => {
    const s = summary();
    const r = s.report;
    expect(r.version).toBe('0.2');
    expect(Object.keys(r)).toEqual(['version', 'run', 'scenario', 'results']);
    expect(Object.keys(r.run)).toEqual(['uid', 'eid', 'description', 'keywords', 'time']);
    expect(r.scenario.stack[0]!.standardized).toEqual({
      kind: 'inference_engine',
      tool: 'unknown',
      role: 'replica',
      model: { name: 'Qwen/Qwen3-32B' },
    });
    expect(r.scenario.load.standardized).toMatchObject({
      tool: 'llmd-bench',
      source: 'shared_prefix',
      input_seq_len: { distribution: 'fixed', value: 7200 },
      multi_turn: { enabled: false },
      rate_qps: null,
    });
    const a = r.results.request_performance.aggregate;
    expect(Object.keys(a.requests)).toEqual(
      expect.arrayContaining(['total', 'failures', 'input_length', 'output_length']),
    );
    expect(Object.keys(a.throughput)).toEqual(
      expect.arrayContaining(['output_tokens_per_sec', 'requests_per_sec', 'total_tokens_per_sec']),
    );
    expect(Object.keys(a.latency.time_to_first_token)).toEqual(
      expect.arrayContaining([
        'units',
        'mean',
        'min',
        'max',
        'p0p1',
        'p1',
        'p5',
        'p10',
        'p25',
        'p50',
        'p75',
        'p90',
        'p95',
        'p99',
        'p99p9',
      ]),
    );
    expect(a.latency.time_per_output_token.units).toBe('s/token');
    expect(s.stages[1]!.report.scenario.load.standardized.rate_qps).toBe(3);
    expect(s.stages[1]!.report.scenario.load.standardized.stage).toBe(1);
    // The experiment id is stable; the run id is not.
    expect(buildReport(ctx, s.aggregate, [], null).run.eid).toBe(r.run.eid);
    expect(buildReport(ctx, s.aggregate, [], null).run.uid).not.toBe(r.run.uid);
  });

  it('uuid5 matches RFC 4122', () => {
    expect(uuid5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8')).toBe(
      '2ed6657d-e927-568b-95e1-2665a8aea6a2',
    );
  });

  it('writes empty statistics as null in JSON', () => {
    expect(JSON.parse(toJson({ a: NaN, b: 1, c: Infinity }))).toEqual({ a: null, b: 1, c: null });
  });
});

describe('per-request JSONL', () => {
  it('one object per request with seconds and the metric names', () => {
    const line = recordLine(
      rec([1100, 1150, 1300], { sent: 1000, index: 3, cachedTokens: 64, cachedReported: true }),
      2,
    );
    expect(line).toMatchObject({
      index: 3,
      ok: true,
      start_time: 1,
      end_time: 1.3,
      output_tokens: 3,
      cached_tokens: 64,
      time_to_first_token: 0.1,
      time_per_output_token: 0.1,
      request_latency: 0.3,
      inter_token_latency_max: 0.15,
      turn: 2,
    });
    const s = JSON.stringify(line);
    expect(s).not.toContain('\n');
    expect(JSON.parse(s)).toEqual(line);
    expect(recordLine(rec([], { ok: false, error: 'timeout' })).time_to_first_token).toBeNull();
  });
});

describe('charts and HTML', () => {
  it('SVG charts are well-formed standalone documents, text escaped', () => {
    const svg = lineChart({
      title: 'T <&>',
      xLabel: 'x',
      yLabel: 'y',
      x: ['1', '2', '3'],
      series: [
        { name: 'a', values: [1, NaN, 3] },
        { name: 'b', values: [0.5, 2, 2.5], dashed: true },
      ],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('T &lt;&amp;&gt;');
    expect(wellFormed(svg)).toBe(true);
    // A gap splits the series' path.
    expect(svg.match(/<path d="M[^"]*M/)).not.toBeNull();
    expect(wellFormed(lineChart({ title: 't', xLabel: '', yLabel: '', x: [], series: [] }))).toBe(true);
  });

  it('the report has a chart per metric and well-formed HTML', () => {
    const s = summary();
    const list = charts(s);
    expect(list.map((c) => c.file)).toEqual(['latency.svg', 'itl.svg', 'throughput.svg', 'requests.svg']);
    for (const c of list) expect(wellFormed(c.svg)).toBe(true);
    // Warm-up excluded: two points per series.
    expect(list[0]!.svg.match(/<circle/g)!.length).toBe(2 * 4);
    const html = htmlReport(s, list);
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(wellFormed(html, ['meta'])).toBe(true);
    expect(html).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    expect(html).toContain('503 - Service Unavailable');
  });

  it('ticks, numbers and text tables', () => {
    expect(niceTicks(9.3)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(0)).toEqual([0, 1]);
    expect(fmt(13163)).toBe('13.2k');
    expect(fmt(0.156)).toBe('0.156');
    expect(fmt(NaN)).toBe('–');
    expect([25, 2.5, 12500, 100, 0.25, 0].map(fmtTick)).toEqual(['25', '2.5', '12.5k', '100', '0.25', '0']);
    expect(escapeXml(`"'`)).toBe('&quot;&#39;');
    expect(
      textTable(
        ['a', 'bb'],
        [
          ['x', '1'],
          ['yy', '22'],
        ],
      ),
    ).toBe('a   bb\n--  --\nx    1\nyy  22');
    const t = summaryTable(summary());
    expect(t).toContain('(warm-up)');
    expect(t).toContain('all measured');
    expect(t).toContain('failures: 503 - Service Unavailable × 1');
  });
});
