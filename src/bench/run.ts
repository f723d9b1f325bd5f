/**
 * `runBench`: one benchmark run, programmatically. Loads the tokenizer, builds the workload, sends each
 * stage's requests on schedule (rate stages) or in a closed loop (concurrency stages), measures them,
 * and returns the summary; with `output` set it also writes the JSON, JSONL, HTML and SVG files.
 *
 * Stages run in order; with `drain` (the default) a stage's in-flight requests finish before the next
 * one starts, so each stage's metrics are its own. A warm-up stage is measured and written to the
 * JSONL but left out of the aggregate.
 */
import { performance } from 'node:perf_hooks';
import { Rng } from '../core/rng.js';
import { packageVersion } from '../core/version.js';
import { loadTokenizer } from '../engine/tokenizer/tokenizer.js';
import { BenchClient, newRecord } from './client.js';
import { arrivals, describeStage, type Stage } from './load.js';
import { aggregate, type Aggregate, type RequestRecord } from './metrics.js';
import { parseBenchOptions, type BenchOptions, type BenchOptionsInput } from './options.js';
import { buildReport, type BenchmarkReport } from './report/summary.js';
import { writeOutputs, type OutputFiles } from './report/files.js';
import { JsonlWriter } from './report/jsonl.js';
import { createWorkload } from './workload/index.js';
import type { Workload, WorkloadDescription } from './workload/workload.js';

export interface StageResult {
  index: number;
  warmup: boolean;
  load: Stage;
  description: string;
  metrics: Aggregate;
  /** llm-d's benchmark report (v0.2) of this stage alone. */
  report: BenchmarkReport;
}

export interface BenchSummary {
  version: string;
  label: string;
  description: string;
  url: string;
  model: string;
  api: 'completions' | 'chat';
  started_at: string;
  ended_at: string;
  duration_s: number;
  workload: WorkloadDescription;
  stages: StageResult[];
  /** All measured (non-warm-up) stages together; throughput over the sum of their durations. */
  aggregate: Aggregate;
  /** llm-d's benchmark report (v0.2) of the measured stages together. */
  report: BenchmarkReport;
  /** What was written, when `output` was set. */
  files: OutputFiles | null;
}

export interface BenchProgress {
  stage: number;
  stages: number;
  warmup: boolean;
  description: string;
  /** Seconds since the stage started. */
  elapsed: number;
  sent: number;
  done: number;
  failures: number;
  inFlight: number;
  outputTokens: number;
}

export interface BenchHooks {
  /** Called about once a second, and at the end of each stage. */
  onProgress?: (p: BenchProgress) => void;
  /** Every finished request. */
  onRecord?: (r: RequestRecord) => void;
  /** Stop sending; in-flight requests finish and the summary covers what was measured. */
  signal?: AbortSignal;
}

const PROGRESS_MS = 1000;

/** Run a benchmark; options are validated first (a bad one is a BenchConfigError). */
export async function runBench(
  input: BenchOptionsInput | BenchOptions,
  hooks: BenchHooks = {},
): Promise<BenchSummary> {
  const opts = 'raw' in input ? (input as BenchOptions) : parseBenchOptions(input);
  const tokenizer = await loadTokenizer(opts.tokenizer);
  const workload = createWorkload(opts.workload, tokenizer, opts.seed);
  const maxConc = opts.stages.reduce(
    (m, s) => Math.max(m, s.type === 'concurrency' ? s.concurrency : opts.maxConcurrency),
    1,
  );
  const client = new BenchClient({
    url: opts.url,
    model: opts.model,
    api: opts.api,
    connections: maxConc,
    requestTimeoutMs: opts.requestTimeoutS * 1000,
    ignoreEos: opts.ignoreEos,
    headers: opts.headers,
    ...(opts.extraBody !== undefined ? { extraBody: opts.extraBody } : {}),
  });
  const jsonl = opts.output !== undefined ? await JsonlWriter.open(opts.output) : null;
  const startedAt = new Date();
  const t0 = performance.now();
  const runner = new StageRunner(client, workload, opts, hooks, t0, jsonl);
  const results: { stage: Stage; records: RequestRecord[] }[] = [];
  try {
    for (let i = 0; i < opts.stages.length; i++) {
      if (hooks.signal?.aborted) break;
      const stage = opts.stages[i]!;
      const records = await runner.run(i, stage);
      results.push({ stage, records });
      if (opts.intervalS > 0 && i + 1 < opts.stages.length) await sleep(opts.intervalS * 1000, hooks.signal);
    }
    await runner.idle();
  } finally {
    await client.close();
    await jsonl?.close();
  }
  const endedAt = new Date();
  const desc = workload.describe();
  const ctx = { opts, workload: desc, startedAt, endedAt, version: packageVersion() };
  const stages: StageResult[] = results.map(({ stage, records }, index) => {
    const metrics = aggregate(records, opts.slo);
    return {
      index,
      warmup: stage.warmup,
      load: stage,
      description: describeStage(stage),
      metrics,
      report: buildReport(ctx, metrics, [stage], index),
    };
  });
  const measured = stages.filter((s) => !s.warmup);
  const all: RequestRecord[] = [];
  let duration = 0;
  for (let i = 0; i < results.length; i++) {
    if (stages[i]!.warmup) continue;
    for (const r of results[i]!.records) all.push(r);
    duration += stages[i]!.metrics.time.duration;
  }
  const agg = aggregate(all, opts.slo, duration);
  const summary: BenchSummary = {
    version: '1',
    label: opts.label,
    description: opts.description,
    url: opts.url,
    model: opts.model,
    api: opts.api,
    started_at: startedAt.toISOString(),
    ended_at: endedAt.toISOString(),
    duration_s: (endedAt.getTime() - startedAt.getTime()) / 1000,
    workload: desc,
    stages,
    aggregate: agg,
    report: buildReport(
      ctx,
      agg,
      measured.map((s) => s.load),
      null,
    ),
    files: null,
  };
  if (opts.output !== undefined) summary.files = await writeOutputs(opts.output, summary, jsonl!.path);
  return summary;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Sends one stage's requests and collects their records. */
class StageRunner {
  private index = 0;
  private readonly arrivalRng: Rng;
  private waiters: (() => void)[] = [];
  private outstanding = 0;

  constructor(
    private readonly client: BenchClient,
    private readonly workload: Workload,
    private readonly opts: BenchOptions,
    private readonly hooks: BenchHooks,
    private readonly t0: number,
    private readonly jsonl: JsonlWriter | null,
  ) {
    this.arrivalRng = new Rng(opts.seed ^ 0x5bd1e995);
  }

  /** Resolves when nothing is in flight. */
  idle(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  run(stageIndex: number, stage: Stage): Promise<RequestRecord[]> {
    const records: RequestRecord[] = [];
    const start = performance.now();
    const progress: BenchProgress = {
      stage: stageIndex,
      stages: this.opts.stages.length,
      warmup: stage.warmup,
      description: describeStage(stage),
      elapsed: 0,
      sent: 0,
      done: 0,
      failures: 0,
      inFlight: 0,
      outputTokens: 0,
    };
    const report = (): void => {
      progress.elapsed = (performance.now() - start) / 1000;
      progress.inFlight = progress.sent - progress.done;
      this.hooks.onProgress?.(progress);
    };
    const ticker = setInterval(report, PROGRESS_MS);
    const signal = this.hooks.signal;

    return new Promise<RequestRecord[]>((resolve) => {
      let sending = true;
      let onSlot: (() => void) | null = null;
      let resolved = false;
      const finish = (): void => {
        if (sending || resolved) return;
        if (this.opts.drain && progress.done < progress.sent) return;
        resolved = true;
        clearInterval(ticker);
        report();
        resolve(records);
      };
      const send = (scheduledMs: number): void => {
        const i = this.index++;
        const req = this.workload.next(i);
        const rec = newRecord(i, stageIndex, stage.warmup, scheduledMs - this.t0, req);
        progress.sent++;
        this.outstanding++;
        this.client.send(req, rec, this.workload.needsText, (r, text) => {
          r.scheduledMs = scheduledMs - this.t0;
          r.sentMs -= this.t0;
          r.firstTokenMs -= this.t0;
          r.endMs -= this.t0;
          records.push(r);
          progress.done++;
          progress.outputTokens += r.outputTokens;
          if (!r.ok) progress.failures++;
          if (r.ok && text !== null) this.workload.onResponse(req, text, r.outputTokens);
          this.jsonl?.write(r, req.turn);
          this.hooks.onRecord?.(r);
          if (--this.outstanding === 0) {
            const w = this.waiters;
            this.waiters = [];
            for (const f of w) f();
          }
          if (onSlot !== null) onSlot();
          finish();
        });
      };

      if (stage.type === 'concurrency') {
        const limit = stage.num_requests ?? Infinity;
        const until = stage.duration !== undefined ? start + stage.duration * 1000 : Infinity;
        const more = (): boolean =>
          sending && progress.sent < limit && performance.now() < until && !(signal?.aborted ?? false);
        onSlot = () => {
          if (more()) send(performance.now());
          else sending = false;
        };
        const stopTimer =
          until !== Infinity
            ? setTimeout(() => {
                sending = false;
                finish();
              }, until - start)
            : null;
        signal?.addEventListener(
          'abort',
          () => {
            sending = false;
            finish();
          },
          { once: true },
        );
        for (let k = 0; k < stage.concurrency && more(); k++) send(performance.now());
        if (!more()) {
          sending = false;
          if (stopTimer !== null) clearTimeout(stopTimer);
          finish();
        }
        return;
      }

      const times = arrivals(stage, this.arrivalRng);
      const cap = this.opts.maxConcurrency;
      let next = 0;
      let timer: NodeJS.Timeout | null = null;
      const pump = (): void => {
        timer = null;
        if (!sending) return;
        if (signal?.aborted) {
          sending = false;
          finish();
          return;
        }
        const now = performance.now();
        while (next < times.length) {
          const due = start + times[next]! * 1000;
          if (due > now + 0.5) break;
          if (this.client.active >= cap) return; // a finishing request calls pump again
          next++;
          send(due);
        }
        if (next >= times.length) {
          sending = false;
          finish();
          return;
        }
        timer = setTimeout(pump, Math.max(0, start + times[next]! * 1000 - performance.now()));
      };
      onSlot = () => {
        if (sending && timer === null) pump();
      };
      signal?.addEventListener(
        'abort',
        () => {
          if (timer !== null) clearTimeout(timer);
          timer = null;
          sending = false;
          finish();
        },
        { once: true },
      );
      pump();
    });
  }
}
