/**
 * The files a run writes into its output directory:
 *
 * - `summary.json`: the BenchSummary (stages, aggregate, both reports);
 * - `benchmark_report.json`: llm-d's benchmark report v0.2 of the measured stages;
 * - `stage_<n>_benchmark_report.json`: the same for each stage;
 * - `requests.jsonl`: one line per request (written during the run);
 * - `report.html`: the HTML report with inline charts;
 * - `latency.svg`, `itl.svg`, `throughput.svg`, `requests.svg`: the charts alone.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BenchSummary } from '../run.js';
import { charts } from './charts.js';
import { htmlReport } from './html.js';

export interface OutputFiles {
  dir: string;
  summary: string;
  report: string;
  stageReports: string[];
  requests: string;
  html: string;
  svgs: string[];
}

/** JSON with non-finite numbers (empty statistics) written as null. */
export function toJson(value: unknown): string {
  return (
    JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) +
    '\n'
  );
}

export async function writeOutputs(
  dir: string,
  summary: BenchSummary,
  requestsPath: string,
): Promise<OutputFiles> {
  await mkdir(dir, { recursive: true });
  const files: OutputFiles = {
    dir,
    summary: path.join(dir, 'summary.json'),
    report: path.join(dir, 'benchmark_report.json'),
    stageReports: summary.stages.map((s) => path.join(dir, `stage_${s.index}_benchmark_report.json`)),
    requests: requestsPath,
    html: path.join(dir, 'report.html'),
    svgs: [],
  };
  const list = charts(summary);
  files.svgs = list.map((c) => path.join(dir, c.file));
  summary.files = files;
  await Promise.all([
    writeFile(files.summary, toJson(summary)),
    writeFile(files.report, toJson(summary.report)),
    ...summary.stages.map((s, i) => writeFile(files.stageReports[i]!, toJson(s.report))),
    writeFile(files.html, htmlReport(summary, list)),
    ...list.map((c, i) => writeFile(files.svgs[i]!, c.svg + '\n')),
  ]);
  return files;
}
