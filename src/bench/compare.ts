/**
 * `llmd bench compare`: the same workload against a fresh `llmd up` stack per routing configuration
 * (a preset name or an EPP config file), one after the other, so that every configuration starts from
 * cold caches on the same fleet. Returns each run's summary; writes them side by side as a table
 * (text and Markdown), a grouped-bar chart (TTFT and output throughput per configuration) and JSON.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startStack, type StackPaths, type UpResult } from '../cluster/command.js';
import { parseFlags, resolveTopology, type Routing, type Topology } from '../cluster/topology.js';
import { ConfigError } from '../core/errors.js';
import { createLogger, type LogLevel } from '../core/log.js';
import { BenchConfigError } from './errors.js';
import { mergeOptions, parseBenchOptions } from './options.js';
import { runBench, type BenchProgress, type BenchSummary } from './run.js';
import { toJson } from './report/files.js';
import { escapeXml, fmt, fmtTick, niceTicks } from './report/svg.js';
import { textTable } from './report/table.js';

/** Preset names accepted instead of an EPP config file: routing, and whether P/D is on. */
export const COMPARE_PRESETS: Readonly<Record<string, { routing: Routing; pd: boolean }>> = {
  random: { routing: 'random', pd: false },
  load: { routing: 'load', pd: false },
  approx: { routing: 'approx', pd: false },
  precise: { routing: 'precise', pd: false },
  'pd-approx': { routing: 'approx', pd: true },
  'pd-precise': { routing: 'precise', pd: true },
};

/** One configuration under test. */
export interface CompareTarget {
  /** Its name in the table and chart: the preset, or the file's base name. */
  readonly name: string;
  readonly routing: Routing | null;
  /** The EPP config file, when not a preset. */
  readonly config: string | null;
  /** P/D preset: at least one prefill server. */
  readonly pd: boolean;
}

/** A preset name, or a path to an EndpointPickerConfig (relative to `cwd`). */
export function resolveTarget(spec: string, cwd = process.cwd()): CompareTarget {
  const s = spec.trim();
  const preset = COMPARE_PRESETS[s];
  if (preset !== undefined) return { name: s, routing: preset.routing, config: null, pd: preset.pd };
  const file = path.resolve(cwd, s);
  if (!existsSync(file)) {
    throw new ConfigError(
      `--configs: ${s} is neither a preset (${Object.keys(COMPARE_PRESETS).join(', ')}) nor a file`,
    );
  }
  return { name: path.basename(s).replace(/\.(ya?ml|json)$/i, ''), routing: null, config: file, pd: false };
}

/** The fleet every configuration runs on. */
export interface CompareStack {
  /** Decode servers (default 4). */
  readonly decode?: number;
  /** Prefill servers; P/D presets use at least 1, the others none unless a config file is given. */
  readonly prefill?: number;
  readonly model?: string;
  readonly hardware?: string;
  /** Extra `llmd serve` flags for every server. */
  readonly serverArgs?: readonly string[];
  readonly logLevel?: LogLevel;
  readonly startTimeoutMs?: number;
}

export interface CompareOptions {
  /** Preset names or EPP config files, in the order they run. */
  readonly configs: readonly string[];
  /** Bench options as in bench.yaml (without `url`; `model` defaults to the stack's). */
  readonly bench: Record<string, unknown>;
  readonly stack?: CompareStack;
  /** Directory for compare.json, compare.svg, compare.md and one bench folder per configuration. */
  readonly output?: string;
  /** Where dist/cli.js is (default: found from this module). */
  readonly paths?: StackPaths;
  readonly cwd?: string;
}

export interface CompareHooks {
  onStackUp?: (
    target: CompareTarget,
    url: string,
    index: number,
    total: number,
    pids: readonly number[],
  ) => void;
  onProgress?: (target: CompareTarget, p: BenchProgress) => void;
  onRunDone?: (run: CompareRun) => void;
  signal?: AbortSignal;
}

export interface CompareRun {
  readonly name: string;
  readonly config: string;
  /** Seconds to start the stack, and to run the bench. */
  readonly startup_s: number;
  readonly bench_s: number;
  readonly summary: BenchSummary;
}

export interface CompareResult {
  readonly started_at: string;
  readonly duration_s: number;
  readonly stack: Required<Omit<CompareStack, 'logLevel' | 'startTimeoutMs'>>;
  readonly runs: CompareRun[];
  readonly files: { dir: string; json: string; svg: string; markdown: string } | null;
}

const DEFAULT_MODEL = 'Qwen/Qwen3-8B';

/** dist/cli.js and its watchdog, whether this module runs from dist/ or from the sources. */
export function defaultPaths(): StackPaths {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const dist of [path.resolve(here, '..'), path.resolve(here, '../../dist')]) {
    const cli = path.join(dist, 'cli.js');
    const watchdog = path.join(dist, 'cluster', 'watchdog.js');
    if (existsSync(cli) && existsSync(watchdog)) return { cli, preload: pathToFileURL(watchdog).href };
  }
  throw new ConfigError('llmd bench compare: dist/cli.js not found; run `npm run build` first');
}

function topologyFor(target: CompareTarget, s: CompareStack, cwd: string): Topology {
  const prefill = target.pd ? Math.max(1, s.prefill ?? 1) : target.config !== null ? (s.prefill ?? 0) : 0;
  const flags = parseFlags({
    port: 0,
    decode: s.decode ?? 4,
    prefill,
    model: s.model ?? DEFAULT_MODEL,
    hardware: s.hardware,
    routing: target.routing ?? undefined,
    config: target.config ?? undefined,
    indexer: target.routing === 'precise' || target.config !== null ? 'embedded' : 'off',
    logLevel: s.logLevel ?? 'error',
    startTimeout: s.startTimeoutMs,
  });
  const t = resolveTopology({
    flags,
    readText: (p) => readFileSync(p, 'utf8'),
    resolvePath: (p) => path.resolve(cwd, p),
  });
  const args = [...(s.serverArgs ?? [])];
  return { ...t, decode: { ...t.decode, args }, prefill: { ...t.prefill, args } };
}

/** Runs the bench against a fresh stack per configuration, in order; stops each stack before the next. */
export async function runCompare(o: CompareOptions, hooks: CompareHooks = {}): Promise<CompareResult> {
  if (o.configs.length === 0) throw new ConfigError('--configs: give at least one configuration');
  const cwd = o.cwd ?? process.cwd();
  const targets = o.configs.map((c) => resolveTarget(c, cwd));
  const names = new Set<string>();
  for (const t of targets) {
    if (names.has(t.name)) throw new ConfigError(`--configs: ${t.name} is given twice`);
    names.add(t.name);
  }
  const stack = o.stack ?? {};
  const model = stack.model ?? (typeof o.bench.model === 'string' ? o.bench.model : DEFAULT_MODEL);
  const s: CompareStack = { ...stack, model };
  // Every input is checked before the first stack starts.
  const topologies = targets.map((t) => topologyFor(t, s, cwd));
  const benchFor = (t: CompareTarget, url: string) =>
    parseBenchOptions(
      mergeOptions(o.bench, {
        url,
        model,
        label: t.name,
        output: o.output !== undefined ? path.join(o.output, t.name) : undefined,
      }),
    );
  if (o.bench.url !== undefined) {
    throw new BenchConfigError('compare starts its own stacks: leave out url', 'url');
  }
  benchFor(targets[0]!, 'http://127.0.0.1:1');
  const paths = o.paths ?? defaultPaths();
  const logger = createLogger(stack.logLevel === 'silent' ? 'silent' : 'warn', 'compare', process.stderr);

  const startedAt = new Date();
  const t0 = performance.now();
  const runs: CompareRun[] = [];
  for (let i = 0; i < targets.length; i++) {
    if (hooks.signal?.aborted) break;
    const target = targets[i]!;
    const ts = performance.now();
    const up: UpResult = await startStack(topologies[i]!, logger, paths);
    let failure: Error | null = null;
    up.supervisor.onFailure((err) => (failure = err));
    try {
      const startup = (performance.now() - ts) / 1000;
      hooks.onStackUp?.(
        target,
        up.gatewayUrl,
        i,
        targets.length,
        up.components.map((c) => c.pid),
      );
      const tb = performance.now();
      const summary = await runBench(benchFor(target, up.gatewayUrl), {
        ...(hooks.signal !== undefined ? { signal: hooks.signal } : {}),
        onProgress: (p) => hooks.onProgress?.(target, p),
      });
      if (failure !== null) throw failure;
      const run: CompareRun = {
        name: target.name,
        config: target.config ?? target.name,
        startup_s: startup,
        bench_s: (performance.now() - tb) / 1000,
        summary,
      };
      runs.push(run);
      hooks.onRunDone?.(run);
    } finally {
      await up.supervisor.stop();
    }
  }
  const result: CompareResult = {
    started_at: startedAt.toISOString(),
    duration_s: (performance.now() - t0) / 1000,
    stack: {
      decode: stack.decode ?? 4,
      prefill: stack.prefill ?? 0,
      model,
      hardware: stack.hardware ?? 'H100',
      serverArgs: stack.serverArgs ?? [],
    },
    runs,
    files: null,
  };
  if (o.output === undefined) return result;
  await mkdir(o.output, { recursive: true });
  const files = {
    dir: o.output,
    json: path.join(o.output, 'compare.json'),
    svg: path.join(o.output, 'compare.svg'),
    markdown: path.join(o.output, 'compare.md'),
  };
  const out = { ...result, files };
  await writeFile(files.svg, compareChart(runs));
  await writeFile(files.markdown, compareMarkdown(runs) + '\n');
  await writeFile(
    files.json,
    toJson({
      ...out,
      runs: runs.map((r) => ({
        name: r.name,
        config: r.config,
        startup_s: r.startup_s,
        bench_s: r.bench_s,
        aggregate: r.summary.aggregate,
        workload: r.summary.workload,
        stages: r.summary.stages.map((st) => ({
          index: st.index,
          warmup: st.warmup,
          description: st.description,
          metrics: st.metrics,
        })),
      })),
    }),
  );
  return out;
}

export const COMPARE_COLUMNS = [
  'config',
  'reqs',
  'fail',
  'req/s',
  'out tok/s',
  'TTFT mean ms',
  'TTFT p50 ms',
  'TTFT p90 ms',
  'TPOT mean ms',
  'E2E p90 s',
  'cache hit %',
];

const ms = (s: number): string => fmt(s * 1000);

export function compareRow(r: CompareRun): string[] {
  const a = r.summary.aggregate;
  const l = a.latency;
  return [
    r.name,
    String(a.requests.total),
    String(a.requests.failures),
    fmt(a.throughput.requests_per_sec),
    fmt(a.throughput.output_tokens_per_sec),
    ms(l.time_to_first_token.mean),
    ms(l.time_to_first_token.p50),
    ms(l.time_to_first_token.p90),
    ms(l.time_per_output_token.mean),
    fmt(l.request_latency.p90),
    a.kv_cache_hit_percent === null ? '–' : a.kv_cache_hit_percent.toFixed(1),
  ];
}

/** The side-by-side table for the terminal. */
export function compareTable(runs: readonly CompareRun[]): string {
  return textTable(COMPARE_COLUMNS, runs.map(compareRow));
}

/** The same as a Markdown table (numbers right-aligned). */
export function compareMarkdown(runs: readonly CompareRun[]): string {
  const head = `| ${COMPARE_COLUMNS.join(' | ')} |`;
  const rule = `| ${COMPARE_COLUMNS.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`;
  const rows = runs.map((r) => `| ${compareRow(r).join(' | ')} |`);
  return [head, rule, ...rows].join('\n');
}

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

interface BarPanel {
  title: string;
  yLabel: string;
  groups: readonly string[];
  series: readonly { name: string; values: readonly number[] }[];
}

/** One panel of grouped bars at (x, y), size w × h. */
function barPanel(
  p: BarPanel,
  x: number,
  y: number,
  w: number,
  h: number,
  colors: readonly string[],
): string {
  const m = { top: 40, right: 12, bottom: 44, left: 56 };
  const pw = w - m.left - m.right;
  const ph = h - m.top - m.bottom;
  const max = Math.max(0, ...p.series.flatMap((s) => s.values.filter(Number.isFinite)));
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1]!;
  const sy = (v: number): number => y + m.top + ph - (v / top) * ph;
  const gw = pw / Math.max(1, p.groups.length);
  const bw = (gw * 0.7) / Math.max(1, p.series.length);
  const parts: string[] = [];
  parts.push(
    `<text x="${x + w / 2}" y="${y + 22}" text-anchor="middle" font-size="14" font-weight="600">${escapeXml(p.title)}</text>`,
  );
  for (const t of ticks) {
    const ty = sy(t);
    parts.push(
      `<line x1="${x + m.left}" x2="${x + m.left + pw}" y1="${ty}" y2="${ty}" stroke="#e5e7eb"/>`,
      `<text x="${x + m.left - 6}" y="${ty + 4}" text-anchor="end" font-size="11" fill="#4b5563">${fmtTick(t)}</text>`,
    );
  }
  parts.push(
    `<text transform="translate(${x + 14},${y + m.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#374151">${escapeXml(p.yLabel)}</text>`,
  );
  p.groups.forEach((g, gi) => {
    const gx = x + m.left + gi * gw + gw * 0.15;
    p.series.forEach((s, si) => {
      const v = s.values[gi] ?? NaN;
      if (!Number.isFinite(v)) return;
      const bx = gx + si * bw;
      const by = sy(v);
      parts.push(
        `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(y + m.top + ph - by).toFixed(1)}" fill="${colors[si % colors.length]}"><title>${escapeXml(`${g} ${s.name}: ${fmt(v)}`)}</title></rect>`,
        `<text x="${(bx + (bw - 2) / 2).toFixed(1)}" y="${(by - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#111827">${fmt(v)}</text>`,
      );
    });
    parts.push(
      `<text x="${(x + m.left + gi * gw + gw / 2).toFixed(1)}" y="${y + m.top + ph + 18}" text-anchor="middle" font-size="12">${escapeXml(g)}</text>`,
    );
  });
  parts.push(
    `<line x1="${x + m.left}" x2="${x + m.left + pw}" y1="${y + m.top + ph}" y2="${y + m.top + ph}" stroke="#6b7280"/>`,
  );
  if (p.series.length > 1) {
    p.series.forEach((s, si) => {
      const lx = x + m.left + si * 90;
      const ly = y + h - 12;
      parts.push(
        `<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${colors[si % colors.length]}"/>`,
        `<text x="${lx + 14}" y="${ly}" font-size="11">${escapeXml(s.name)}</text>`,
      );
    });
  }
  return parts.join('\n');
}

/** Two panels of grouped bars: TTFT p50/p90 (s) and output tokens/s, one group per configuration. */
export function compareChart(runs: readonly CompareRun[], title = 'llmd bench compare'): string {
  const W = 900;
  const H = 380;
  const groups = runs.map((r) => r.name);
  const agg = runs.map((r) => r.summary.aggregate);
  const ttft: BarPanel = {
    title: 'Time to first token',
    yLabel: 'seconds',
    groups,
    series: [
      { name: 'p50', values: agg.map((a) => a.latency.time_to_first_token.p50) },
      { name: 'p90', values: agg.map((a) => a.latency.time_to_first_token.p90) },
    ],
  };
  const tput: BarPanel = {
    title: 'Output throughput',
    yLabel: 'output tokens/s',
    groups,
    series: [{ name: 'output tok/s', values: agg.map((a) => a.throughput.output_tokens_per_sec) }],
  };
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="700">${escapeXml(title)}</text>`,
    barPanel(ttft, 0, 16, W / 2, H - 16, ['#93c5fd', PALETTE[0]!]),
    barPanel(tput, W / 2, 16, W / 2, H - 16, [PALETTE[2]!]),
    '</svg>',
    '',
  ].join('\n');
}
