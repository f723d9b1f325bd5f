/**
 * `llmd bench`: flags (or `-f bench.yaml`, flags winning) → options → runBench, with a progress line on
 * stderr and the summary table on stdout.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { LlmdError } from '../core/errors.js';
import { BenchConfigError } from './errors.js';
import { mergeOptions, parseBenchOptions, parseStagesFlag, readBenchFile } from './options.js';
import { runBench, type BenchProgress } from './run.js';
import { compareTable, runCompare, type CompareStack } from './compare.js';
import { summaryTable } from './report/table.js';
import { int, num } from '../core/flag-values.js';

function header(value: string, prev: Record<string, string> = {}): Record<string, string> {
  const i = value.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError('must be name:value');
  return { ...prev, [value.slice(0, i).trim().toLowerCase()]: value.slice(i + 1).trim() };
}

export interface BenchFlags {
  file?: string;
  url?: string;
  model?: string;
  api?: string;
  tokenizer?: string;
  seed?: number;
  workload?: string;
  numGroups?: number;
  numPromptsPerGroup?: number;
  systemPromptLen?: number;
  questionLen?: number;
  questionLenStd?: number;
  outputLen?: number;
  outputLenStd?: number;
  multiTurn?: boolean;
  inputLen?: number;
  rangeRatio?: number;
  numConversations?: number;
  turns?: number;
  userLen?: number;
  load?: string;
  rate?: number;
  duration?: string;
  stages?: string;
  concurrency?: number;
  numRequests?: number;
  warmup?: string;
  maxConcurrency?: number;
  requestTimeout?: string;
  ignoreEos?: boolean;
  sloTtftMs?: number;
  sloTpotMs?: number;
  sloItlMs?: number;
  sloNtpotMs?: number;
  sloE2eMs?: number;
  output?: string;
  label?: string;
  description?: string;
  header?: Record<string, string>;
  apiKey?: string;
  progress?: boolean;
}

const clean = (o: Record<string, unknown>): Record<string, unknown> | undefined => {
  const out = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  return Object.keys(out).length === 0 ? undefined : out;
};

/** The options object the flags give (only what was set), in the YAML's shape. */
export function flagsToOptions(f: BenchFlags): Record<string, unknown> {
  const dist = (mean: number | undefined, std: number | undefined): Record<string, unknown> | undefined =>
    mean !== undefined && std !== undefined && std > 0 ? { mean, std_dev: std } : undefined;
  let workload: Record<string, unknown> | undefined;
  const type = f.workload;
  if (type === 'shared-prefix' || type === 'shared_prefix' || type === undefined) {
    workload = clean({
      type,
      num_groups: f.numGroups,
      num_prompts_per_group: f.numPromptsPerGroup,
      system_prompt_len: f.systemPromptLen,
      question_len: f.questionLen,
      output_len: f.outputLen,
      question_distribution: dist(f.questionLen, f.questionLenStd),
      output_distribution: dist(f.outputLen, f.outputLenStd),
      enable_multi_turn_chat: f.multiTurn,
    });
  } else if (type === 'random') {
    workload = clean({
      type,
      input_len: f.inputLen,
      output_len: f.outputLen,
      range_ratio: f.rangeRatio,
    });
  } else if (type === 'chat') {
    workload = clean({
      type,
      num_conversations: f.numConversations,
      turns: f.turns,
      system_prompt_len: f.systemPromptLen,
      user_len: f.userLen,
      output_len: f.outputLen,
      output_distribution: dist(f.outputLen, f.outputLenStd),
    });
  } else {
    throw new BenchConfigError(`--workload must be shared-prefix, random or chat, got ${type}`, 'workload');
  }
  const concurrent = f.load === 'concurrency' || f.load === 'concurrent';
  let stages: Record<string, unknown>[] | undefined;
  if (f.stages !== undefined) stages = parseStagesFlag(f.stages, concurrent);
  else if (concurrent && f.concurrency !== undefined)
    stages = [clean({ concurrency: f.concurrency, num_requests: f.numRequests, duration: f.duration })!];
  else if (f.rate !== undefined) stages = [{ rate: f.rate, duration: f.duration ?? '60' }];
  const headers = { ...(f.header ?? {}) };
  if (f.apiKey !== undefined) headers.authorization = `Bearer ${f.apiKey}`;
  return (
    clean({
      url: f.url,
      model: f.model,
      api: f.api,
      tokenizer: f.tokenizer,
      seed: f.seed,
      ignore_eos: f.ignoreEos,
      request_timeout: f.requestTimeout,
      max_concurrency: f.maxConcurrency,
      headers: Object.keys(headers).length === 0 ? undefined : headers,
      workload,
      load: clean({ type: f.load, stages, warmup: f.warmup }),
      slo: clean({
        ttft_ms: f.sloTtftMs,
        tpot_ms: f.sloTpotMs,
        itl_ms: f.sloItlMs,
        ntpot_ms: f.sloNtpotMs,
        e2e_ms: f.sloE2eMs,
      }),
      output: f.output,
      label: f.label,
      description: f.description,
    }) ?? {}
  );
}

/** The progress line: stage, time, requests sent/done/failed, in flight, output tokens/s so far. */
export function progressLine(p: BenchProgress): string {
  const tokRate = p.elapsed > 0 ? p.outputTokens / p.elapsed : 0;
  return (
    `[stage ${p.stage + 1}/${p.stages}${p.warmup ? ' warm-up' : ''}: ${p.description}] ` +
    `${p.elapsed.toFixed(0)} s  sent ${p.sent}  done ${p.done}  failed ${p.failures}  ` +
    `in flight ${p.inFlight}  ${tokRate.toFixed(0)} out tok/s`
  );
}

/** Bench options from the flags and `-f bench.yaml` (flags win), before validation. */
async function benchInput(flags: BenchFlags): Promise<Record<string, unknown>> {
  const fromFile = flags.file !== undefined ? await readBenchFile(flags.file) : {};
  // commander sets ignoreEos=true by default; only an explicit --no-ignore-eos overrides the file.
  const f = { ...flags, ignoreEos: flags.ignoreEos === false ? false : undefined };
  const merged = mergeOptions(fromFile, flagsToOptions(f));
  // The workload's type defaults to shared-prefix (the schema discriminates on it).
  const w = merged.workload;
  if (typeof w === 'object' && w !== null && !Array.isArray(w) && !('type' in w)) {
    merged.workload = { type: 'shared-prefix', ...w };
  }
  return merged;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description('load-test an OpenAI-compatible endpoint with llm-d’s workloads and metrics')
    .option('-f, --file <path>', 'bench.yaml with any of the options below (flags win)')
    .option('--url <url>', 'server or gateway base URL, e.g. http://127.0.0.1:8080')
    .option('--model <name>', 'model name sent in requests')
    .addOption(new Option('--api <kind>', 'API to call').choices(['completions', 'chat']))
    .option('--tokenizer <path>', 'tokenizer for building prompts (default: embedded Qwen3)')
    .option('--seed <n>', 'seed for prompts and arrivals (default 0)', int)
    .addOption(
      new Option('--workload <type>', 'workload (default shared-prefix)').choices([
        'shared-prefix',
        'random',
        'chat',
      ]),
    )
    .option('--num-groups <n>', 'shared-prefix: groups (distinct system prompts)', int)
    .option('--num-prompts-per-group <n>', 'shared-prefix: prompts sharing each system prompt', int)
    .option('--system-prompt-len <n>', 'shared-prefix/chat: system prompt tokens', int)
    .option('--question-len <n>', 'shared-prefix: question tokens', int)
    .option('--question-len-std <n>', 'shared-prefix: question length standard deviation', num)
    .option('--output-len <n>', 'output tokens asked for (max_tokens)', int)
    .option('--output-len-std <n>', 'output length standard deviation', num)
    .option('--multi-turn', 'shared-prefix: each prompt is a multi-turn session (enable_multi_turn_chat)')
    .option('--input-len <n>', 'random: input tokens', int)
    .option('--range-ratio <r>', 'random: lengths uniform in [L(1-r), L(1+r)]', num)
    .option('--num-conversations <n>', 'chat: conversations in parallel', int)
    .option('--turns <n>', 'chat: turns per conversation', int)
    .option('--user-len <n>', 'chat: tokens per user turn', int)
    .addOption(
      new Option('--load <type>', 'arrival process (default constant)').choices([
        'constant',
        'poisson',
        'concurrency',
      ]),
    )
    .option('--rate <r>', 'requests per second (one stage)', num)
    .option('--duration <s>', 'stage length: seconds or 30s, 2m', String)
    .option('--stages <list>', "stages 'rate:duration,…' (concurrency load: 'concurrency:num_requests,…')")
    .option('--concurrency <n>', 'concurrency load: requests in flight', int)
    .option('--num-requests <n>', 'concurrency load: requests to send', int)
    .option('--warmup <s>', 'warm-up seconds at the first stage’s load (not measured)')
    .option('--max-concurrency <n>', 'rate loads: in-flight cap (default 1000)', int)
    .option('--request-timeout <s>', 'seconds before a request is abandoned (default 300)')
    .option('--no-ignore-eos', 'let the server stop at end-of-sequence (default: ignore_eos)')
    .option('--slo-ttft-ms <ms>', 'goodput SLO: time to first token', num)
    .option('--slo-tpot-ms <ms>', 'goodput SLO: time per output token', num)
    .option('--slo-itl-ms <ms>', 'goodput SLO: every inter-token gap', num)
    .option('--slo-ntpot-ms <ms>', 'goodput SLO: normalized time per output token', num)
    .option('--slo-e2e-ms <ms>', 'goodput SLO: request latency', num)
    .option('--output <dir>', 'write summary.json, benchmark_report.json, requests.jsonl, report.html, *.svg')
    .option('--label <name>', 'name of the configuration under test (reports, compare)')
    .option('--description <text>', 'free text for the report')
    .option('--header <name:value>', 'extra request header (repeatable)', header)
    .option('--api-key <key>', 'sent as Authorization: Bearer <key>')
    .option('--no-progress', 'no progress line')
    .addCommand(compareCommand())
    .action(async (flags: BenchFlags) => {
      try {
        const opts = parseBenchOptions(await benchInput(flags));
        const controller = new AbortController();
        const stop = (): void => {
          if (controller.signal.aborted) process.exit(130);
          process.stderr.write('\nstopping: waiting for in-flight requests (Ctrl-C again to quit)\n');
          controller.abort();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        const tty = process.stderr.isTTY === true;
        const showProgress = flags.progress !== false;
        const summary = await runBench(opts, {
          signal: controller.signal,
          onProgress: (p) => {
            if (!showProgress) return;
            const line = progressLine(p);
            process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
          },
        });
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        if (tty && showProgress) process.stderr.write('\n');
        process.stdout.write(summaryTable(summary) + '\n');
        if (summary.files !== null) {
          process.stdout.write(
            `results in ${summary.files.dir}: report.html, summary.json, benchmark_report.json\n`,
          );
        }
      } catch (err) {
        if (err instanceof LlmdError) {
          process.stderr.write(`llmd bench: ${err.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
    });
}

interface CompareFlags extends BenchFlags {
  configs?: string;
  decode?: number;
  prefill?: number;
  hardware?: string;
  serverArgs?: string;
  numGpuBlocksOverride?: number;
  streamInterval?: number;
  stackLogLevel?: string;
  startTimeout?: string;
}

/** `--server-args '--a 1 --b'`: split on whitespace (no quoting needed for llmd serve's flags). */
function serverArgs(f: CompareFlags): string[] {
  const out = (f.serverArgs ?? '').split(/\s+/).filter((a) => a !== '');
  if (f.numGpuBlocksOverride !== undefined)
    out.push('--num-gpu-blocks-override', String(f.numGpuBlocksOverride));
  if (f.streamInterval !== undefined) out.push('--stream-interval', String(f.streamInterval));
  return out;
}

/**
 * `llmd bench compare`: the bench's flags (given after `compare` too) against a fresh stack per
 * configuration; the side-by-side table on stdout, the chart and JSON in `--output`.
 */
export function compareCommand(): Command {
  return new Command('compare')
    .description('run the same bench against a fresh `llmd up` stack per routing configuration')
    .requiredOption(
      '--configs <list>',
      'comma-separated presets (random, load, approx, precise, pd-approx, pd-precise) or EPP config files',
    )
    .option('--decode <n>', 'decode servers per stack (default 4)', int)
    .option(
      '--prefill <n>',
      'prefill servers for P/D presets and config files (P/D presets: at least 1)',
      int,
    )
    .option('--hardware <name>', 'simulated accelerator of every server (default H100)')
    .option('--server-args <args>', "extra `llmd serve` flags for every server, e.g. '--max-num-seqs 64'")
    .option(
      '--num-gpu-blocks-override <n>',
      'KV-cache blocks per server (a small cache makes cache pressure)',
      int,
    )
    .option('--stream-interval <n>', 'tokens per streamed chunk on every server', int)
    .option('--stack-log-level <level>', 'level of the stacks’ logs shown (default error)')
    .option('--start-timeout <ms>', 'how long each component may take to be ready, in ms (default 60000)')
    .configureHelp({ showGlobalOptions: true })
    .action(async function (this: Command) {
      const flags = this.optsWithGlobals<CompareFlags>();
      try {
        const bench = await benchInput({ ...flags, label: undefined });
        const stack: CompareStack = {
          ...(flags.decode !== undefined ? { decode: flags.decode } : {}),
          ...(flags.prefill !== undefined ? { prefill: flags.prefill } : {}),
          ...(flags.hardware !== undefined ? { hardware: flags.hardware } : {}),
          ...(flags.model !== undefined ? { model: flags.model } : {}),
          serverArgs: serverArgs(flags),
          logLevel: (flags.stackLogLevel ?? 'error') as CompareStack['logLevel'] & string,
          ...(flags.startTimeout !== undefined ? { startTimeoutMs: Number(flags.startTimeout) } : {}),
        };
        const bOut = bench.output;
        delete bench.output;
        const controller = new AbortController();
        const stop = (): void => {
          if (controller.signal.aborted) process.exit(130);
          process.stderr.write(
            '\nstopping: finishing in-flight requests, then the stack (Ctrl-C again to quit)\n',
          );
          controller.abort();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        const tty = process.stderr.isTTY === true;
        const showProgress = flags.progress !== false;
        const result = await runCompare(
          {
            configs: (flags.configs ?? '').split(',').filter((c) => c.trim() !== ''),
            bench,
            stack,
            ...(typeof bOut === 'string' ? { output: bOut } : {}),
          },
          {
            signal: controller.signal,
            onStackUp: (t, url, i, n) => {
              if (showProgress) process.stderr.write(`[${i + 1}/${n}] ${t.name}: stack up at ${url}\n`);
            },
            onProgress: (t, p) => {
              if (!showProgress) return;
              const line = `${t.name} ${progressLine(p)}`;
              process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
            },
            onRunDone: (r) => {
              if (tty && showProgress) process.stderr.write('\n');
              if (showProgress) {
                process.stderr.write(
                  `${r.name}: done in ${r.bench_s.toFixed(0)} s (stack start ${r.startup_s.toFixed(1)} s)\n`,
                );
              }
            },
          },
        );
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        process.stdout.write(compareTable(result.runs) + '\n');
        for (const r of result.runs) {
          const failures = Object.entries(r.summary.aggregate.requests.failures_by_status);
          if (failures.length > 0) {
            process.stdout.write(
              `${r.name} failures: ${failures.map(([k, v]) => `${k} × ${v}`).join(', ')}\n`,
            );
          }
        }
        if (result.files !== null) {
          process.stdout.write(
            `results in ${result.files.dir}: compare.svg, compare.json, compare.md, one folder per configuration\n`,
          );
        }
      } catch (err) {
        if (err instanceof LlmdError) {
          process.stderr.write(`llmd bench compare: ${err.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
    });
}
