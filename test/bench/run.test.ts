import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { benchCommand } from '../../src/bench/command.js';
import { runBench, type BenchSummary } from '../../src/bench/run.js';
import { startServe, type RunningServe } from '../../src/engine/serve.js';
import { wellFormed } from './helpers.js';

const MODEL = 'Qwen/Qwen3-0.6B';
let serve: RunningServe;
let dir: string;

beforeAll(async () => {
  serve = await startServe({
    model: MODEL,
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    enablePromptTokensDetails: true,
  });
  dir = await mkdtemp(path.join(tmpdir(), 'llmd-bench-'));
});
afterAll(async () => {
  await serve?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('runBench against llmd serve', () => {
  let s: BenchSummary;
  const out = () => path.join(dir, 'shared');

  beforeAll(async () => {
    s = await runBench({
      url: serve.url,
      model: MODEL,
      seed: 1,
      output: out(),
      label: 'single server',
      workload: {
        type: 'shared-prefix',
        num_groups: 3,
        num_prompts_per_group: 4,
        system_prompt_len: 512,
        question_len: 32,
        output_len: 16,
      },
      load: {
        type: 'poisson',
        stages: [
          { rate: 20, duration: 1 },
          { rate: 40, duration: 1 },
        ],
        warmup: 0.5,
      },
      slo: { ttft_ms: 10_000, tpot_ms: 1000 },
    });
  });

  it('measures every request with sane metrics', () => {
    const a = s.aggregate;
    expect(s.stages.map((x) => x.warmup)).toEqual([true, false, false]);
    expect(a.requests.total).toBe(s.stages[1]!.metrics.requests.total + s.stages[2]!.metrics.requests.total);
    expect(a.requests.total).toBeGreaterThan(20);
    expect(a.requests.failures).toBe(0);
    expect(a.requests.input_length.min).toBe(544);
    expect(a.requests.input_length.max).toBe(544);
    expect(a.requests.output_length.mean).toBe(16);
    const l = a.latency;
    expect(l.time_to_first_token.min).toBeGreaterThan(0);
    expect(l.request_latency.min).toBeGreaterThanOrEqual(l.time_to_first_token.min);
    expect(l.time_per_output_token.mean).toBeGreaterThan(0);
    expect(l.inter_token_latency.count).toBe(a.requests.successes * 15);
    expect(l.normalized_time_per_output_token.mean).toBeGreaterThanOrEqual(
      l.time_per_output_token.mean * 0.5,
    );
    expect(a.throughput.output_tokens_per_sec).toBeGreaterThan(0);
    expect(a.throughput.total_tokens_per_sec).toBeCloseTo(
      a.throughput.input_tokens_per_sec + a.throughput.output_tokens_per_sec,
      6,
    );
    expect(a.goodput!.percent).toBe(100);
  });

  it('sees prefix-cache hits on a shared-prefix workload', () => {
    expect(s.aggregate.kv_cache_hit_percent).toBeGreaterThan(0);
    // Warm-up sent every prompt's prefix at least once: measured stages hit on most of each prompt.
    expect(s.aggregate.kv_cache_hit_percent!).toBeGreaterThan(50);
  });

  it('writes the report files', async () => {
    const files = s.files!;
    const report = JSON.parse(await readFile(files.report, 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(report.version).toBe('0.2');
    expect(report.scenario.load.standardized).toMatchObject({
      source: 'shared_prefix',
      multi_turn: { enabled: false },
    });
    expect(report.scenario.stack[0].standardized.model.name).toBe(MODEL);
    const agg = report.results.request_performance.aggregate;
    expect(agg.requests.total).toBe(s.aggregate.requests.total);
    expect(Object.keys(agg.latency).sort()).toEqual([
      'inter_token_latency',
      'normalized_time_per_output_token',
      'request_latency',
      'time_per_output_token',
      'time_to_first_token',
    ]);
    expect(agg.latency.time_to_first_token.units).toBe('s');
    expect(agg.throughput.output_tokens_per_sec).toBeGreaterThan(0);
    expect(agg.time.duration).toBeGreaterThan(0);
    const lines = (await readFile(files.requests, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const total = s.stages.reduce((n, x) => n + x.metrics.requests.total, 0);
    expect(lines).toHaveLength(total);
    expect(lines.filter((l) => l.warmup)).toHaveLength(s.stages[0]!.metrics.requests.total);
    expect(lines.some((l) => l.cached_tokens > 0)).toBe(true);
    const html = await readFile(files.html, 'utf8');
    expect(html).toContain('<svg');
    expect(wellFormed(html, ['meta'])).toBe(true);
    for (const f of files.svgs) expect(wellFormed(await readFile(f, 'utf8'))).toBe(true);
    expect(files.stageReports).toHaveLength(3);
  });
});

describe('llmd bench (the command)', () => {
  it('runs a concurrency load over the chat API from flags and prints the summary table', async () => {
    const chunks: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
      chunks.push(String(c));
      return true;
    });
    try {
      await benchCommand().parseAsync(
        [
          '--url',
          serve.url,
          '--model',
          MODEL,
          '--api',
          'chat',
          '--workload',
          'chat',
          '--num-conversations',
          '4',
          '--turns',
          '3',
          '--system-prompt-len',
          '64',
          '--user-len',
          '16',
          '--output-len',
          '8',
          '--load',
          'concurrency',
          '--concurrency',
          '4',
          '--num-requests',
          '12',
          '--no-progress',
          '--output',
          path.join(dir, 'chat'),
        ],
        { from: 'user' },
      );
    } finally {
      spy.mockRestore();
    }
    const text = chunks.join('');
    expect(text).toMatch(/all measured\s+12\s+0/);
    const summary = JSON.parse(
      await readFile(path.join(dir, 'chat', 'summary.json'), 'utf8'),
    ) as BenchSummary;
    expect(summary.api).toBe('chat');
    expect(summary.aggregate.requests.successes).toBe(12);
    expect(summary.workload.multi_turn.enabled).toBe(true);
    // Later turns resend the history: prompts grow, and the server finds their prefixes cached.
    expect(summary.aggregate.requests.input_length.max).toBeGreaterThan(
      summary.aggregate.requests.input_length.min,
    );
    expect(summary.aggregate.kv_cache_hit_percent!).toBeGreaterThan(0);
  });
});
