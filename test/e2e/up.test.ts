/**
 * `llmd up` as a user runs it: one real process that starts the whole stack with P/D and precise
 * prefix routing (2 decode servers with sidecars, 1 prefill server, the EPP with its embedded
 * indexer), driven through the gateway by the openai client. P/D is observed on the servers' own
 * metrics, the prefix cache in `cached_tokens`; then Ctrl-C must leave no process behind. Also: a
 * component that cannot start stops the stack with its log tail, and a parent killed outright takes
 * its children with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const MODEL = 'Qwen/Qwen3-8B';

interface ReadyComponent {
  readonly name: string;
  readonly kind: string;
  readonly pid: number;
  readonly url: string;
}

interface Up {
  readonly proc: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
  readonly ready: Promise<{ url: string; components: ReadyComponent[] }>;
}

const started: ChildProcess[] = [];
const pidsSeen: number[] = [];

function up(args: string[]): Up {
  const proc = spawn(process.execPath, [CLI, 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const ready = new Promise<{ url: string; components: ReadyComponent[] }>((resolve, reject) => {
    let buf = '';
    proc.stderr!.on('data', (c: Buffer) => {
      const s = c.toString('utf8');
      err += s;
      buf += s;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.startsWith('{') || !line.includes('llmd up is ready')) continue;
        const rec = JSON.parse(line) as { url: string; components: ReadyComponent[] };
        pidsSeen.push(...rec.components.map((c) => c.pid));
        resolve(rec);
      }
    });
    void exited.then((code) => reject(new Error(`llmd up exited with ${code}: ${err}`)));
  });
  ready.catch(() => undefined);
  return { proc, stdout: () => out, stderr: () => err, exited, ready };
}

/** Gone, or a zombie nobody has reaped yet (it no longer runs). */
function dead(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return true;
  }
}

/** Every sample of a scrape summed per metric name (labels ignored). */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{')) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

async function total(urls: readonly string[], name: string): Promise<number> {
  let s = 0;
  for (const u of urls) s += await metric(u, name);
  return s;
}

afterAll(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const pid of pidsSeen) if (!dead(pid)) process.kill(pid, 'SIGKILL');
});

describe('llmd up with P/D and precise prefix routing', () => {
  let stack: Up;
  let gateway: string;
  let components: ReadyComponent[];
  let client: OpenAI;
  const servers = (kind: string) => components.filter((c) => c.kind === kind).map((c) => c.url);

  beforeAll(async () => {
    stack = up(['--port', '0', '--decode', '2', '--prefill', '1', '--routing', 'precise']);
    ({ url: gateway, components } = await stack.ready);
    client = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: 'none', maxRetries: 0 });
  }, 30_000);

  it('starts every component and prints the table with a request to paste', async () => {
    expect(components.map((c) => c.name).sort()).toEqual([
      'decode-0',
      'decode-0-sidecar',
      'decode-1',
      'decode-1-sidecar',
      'epp',
      'prefill-0',
    ]);
    await waitFor(() => stack.stdout().includes('Ctrl-C stops the stack'), 5000, 'the table');
    const out = stack.stdout();
    expect(out).toContain('COMPONENT');
    for (const c of components) expect(out).toContain(c.url);
    expect(out).toContain(`curl ${gateway}/v1/completions`);
    expect(out).toContain(`OpenAI(base_url="${gateway}/v1"`);
    expect(out).toContain(`new OpenAI({ baseURL: '${gateway}/v1'`);
  });

  it('serves a completion with a separate prefill, and a repeat of the prompt from the cache', async () => {
    const prompt =
      'Logistics manual, chapter one: parcels, pallets and the paperwork that follows them. '.repeat(40);
    const prefilled0 = await total(servers('prefill'), 'vllm:prompt_tokens_total');
    const pulled0 = await total(servers('decode'), 'vllm:nixl_xfer_time_seconds_count');
    const first = await client.completions.create({ model: MODEL, prompt, max_tokens: 8 });
    expect(first.choices[0]!.text.length).toBeGreaterThan(0);
    const promptTokens = first.usage!.prompt_tokens;
    // The prefiller computed the prompt; a decoder pulled its KV blocks.
    expect((await total(servers('prefill'), 'vllm:prompt_tokens_total')) - prefilled0).toBe(promptTokens);
    expect((await total(servers('decode'), 'vllm:nixl_xfer_time_seconds_count')) - pulled0).toBe(1);

    const again = await client.completions.create({ model: MODEL, prompt, max_tokens: 8 });
    const details = (again.usage as { prompt_tokens_details?: { cached_tokens?: number } })
      .prompt_tokens_details;
    expect(details?.cached_tokens ?? 0).toBeGreaterThan(promptTokens / 2);
  });

  it('streams a chat completion through the gateway', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me about harbours.' }],
      max_tokens: 16,
      stream: true,
    });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(chunks).toBeGreaterThan(1);
    expect(text.length).toBeGreaterThan(0);
    expect(finish).not.toBeNull();
  });

  it('stops every process on SIGINT', async () => {
    stack.proc.kill('SIGINT');
    expect(await stack.exited).toBe(0);
    await waitFor(() => components.every((c) => dead(c.pid)), 10_000, 'every component to exit');
  });
});

describe('llmd up failures', () => {
  it('stops the stack with the log tail and a non-zero exit when a component cannot start', async () => {
    const stack = up(['--port', '0', '--decode', '2', '--hardware', 'TPU-v9', '--routing', 'random']);
    expect(await stack.exited).toBe(1);
    expect(stack.stderr()).toMatch(/decode-\d exited with code 1; its last lines:/);
    expect(stack.stderr()).toContain('TPU-v9');
  });

  it('takes its children along when it is killed outright', async () => {
    const stack = up(['--port', '0', '--decode', '1', '--indexer', 'off']);
    const { components } = await stack.ready;
    stack.proc.kill('SIGKILL');
    await stack.exited;
    await waitFor(() => components.every((c) => dead(c.pid)), 10_000, 'the orphaned components to exit');
  });
});
