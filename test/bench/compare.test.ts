/**
 * `llmd bench compare`: presets and files resolve to targets, bad inputs fail before any stack
 * starts, and a tiny workload runs against a fresh stack per preset, writing the side-by-side
 * table, chart and JSON, with no server left running afterwards.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compareChart,
  compareMarkdown,
  compareTable,
  resolveTarget,
  runCompare,
  type CompareResult,
} from '../../src/bench/compare.js';
import { ConfigError } from '../../src/core/errors.js';

const MODEL = 'Qwen/Qwen3-0.6B';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'llmd-compare-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('resolveTarget', () => {
  it('knows the presets', () => {
    expect(resolveTarget('precise')).toEqual({
      name: 'precise',
      routing: 'precise',
      config: null,
      pd: false,
    });
    expect(resolveTarget('pd-precise')).toMatchObject({ routing: 'precise', pd: true });
    expect(resolveTarget('random').routing).toBe('random');
  });

  it('takes an EPP config file, named by its base name', () => {
    const t = resolveTarget('deploy/examples/approx-prefix.yaml');
    expect(t.name).toBe('approx-prefix');
    expect(t.config).toBe(path.resolve('deploy/examples/approx-prefix.yaml'));
    expect(t.routing).toBeNull();
  });

  it('refuses what is neither', () => {
    expect(() => resolveTarget('nope')).toThrow(/neither a preset .* nor a file/);
  });
});

describe('runCompare input errors', () => {
  const bench = {
    workload: { type: 'random', input_len: 8, output_len: 2 },
    load: { stages: [{ rate: 1, duration: 1 }] },
  };

  it('refuses a configuration given twice, a url, a bad bench option', async () => {
    await expect(runCompare({ configs: ['load', 'load'], bench })).rejects.toThrow(/given twice/);
    await expect(runCompare({ configs: ['load'], bench: { ...bench, url: 'http://x' } })).rejects.toThrow(
      /leave out url/,
    );
    await expect(
      runCompare({ configs: ['load'], bench: { ...bench, workload: { type: 'random', input_len: -1 } } }),
    ).rejects.toThrow(/workload.input_len/);
    await expect(runCompare({ configs: [], bench })).rejects.toBeInstanceOf(ConfigError);
  });

  it('refuses a bad EPP config file before starting anything', async () => {
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, 'kind: NotAConfig\n');
    await expect(runCompare({ configs: [bad], bench, stack: { decode: 1 } })).rejects.toThrow();
  });
});

describe('runCompare with two presets', () => {
  let result: CompareResult;
  const pids: number[] = [];
  const out = () => path.join(dir, 'cmp');

  beforeAll(async () => {
    result = await runCompare(
      {
        configs: ['load', 'precise'],
        bench: {
          model: MODEL,
          seed: 3,
          workload: {
            type: 'shared-prefix',
            num_groups: 2,
            num_prompts_per_group: 3,
            system_prompt_len: 256,
            question_len: 16,
            output_len: 8,
          },
          load: { type: 'constant', stages: [{ rate: 8, duration: 1 }] },
        },
        stack: { decode: 2, model: MODEL, serverArgs: ['--stream-interval', '4'], logLevel: 'error' },
        output: out(),
      },
      {
        onStackUp: (_t, _url, _i, _n, up) => pids.push(...up),
      },
    );
  }, 60_000);

  it('runs every configuration and measures it', () => {
    expect(result.runs.map((r) => r.name)).toEqual(['load', 'precise']);
    for (const r of result.runs) {
      const a = r.summary.aggregate;
      expect(a.requests.total).toBe(8);
      expect(a.requests.failures).toBe(0);
      expect(a.latency.time_to_first_token.p90).toBeGreaterThan(0);
      expect(a.throughput.output_tokens_per_sec).toBeGreaterThan(0);
      expect(a.kv_cache_hit_percent).not.toBeNull();
      expect(r.summary.label).toBe(r.name);
    }
    expect(result.stack).toMatchObject({ decode: 2, model: MODEL });
  });

  it('prints one row per configuration', () => {
    const text = compareTable(result.runs);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^config\s+reqs\s+fail\s+req\/s\s+out tok\/s\s+TTFT mean ms/);
    expect(lines).toHaveLength(4);
    expect(lines[2]).toMatch(/^load\s+8\s+0\s/);
    expect(lines[3]).toMatch(/^precise\s+8\s+0\s/);
    expect(compareMarkdown(result.runs).split('\n')[1]).toMatch(/^\| --- \| ---: \|/);
  });

  it('writes the chart, the Markdown table, the JSON and each run’s bench files', async () => {
    expect(result.files?.dir).toBe(out());
    const svg = await readFile(path.join(out(), 'compare.svg'), 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('Time to first token');
    expect(svg).toContain('Output throughput');
    expect(svg.match(/<rect [^>]*><title>/g)).toHaveLength(6); // 2 configs × (p50, p90, tok/s)
    const json = JSON.parse(await readFile(path.join(out(), 'compare.json'), 'utf8')) as {
      runs: { name: string; aggregate: { requests: { total: number } } }[];
    };
    expect(json.runs.map((r) => [r.name, r.aggregate.requests.total])).toEqual([
      ['load', 8],
      ['precise', 8],
    ]);
    expect(await readFile(path.join(out(), 'compare.md'), 'utf8')).toContain('| precise | 8 | 0 |');
    const summary = JSON.parse(await readFile(path.join(out(), 'precise', 'summary.json'), 'utf8')) as {
      label: string;
    };
    expect(summary.label).toBe('precise');
  });

  it('stops each stack', () => {
    expect(pids.length).toBe(2 * 3); // 2 servers and the EPP per stack
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });
});

describe('compareChart', () => {
  it('escapes names and leaves out missing values', () => {
    const run = (name: string, p90: number) =>
      ({
        name,
        config: name,
        startup_s: 0,
        bench_s: 0,
        summary: {
          aggregate: {
            latency: { time_to_first_token: { p50: p90 / 2, p90 } },
            throughput: { output_tokens_per_sec: 100 },
          },
        },
      }) as unknown as Parameters<typeof compareChart>[0][number];
    const svg = compareChart([run('a<b', 1), run('c', NaN)]);
    expect(svg).toContain('a&lt;b');
    expect(svg.match(/<rect [^>]*><title>/g)).toHaveLength(4);
  });
});
