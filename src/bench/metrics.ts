/**
 * The benchmark's metric definitions, as inference-perf states them (spec C.1), and their summary
 * statistics. Times are milliseconds from one monotonic clock; reported values are seconds, as in
 * llm-d's benchmark report.
 *
 * - TTFT: first non-empty output chunk − request sent.
 * - E2E (request latency): response complete − request sent.
 * - TPOT: (E2E − TTFT) / (output tokens − 1); undefined for requests with fewer than 2 output tokens.
 * - ITL: every gap between consecutive non-empty output chunks, pooled over all requests.
 * - Normalized TPOT: E2E / output tokens.
 * - Throughput: totals over the wall time from the first send to the last completion.
 * - Goodput: requests meeting every SLO, per second (DistServe's definition, as inference-perf and vLLM).
 * - KV-cache hit %: 100 × cached prompt tokens / prompt tokens (`usage.prompt_tokens_details`).
 */

/** The percentiles inference-perf reports by default, and the keys llm-d's report names them by. */
export const PERCENTILES: readonly (readonly [number, string])[] = [
  [0.1, 'p0p1'],
  [1, 'p1'],
  [5, 'p5'],
  [10, 'p10'],
  [25, 'p25'],
  [50, 'p50'],
  [75, 'p75'],
  [90, 'p90'],
  [95, 'p95'],
  [99, 'p99'],
  [99.9, 'p99p9'],
];

export type PercentileKey =
  'p0p1' | 'p1' | 'p5' | 'p10' | 'p25' | 'p50' | 'p75' | 'p90' | 'p95' | 'p99' | 'p99p9';

/** Summary statistics of one metric, in llm-d's benchmark-report shape. */
export type Stats = {
  units: string;
  count: number;
  mean: number;
  stddev: number;
  min: number;
  max: number;
} & Record<PercentileKey, number>;

/** One finished request, successful or not, as the client measured it. */
export interface RequestRecord {
  /** Sequence number in the run (0-based, warm-up included). */
  index: number;
  stage: number;
  warmup: boolean;
  /** When the schedule wanted it sent, and when it was (ms on the run's clock). */
  scheduledMs: number;
  sentMs: number;
  /** First non-empty output chunk, or NaN when none arrived. */
  firstTokenMs: number;
  /** Response complete (or failed). */
  endMs: number;
  /** HTTP status, or 0 when no response arrived (connection error, timeout). */
  status: number;
  ok: boolean;
  /** A label for failures: "429 - Too Many Requests", "timeout", "connection error", … */
  error: string | null;
  /** From the server's usage when it sent one, else the workload's expected count. */
  promptTokens: number;
  /** From the server's usage when it sent one, else the number of non-empty chunks. */
  outputTokens: number;
  cachedTokens: number;
  /** Whether the server reported `prompt_tokens_details.cached_tokens`. */
  cachedReported: boolean;
  /** Gaps between consecutive non-empty output chunks (ms, single precision); `itlCount` are valid. */
  itl: Float32Array;
  itlCount: number;
  group: number | null;
  session: number | null;
}

/** Seconds from send to the first non-empty output chunk; NaN without one. */
export function ttftSeconds(r: RequestRecord): number {
  return (r.firstTokenMs - r.sentMs) / 1000;
}

/** Seconds from send to the end of the response. */
export function e2eSeconds(r: RequestRecord): number {
  return (r.endMs - r.sentMs) / 1000;
}

/** (E2E − TTFT) / (output tokens − 1), seconds per token; NaN for fewer than 2 output tokens. */
export function tpotSeconds(r: RequestRecord): number {
  if (r.outputTokens < 2 || Number.isNaN(r.firstTokenMs)) return NaN;
  return (r.endMs - r.firstTokenMs) / 1000 / (r.outputTokens - 1);
}

/** E2E / output tokens, seconds per token; NaN without output. */
export function ntpotSeconds(r: RequestRecord): number {
  if (r.outputTokens < 1) return NaN;
  return e2eSeconds(r) / r.outputTokens;
}

/**
 * The q-th percentile (0–100) of sorted values, interpolated linearly between closest ranks (numpy's
 * default, which inference-perf uses). NaN for no values.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = (q / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, n - 1);
  const lv = sorted[lo]!;
  return lv + (sorted[hi]! - lv) * (rank - lo);
}

/** Summary statistics of values (NaNs skipped); every field NaN when none remain. */
export function summarize(values: ArrayLike<number>, units: string): Stats {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isNaN(values[i]!)) n++;
  const sorted = new Float64Array(n);
  let j = 0;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) continue;
    sorted[j++] = v;
    sum += v;
  }
  sorted.sort();
  const mean = n === 0 ? NaN : sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (sorted[i]! - mean) ** 2;
  const stats = {
    units,
    count: n,
    mean,
    stddev: n === 0 ? NaN : Math.sqrt(sq / n),
    min: n === 0 ? NaN : sorted[0]!,
    max: n === 0 ? NaN : sorted[n - 1]!,
  } as Stats;
  for (const [q, key] of PERCENTILES) stats[key as PercentileKey] = percentile(sorted, q);
  return stats;
}

/** Service-level objectives in milliseconds; a request is good when it meets every one given. */
export interface Slo {
  ttftMs?: number | undefined;
  tpotMs?: number | undefined;
  itlMs?: number | undefined;
  ntpotMs?: number | undefined;
  e2eMs?: number | undefined;
}

export function hasSlo(slo: Slo): boolean {
  return (
    slo.ttftMs !== undefined ||
    slo.tpotMs !== undefined ||
    slo.itlMs !== undefined ||
    slo.ntpotMs !== undefined ||
    slo.e2eMs !== undefined
  );
}

/**
 * Whether a successful request meets the SLOs. TPOT is checked only when it is defined (≥ 2 output
 * tokens); the ITL objective holds for every gap of the request.
 */
export function meetsSlo(r: RequestRecord, slo: Slo): boolean {
  if (!r.ok) return false;
  if (slo.ttftMs !== undefined && !(ttftSeconds(r) * 1000 <= slo.ttftMs)) return false;
  if (slo.e2eMs !== undefined && !(e2eSeconds(r) * 1000 <= slo.e2eMs)) return false;
  if (slo.tpotMs !== undefined) {
    const t = tpotSeconds(r);
    if (!Number.isNaN(t) && !(t * 1000 <= slo.tpotMs)) return false;
  }
  if (slo.ntpotMs !== undefined && !(ntpotSeconds(r) * 1000 <= slo.ntpotMs)) return false;
  if (slo.itlMs !== undefined) {
    for (let i = 0; i < r.itlCount; i++) if (r.itl[i]! > slo.itlMs) return false;
  }
  return true;
}

export interface LatencyStats {
  time_to_first_token: Stats;
  time_per_output_token: Stats;
  inter_token_latency: Stats;
  normalized_time_per_output_token: Stats;
  request_latency: Stats;
}

export interface Throughput {
  requests_per_sec: number;
  input_tokens_per_sec: number;
  output_tokens_per_sec: number;
  total_tokens_per_sec: number;
}

export interface Goodput {
  constraints: Slo;
  /** Successful requests meeting every SLO. */
  good_requests: number;
  requests_per_sec: number;
  output_tokens_per_sec: number;
  /** 100 × good / successful requests. */
  percent: number;
}

/** What a set of requests (one stage, or all measured stages) adds up to. */
export interface Aggregate {
  requests: {
    total: number;
    successes: number;
    failures: number;
    /** Failure counts by label: "429 - Too Many Requests", "timeout", … */
    failures_by_status: Record<string, number>;
    input_length: Stats;
    output_length: Stats;
  };
  latency: LatencyStats;
  throughput: Throughput;
  goodput: Goodput | null;
  /** 100 × cached / prompt tokens over successful requests; null when the server never reported it. */
  kv_cache_hit_percent: number | null;
  /** Lateness of each send against its schedule (client saturation shows here). */
  schedule_delay: Stats;
  time: { start_ms: number; end_ms: number; duration: number };
}

/** Aggregate metrics of requests; throughput is over `durationS` when given, else first send → last end. */
export function aggregate(records: readonly RequestRecord[], slo: Slo, durationS?: number): Aggregate {
  const ok = records.filter((r) => r.ok);
  const n = ok.length;
  const ttft = new Float64Array(n);
  const tpot = new Float64Array(n);
  const ntpot = new Float64Array(n);
  const e2e = new Float64Array(n);
  const isl = new Float64Array(n);
  const osl = new Float64Array(n);
  let itlTotal = 0;
  for (const r of ok) itlTotal += r.itlCount;
  const itl = new Float64Array(itlTotal);
  let inTok = 0;
  let outTok = 0;
  let cached = 0;
  let cachedPrompt = 0;
  let cachedSeen = false;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const r = ok[i]!;
    ttft[i] = ttftSeconds(r);
    tpot[i] = tpotSeconds(r);
    ntpot[i] = ntpotSeconds(r);
    e2e[i] = e2eSeconds(r);
    isl[i] = r.promptTokens;
    osl[i] = r.outputTokens;
    inTok += r.promptTokens;
    outTok += r.outputTokens;
    if (r.cachedReported) {
      cachedSeen = true;
      cached += r.cachedTokens;
      cachedPrompt += r.promptTokens;
    }
    for (let j = 0; j < r.itlCount; j++) itl[k++] = r.itl[j]! / 1000;
  }
  let start = Infinity;
  let end = -Infinity;
  const delays = new Float64Array(records.length);
  const failures: Record<string, number> = {};
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.sentMs < start) start = r.sentMs;
    if (r.endMs > end) end = r.endMs;
    delays[i] = (r.sentMs - r.scheduledMs) / 1000;
    if (!r.ok) {
      const label = r.error ?? String(r.status);
      failures[label] = (failures[label] ?? 0) + 1;
    }
  }
  if (records.length === 0) start = end = 0;
  const wall = durationS ?? (end - start) / 1000;
  const per = (x: number): number => (wall > 0 ? x / wall : 0);
  let goodput: Goodput | null = null;
  if (hasSlo(slo)) {
    let good = 0;
    let goodTok = 0;
    for (const r of ok) {
      if (meetsSlo(r, slo)) {
        good++;
        goodTok += r.outputTokens;
      }
    }
    goodput = {
      constraints: slo,
      good_requests: good,
      requests_per_sec: per(good),
      output_tokens_per_sec: per(goodTok),
      percent: n === 0 ? 0 : (100 * good) / n,
    };
  }
  return {
    requests: {
      total: records.length,
      successes: n,
      failures: records.length - n,
      failures_by_status: failures,
      input_length: summarize(isl, 'count'),
      output_length: summarize(osl, 'count'),
    },
    latency: {
      time_to_first_token: summarize(ttft, 's'),
      time_per_output_token: summarize(tpot, 's/token'),
      inter_token_latency: summarize(itl, 's/token'),
      normalized_time_per_output_token: summarize(ntpot, 's/token'),
      request_latency: summarize(e2e, 's'),
    },
    throughput: {
      requests_per_sec: per(n),
      input_tokens_per_sec: per(inTok),
      output_tokens_per_sec: per(outTok),
      total_tokens_per_sec: per(inTok + outTok),
    },
    goodput,
    kv_cache_hit_percent: cachedSeen ? (cachedPrompt === 0 ? 0 : (100 * cached) / cachedPrompt) : null,
    schedule_delay: summarize(delays, 's'),
    time: { start_ms: start, end_ms: end, duration: wall },
  };
}

/** The label inference-perf gives a failed response: "504 - Gateway Timeout". */
export function statusLabel(status: number, reason: string | undefined): string {
  return reason === undefined || reason === '' ? String(status) : `${status} - ${reason}`;
}
