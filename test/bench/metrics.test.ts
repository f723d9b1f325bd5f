import { describe, expect, it } from 'vitest';
import {
  aggregate,
  e2eSeconds,
  meetsSlo,
  ntpotSeconds,
  percentile,
  statusLabel,
  summarize,
  tpotSeconds,
  ttftSeconds,
} from '../../src/bench/metrics.js';
import { rec } from './helpers.js';

describe('metric definitions (inference-perf)', () => {
  // Sent at 1000 ms; tokens at 1100, 1150, 1250, 1300, 1500 ms; response ends at 1500 ms.
  const r = rec([1100, 1150, 1250, 1300, 1500], { sent: 1000 });

  it('TTFT is the first non-empty chunk minus the send time', () => {
    expect(ttftSeconds(r)).toBeCloseTo(0.1, 12);
  });

  it('E2E is the end of the response minus the send time', () => {
    expect(e2eSeconds(r)).toBeCloseTo(0.5, 12);
  });

  it('TPOT is (E2E − TTFT) / (output tokens − 1)', () => {
    expect(tpotSeconds(r)).toBeCloseTo(0.4 / 4, 12);
  });

  it('normalized TPOT is E2E / output tokens', () => {
    expect(ntpotSeconds(r)).toBeCloseTo(0.5 / 5, 12);
  });

  it('TPOT is undefined for fewer than two output tokens; NTPOT needs one', () => {
    const one = rec([1100], { sent: 1000, end: 1200 });
    expect(Number.isNaN(tpotSeconds(one))).toBe(true);
    expect(ntpotSeconds(one)).toBeCloseTo(0.2, 12);
    expect(Number.isNaN(ntpotSeconds(rec([], { sent: 0, end: 10 })))).toBe(true);
  });

  it('ITL pools every gap between consecutive chunks over all requests', () => {
    const a = aggregate([r, rec([10, 30], { sent: 0 })], {});
    // gaps: 50, 100, 50, 200 ms from r; 20 ms from the second.
    const itl = a.latency.inter_token_latency;
    expect(itl.count).toBe(5);
    expect(itl.mean).toBeCloseTo((0.05 + 0.1 + 0.05 + 0.2 + 0.02) / 5, 12);
    expect(itl.min).toBeCloseTo(0.02, 12);
    expect(itl.max).toBeCloseTo(0.2, 12);
    expect(itl.p50).toBeCloseTo(0.05, 12);
  });
});

describe('percentiles and summaries', () => {
  it('interpolates linearly between closest ranks (numpy default)', () => {
    const v = [1, 2, 3, 4];
    expect(percentile(v, 50)).toBe(2.5);
    expect(percentile(v, 90)).toBeCloseTo(3.7, 12);
    expect(percentile(v, 0)).toBe(1);
    expect(percentile(v, 100)).toBe(4);
    expect(percentile([7], 99)).toBe(7);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
  });

  it('summarizes with llm-d’s keys, skipping NaN', () => {
    const s = summarize([4, NaN, 1, 3, 2], 's');
    expect(s).toMatchObject({ units: 's', count: 4, mean: 2.5, min: 1, max: 4, p50: 2.5 });
    expect(s.stddev).toBeCloseTo(Math.sqrt(1.25), 12);
    expect(s.p0p1).toBeCloseTo(1.003, 12);
    expect(s.p99p9).toBeCloseTo(3.997, 12);
    expect(Object.keys(s)).toEqual(
      expect.arrayContaining(['p0p1', 'p1', 'p5', 'p10', 'p25', 'p50', 'p75', 'p90', 'p95', 'p99', 'p99p9']),
    );
    expect(Number.isNaN(summarize([], 's').mean)).toBe(true);
  });
});

describe('aggregate', () => {
  // Two successes over 0 → 2000 ms, one 429.
  const a1 = rec([100, 200, 300], {
    sent: 0,
    end: 1000,
    promptTokens: 1000,
    cachedTokens: 600,
    cachedReported: true,
  });
  const a2 = rec([1500, 1600], {
    sent: 1000,
    end: 2000,
    promptTokens: 1000,
    cachedTokens: 200,
    cachedReported: true,
  });
  const fail = rec([], { sent: 500, end: 510, ok: false, status: 429, error: '429 - Too Many Requests' });

  it('computes throughput over first send → last end', () => {
    const a = aggregate([a1, a2, fail], {});
    expect(a.time.duration).toBe(2);
    expect(a.requests).toMatchObject({ total: 3, successes: 2, failures: 1 });
    expect(a.requests.failures_by_status).toEqual({ '429 - Too Many Requests': 1 });
    expect(a.throughput.requests_per_sec).toBe(1);
    expect(a.throughput.input_tokens_per_sec).toBe(1000);
    expect(a.throughput.output_tokens_per_sec).toBe(2.5);
    expect(a.throughput.total_tokens_per_sec).toBe(1002.5);
    expect(a.latency.time_to_first_token.mean).toBeCloseTo((0.1 + 0.5) / 2, 12);
    expect(a.requests.output_length.mean).toBe(2.5);
  });

  it('KV-cache hit % is cached over prompt tokens, null when never reported', () => {
    expect(aggregate([a1, a2], {}).kv_cache_hit_percent).toBeCloseTo(40, 12);
    expect(aggregate([rec([1, 2])], {}).kv_cache_hit_percent).toBeNull();
  });

  it('goodput counts successes meeting every SLO', () => {
    // a1: TTFT 100 ms, TPOT (1000-100)/2 = 450 ms; a2: TTFT 500 ms, TPOT 500 ms.
    const a = aggregate([a1, a2, fail], { ttftMs: 200 });
    expect(a.goodput).toMatchObject({
      good_requests: 1,
      requests_per_sec: 0.5,
      output_tokens_per_sec: 1.5,
      percent: 50,
    });
    expect(aggregate([a1, a2], { ttftMs: 1000, tpotMs: 460 }).goodput!.good_requests).toBe(1);
    expect(aggregate([a1, a2], {}).goodput).toBeNull();
  });

  it('SLO checks: ITL holds for every gap, TPOT only when defined, failures never good', () => {
    const r = rec([100, 110, 300], { sent: 0 });
    expect(meetsSlo(r, { itlMs: 200 })).toBe(true);
    expect(meetsSlo(r, { itlMs: 150 })).toBe(false);
    expect(meetsSlo(rec([100], { end: 100 }), { tpotMs: 1 })).toBe(true);
    expect(meetsSlo(r, { e2eMs: 299 })).toBe(false);
    expect(meetsSlo(r, { ntpotMs: 100 })).toBe(true);
    expect(meetsSlo(fail, {})).toBe(false);
  });

  it('schedule delay is send minus schedule', () => {
    const late = rec([200], { sent: 150, scheduledMs: 100, end: 300 });
    expect(aggregate([late], {}).schedule_delay.mean).toBeCloseTo(0.05, 12);
  });

  it('labels failures as inference-perf does', () => {
    expect(statusLabel(504, 'Gateway Timeout')).toBe('504 - Gateway Timeout');
    expect(statusLabel(599, undefined)).toBe('599');
  });
});
