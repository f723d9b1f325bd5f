/**
 * The HTML report: one self-contained page (inline CSS and SVG, no script) with the run's parameters,
 * the per-stage table, the charts and the failures.
 */
import type { Stats } from '../metrics.js';
import type { BenchSummary } from '../run.js';
import type { Chart } from './charts.js';
import { escapeXml as esc, fmt } from './svg.js';
import { SUMMARY_COLUMNS, summaryRow } from './table.js';

const CSS = `
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #e5e7eb;padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f4f6}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem}
dt{color:#6b7280}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
.charts svg{border:1px solid #e5e7eb;max-width:100%;height:auto}
`;

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return (
    '<table><thead><tr>' +
    header.map((h) => `<th>${esc(h)}</th>`).join('') +
    '</tr></thead><tbody>' +
    rows.map((r) => '<tr>' + r.map((c) => `<td>${esc(c)}</td>`).join('') + '</tr>').join('') +
    '</tbody></table>'
  );
}

function statsRow(name: string, s: Stats, scale: number): string[] {
  return [
    name,
    String(s.count),
    ...[s.mean, s.min, s.p50, s.p90, s.p95, s.p99, s.max].map((v) => fmt(v * scale)),
  ];
}

export function htmlReport(s: BenchSummary, charts: readonly Chart[]): string {
  const a = s.aggregate;
  const l = a.latency;
  const params: [string, string][] = [
    ['target', s.url],
    ['model', s.model],
    ['API', s.api],
    ['workload', `${s.workload.source} ${JSON.stringify(s.workload.parameters)}`],
    ['input length', JSON.stringify(s.workload.input_seq_len)],
    ['output length', JSON.stringify(s.workload.output_seq_len)],
    ['started', s.started_at],
    ['duration', `${s.duration_s.toFixed(1)} s`],
  ];
  if (s.label !== '') params.unshift(['label', s.label]);
  if (s.description !== '') params.push(['description', s.description]);
  if (a.goodput !== null) params.push(['SLOs (ms)', JSON.stringify(a.goodput.constraints)]);
  const stageRows = s.stages.map((st) =>
    summaryRow(`${st.index}${st.warmup ? ' (warm-up)' : ''} ${st.description}`, st.metrics),
  );
  stageRows.push(summaryRow('all measured', a));
  const latencyRows = [
    statsRow('TTFT (ms)', l.time_to_first_token, 1000),
    statsRow('TPOT (ms/token)', l.time_per_output_token, 1000),
    statsRow('ITL (ms)', l.inter_token_latency, 1000),
    statsRow('normalized TPOT (ms/token)', l.normalized_time_per_output_token, 1000),
    statsRow('E2E (s)', l.request_latency, 1),
    statsRow('input tokens', a.requests.input_length, 1),
    statsRow('output tokens', a.requests.output_length, 1),
    statsRow('schedule delay (ms)', a.schedule_delay, 1000),
  ];
  const failures = Object.entries(a.requests.failures_by_status).map(([k, v]) => [k, String(v)]);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmd bench${s.label === '' ? '' : ` — ${esc(s.label)}`}</title>
<style>${CSS}</style>
</head>
<body>
<h1>llmd bench${s.label === '' ? '' : ` — ${esc(s.label)}`}</h1>
<dl>${params.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>
<h2>Stages</h2>
${table(SUMMARY_COLUMNS, stageRows)}
<h2>Charts</h2>
<div class="charts">
${charts.map((c) => c.svg).join('\n')}
</div>
<h2>Latency, all measured stages</h2>
${table(['metric', 'count', 'mean', 'min', 'p50', 'p90', 'p95', 'p99', 'max'], latencyRows)}
<h2>Failures</h2>
${failures.length === 0 ? '<p>None.</p>' : table(['status', 'count'], failures)}
</body>
</html>
`;
}
