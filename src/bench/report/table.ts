/** Plain-text tables for the terminal: the per-stage summary printed at the end of a run. */
import type { Aggregate } from '../metrics.js';
import type { BenchSummary } from '../run.js';
import { fmt } from './svg.js';

/** Columns padded to their widest cell; numbers right-aligned. */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const ms = (s: number): string => fmt(s * 1000);

export const SUMMARY_COLUMNS = [
  'stage',
  'reqs',
  'fail',
  'req/s',
  'out tok/s',
  'TTFT p50 ms',
  'TTFT p90 ms',
  'TTFT p99 ms',
  'TPOT mean ms',
  'ITL p50 ms',
  'ITL p99 ms',
  'E2E p50 s',
  'cache hit %',
  'goodput %',
];

export function summaryRow(name: string, a: Aggregate): string[] {
  const l = a.latency;
  return [
    name,
    String(a.requests.total),
    String(a.requests.failures),
    fmt(a.throughput.requests_per_sec),
    fmt(a.throughput.output_tokens_per_sec),
    ms(l.time_to_first_token.p50),
    ms(l.time_to_first_token.p90),
    ms(l.time_to_first_token.p99),
    ms(l.time_per_output_token.mean),
    ms(l.inter_token_latency.p50),
    ms(l.inter_token_latency.p99),
    fmt(l.request_latency.p50),
    a.kv_cache_hit_percent === null ? '–' : a.kv_cache_hit_percent.toFixed(1),
    a.goodput === null ? '–' : a.goodput.percent.toFixed(1),
  ];
}

/** The summary table: one row per stage (warm-up marked), then the measured stages together. */
export function summaryTable(s: BenchSummary): string {
  const rows = s.stages.map((st) =>
    summaryRow(`${st.index}${st.warmup ? ' (warm-up)' : ''} ${st.description}`, st.metrics),
  );
  rows.push(summaryRow('all measured', s.aggregate));
  let text = textTable(SUMMARY_COLUMNS, rows);
  const failures = Object.entries(s.aggregate.requests.failures_by_status);
  if (failures.length > 0) text += '\nfailures: ' + failures.map(([k, v]) => `${k} × ${v}`).join(', ');
  return text;
}
