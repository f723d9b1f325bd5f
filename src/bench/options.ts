/**
 * `llmd bench` options: one schema for `-f bench.yaml` and the flags (the command maps flags onto the
 * same shape; flags win over the file). Field names follow inference-perf's config where it has one
 * (`num_groups`, `request_timeout`, `stages: [{rate, duration}]`, …). Durations are seconds, or strings
 * with a unit (`30s`, `2m`).
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseDurationMs } from '../core/duration.js';
import { BenchConfigError } from './errors.js';
import type { Stage } from './load.js';
import type { Slo } from './metrics.js';
import { WorkloadSchema, type WorkloadConfig } from './workload/index.js';

const Seconds = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDurationMs(
    typeof v === 'number' ? v * 1000 : /^\d+(\.\d*)?$/.test(v.trim()) ? Number(v) * 1000 : v,
  );
  if (ms === null || !(ms > 0)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a positive duration: ${String(v)}` });
    return z.NEVER;
  }
  return ms / 1000;
});

const RateStageSchema = z.object({ rate: z.number().positive(), duration: Seconds }).strict();
const ConcurrencyStageSchema = z
  .object({
    concurrency: z.number().int().positive(),
    num_requests: z.number().int().positive().optional(),
    duration: Seconds.optional(),
  })
  .strict()
  .refine((s) => s.num_requests !== undefined || s.duration !== undefined, {
    message: 'a concurrency stage needs num_requests or duration',
  });

const LoadSchema = z
  .object({
    type: z.enum(['constant', 'poisson', 'concurrency', 'concurrent']).default('constant'),
    stages: z.array(z.union([RateStageSchema, ConcurrencyStageSchema])).min(1),
    /** Seconds of warm-up at the first stage's load, or a stage of its own; excluded from the results. */
    warmup: z.union([Seconds, RateStageSchema, ConcurrencyStageSchema]).optional(),
    /** Wait for a stage's requests to finish before the next stage starts (inference-perf does). */
    drain: z.boolean().default(true),
    /** Seconds of pause between stages. */
    interval: z.number().min(0).default(0),
  })
  .strict();

const SloSchema = z
  .object({
    ttft_ms: z.number().positive().optional(),
    tpot_ms: z.number().positive().optional(),
    itl_ms: z.number().positive().optional(),
    ntpot_ms: z.number().positive().optional(),
    e2e_ms: z.number().positive().optional(),
  })
  .strict();

export const BenchOptionsSchema = z
  .object({
    url: z.string().url(),
    model: z.string().min(1),
    api: z.enum(['completions', 'chat', 'completion']).default('completions'),
    /** Tokenizer directory or tokenizer.json for building prompts (default: the embedded Qwen3). */
    tokenizer: z.string().min(1).optional(),
    seed: z.number().int().default(0),
    ignore_eos: z.boolean().default(true),
    /** Seconds before a request is abandoned (counted as a `timeout` failure). */
    request_timeout: Seconds.default(300),
    /** In-flight cap for rate loads (inference-perf: workers × worker_max_concurrency). */
    max_concurrency: z.number().int().positive().default(1000),
    headers: z.record(z.string()).default({}),
    extra_body: z.record(z.unknown()).optional(),
    workload: WorkloadSchema,
    load: LoadSchema,
    slo: SloSchema.default({}),
    /** Directory for the results (JSON, JSONL, HTML, SVG); none: nothing is written. */
    output: z.string().min(1).optional(),
    description: z.string().default(''),
    /** Name of this run in the report (e.g. the stack configuration under test). */
    label: z.string().default(''),
  })
  .strict();

export type BenchOptionsInput = z.input<typeof BenchOptionsSchema>;
type Parsed = z.output<typeof BenchOptionsSchema>;

export interface BenchOptions {
  url: string;
  model: string;
  api: 'completions' | 'chat';
  tokenizer: string | undefined;
  seed: number;
  ignoreEos: boolean;
  requestTimeoutS: number;
  maxConcurrency: number;
  headers: Record<string, string>;
  extraBody: Record<string, unknown> | undefined;
  workload: WorkloadConfig;
  loadType: 'constant' | 'poisson' | 'concurrency';
  /** Warm-up stage first when there is one. */
  stages: Stage[];
  drain: boolean;
  intervalS: number;
  slo: Slo;
  output: string | undefined;
  description: string;
  label: string;
  /** The options as given (for the report's `native` section). */
  raw: Parsed;
}

/** Validate options; a bad field is a BenchConfigError naming its path (`workload.num_groups`). */
export function parseBenchOptions(input: unknown): BenchOptions {
  const r = BenchOptionsSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = issue.path.join('.');
    throw new BenchConfigError(
      `invalid bench option ${field === '' ? '' : `"${field}"`}: ${issue.message}`,
      field,
    );
  }
  const p = r.data;
  const loadType = p.load.type === 'concurrent' ? 'concurrency' : p.load.type;
  const toStage = (s: Parsed['load']['stages'][number], warmup: boolean, field: string): Stage => {
    if (loadType === 'concurrency') {
      if (!('concurrency' in s)) {
        throw new BenchConfigError(`${field}: a concurrency load's stages give concurrency`, field);
      }
      return {
        type: 'concurrency',
        concurrency: s.concurrency,
        num_requests: s.num_requests,
        duration: s.duration,
        warmup,
      };
    }
    if (!('rate' in s))
      throw new BenchConfigError(`${field}: a ${loadType} load's stages give rate and duration`, field);
    return { type: loadType, rate: s.rate, duration: s.duration, warmup };
  };
  const stages = p.load.stages.map((s, i) => toStage(s, false, `load.stages.${i}`));
  const w = p.load.warmup;
  if (w !== undefined) {
    if (typeof w === 'number') {
      const first = stages[0]!;
      stages.unshift(
        first.type === 'concurrency'
          ? { type: 'concurrency', concurrency: first.concurrency, duration: w, warmup: true }
          : { type: first.type, rate: first.rate, duration: w, warmup: true },
      );
    } else {
      stages.unshift(toStage(w, true, 'load.warmup'));
    }
  }
  return {
    url: p.url,
    model: p.model,
    api: p.api === 'completion' ? 'completions' : p.api,
    tokenizer: p.tokenizer,
    seed: p.seed,
    ignoreEos: p.ignore_eos,
    requestTimeoutS: p.request_timeout,
    maxConcurrency: p.max_concurrency,
    headers: p.headers,
    extraBody: p.extra_body,
    workload: p.workload,
    loadType,
    stages,
    drain: p.load.drain,
    intervalS: p.load.interval,
    slo: {
      ttftMs: p.slo.ttft_ms,
      tpotMs: p.slo.tpot_ms,
      itlMs: p.slo.itl_ms,
      ntpotMs: p.slo.ntpot_ms,
      e2eMs: p.slo.e2e_ms,
    },
    output: p.output,
    description: p.description,
    label: p.label,
    raw: p,
  };
}

/** A `bench.yaml` as an options object (not yet validated). */
export async function readBenchFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new BenchConfigError(`cannot read ${path}: ${(err as Error).message}`, 'file');
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new BenchConfigError(`${path} is not valid YAML: ${(err as Error).message}`, 'file');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BenchConfigError(`${path} must hold a mapping of options`, 'file');
  }
  return value as Record<string, unknown>;
}

/**
 * Stages from the `--stages` flag: `rate:duration,…` for rate loads (`10:30s`, `10:30`), or
 * `concurrency:num_requests,…` for a concurrency load.
 */
export function parseStagesFlag(text: string, concurrency: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const raw of text.split(',')) {
    const s = raw.trim();
    if (s === '') continue;
    const parts = s.split(':');
    const a = Number(parts[0]);
    if (parts.length !== 2 || !Number.isFinite(a)) {
      throw new BenchConfigError(
        `--stages: "${s}" is not ${concurrency ? 'concurrency:num_requests' : 'rate:duration'}`,
        'stages',
      );
    }
    if (concurrency) {
      const n = Number(parts[1]);
      if (!Number.isInteger(n))
        throw new BenchConfigError(`--stages: "${s}": ${parts[1]} is not a count`, 'stages');
      out.push({ concurrency: a, num_requests: n });
    } else {
      out.push({ rate: a, duration: parts[1] });
    }
  }
  if (out.length === 0) throw new BenchConfigError('--stages: no stage given', 'stages');
  return out;
}

/** Merge flag-built options over a file's (objects merged key by key; flags win). */
export function mergeOptions(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    const isObj = (x: unknown): x is Record<string, unknown> =>
      typeof x === 'object' && x !== null && !Array.isArray(x);
    // A workload of another type replaces the file's instead of merging into it.
    if (k === 'workload' && isObj(b) && isObj(v) && v.type !== undefined && b.type !== v.type) out[k] = v;
    else out[k] = isObj(b) && isObj(v) ? mergeOptions(b, v) : v;
  }
  return out;
}
