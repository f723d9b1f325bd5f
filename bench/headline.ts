/**
 * The headline experiment: llm-d's "KV-cache wins" comparison (many customer groups sharing long
 * system prompts; total prefix demand larger than one server's KV cache, smaller than the fleet's),
 * scaled to finish in minutes on a small machine. The servers keep the published profile (Qwen3-32B,
 * TP=2 on simulated H100s); the fleet, the caches, the prompt lengths and the rate are scaled down
 * together, and outputs are short and streamed in chunks so the client and gateway stay idle enough.
 *
 *   npm run build && npx tsx bench/headline.ts [--duration 75] [--output bench/out/headline]
 *
 * Prints the side-by-side table and the ratios next to the published ones, writes compare.* into the
 * output folder, and copies the chart to docs/headline.svg.
 */
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { compareMarkdown, compareTable, runCompare } from '../src/bench/compare.js';
import { progressLine } from '../src/bench/command.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '75' },
    warmup: { type: 'string', default: '15' },
    rate: { type: 'string', default: '14' },
    configs: { type: 'string', default: 'random,load,approx,precise' },
    output: { type: 'string', default: 'bench/out/headline' },
    chart: { type: 'string', default: 'docs/headline.svg' },
  },
});

const SERVERS = 4;
const BLOCKS = 2048; // 16-token blocks per server: 32,768 tokens of KV cache each
const GROUPS = 32;
const SYSTEM_PROMPT = 3000; // 32 × 3,000 = 96,000 prefix tokens ≈ 73 % of the fleet's cache, ≈ 2.9 servers' worth

const bench = {
  model: 'Qwen/Qwen3-32B',
  seed: 0,
  workload: {
    type: 'shared-prefix',
    num_groups: GROUPS,
    num_prompts_per_group: 5,
    system_prompt_len: SYSTEM_PROMPT,
    question_len: 300,
    output_len: 60,
  },
  load: {
    type: 'poisson',
    warmup: { rate: Number(values.rate), duration: Number(values.warmup) },
    stages: [{ rate: Number(values.rate), duration: Number(values.duration) }],
  },
  request_timeout: 300,
};

const started = Date.now();
const result = await runCompare(
  {
    configs: values.configs.split(','),
    bench,
    stack: {
      decode: SERVERS,
      model: 'Qwen/Qwen3-32B',
      hardware: 'H100',
      serverArgs: [
        '--tensor-parallel-size',
        '2',
        '--num-gpu-blocks-override',
        String(BLOCKS),
        '--stream-interval',
        '10',
      ],
      logLevel: 'error',
    },
    output: values.output,
  },
  {
    onStackUp: (t, url, i, n) => process.stderr.write(`[${i + 1}/${n}] ${t.name}: stack up at ${url}\n`),
    onProgress: (t, p) => {
      if (Math.round(p.elapsed) % 15 === 0) process.stderr.write(`${t.name} ${progressLine(p)}\n`);
    },
    onRunDone: (r) => process.stderr.write(`${r.name}: ${r.bench_s.toFixed(0)} s\n`),
  },
);
await copyFile(path.join(values.output, 'compare.svg'), values.chart);

const agg = Object.fromEntries(result.runs.map((r) => [r.name, r.summary.aggregate]));
const p90 = (n: string): number => agg[n]?.latency.time_to_first_token.p90 ?? NaN;
const tput = (n: string): number => agg[n]?.throughput.output_tokens_per_sec ?? NaN;
const x = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(v >= 10 ? 0 : 1)}×` : '–');
const pct = (v: number): string =>
  Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${(v * 100).toFixed(0)} %` : '–';

process.stdout.write(compareTable(result.runs) + '\n\n' + compareMarkdown(result.runs) + '\n\n');
process.stdout.write(
  [
    '| ratio | measured | llm-d published |',
    '| --- | ---: | ---: |',
    `| TTFT p90, approximate ÷ precise | ${x(p90('approx') / p90('precise'))} | 57× |`,
    `| TTFT p90, random ÷ precise | ${x(p90('random') / p90('precise'))} | 171× |`,
    `| TTFT p90, load ÷ precise | ${x(p90('load') / p90('precise'))} | 175× |`,
    `| output tok/s, precise vs approximate | ${pct(tput('precise') / tput('approx') - 1)} | +26 % |`,
    `| output tok/s, precise vs random | ${pct(tput('precise') / tput('random') - 1)} | +97 % |`,
  ].join('\n') + '\n',
);
process.stdout.write(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s; chart in ${values.chart}\n`);
