/**
 * What `llmd up` prints once the stack is ready: a table of the components and their URLs, and a
 * request to paste (curl, and the openai clients for Python and JavaScript).
 */
import type { StackPlan } from './plan.js';
import type { RunningComponent } from './supervisor.js';
import { isPd, type Topology } from './topology.js';

const ROLE: Record<RunningComponent['spec']['kind'], string> = {
  epp: 'gateway + EPP',
  'kv-indexer': 'KV-cache indexer',
  decode: 'decode server',
  prefill: 'prefill server',
  sidecar: 'P/D sidecar',
};

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function componentRows(components: readonly RunningComponent[]): string[][] {
  const rows: string[][] = [['COMPONENT', 'ROLE', 'URL', 'PID']];
  for (const c of components) {
    rows.push([c.spec.name, ROLE[c.spec.kind], c.url, String(c.pid)]);
    if (c.spec.kind === 'epp' && typeof c.ready.metrics_url === 'string') {
      rows.push(['', 'EPP metrics', `${c.ready.metrics_url}/metrics`, '']);
    }
  }
  return rows;
}

/** The sample request, the same in the three snippets. */
function snippets(model: string, gateway: string): string {
  const prompt = 'San Francisco is a';
  const body = JSON.stringify({ model, prompt, max_tokens: 24 });
  const chat = `[{"role": "user", "content": "Hello!"}]`;
  return [
    'Send a completion through the gateway:',
    '',
    `  curl ${gateway}/v1/completions -H 'content-type: application/json' \\`,
    `    -d '${body}'`,
    '',
    'Python (pip install openai):',
    '',
    '  from openai import OpenAI',
    `  client = OpenAI(base_url="${gateway}/v1", api_key="none")`,
    `  out = client.chat.completions.create(model="${model}", messages=${chat}, max_tokens=24)`,
    '  print(out.choices[0].message.content)',
    '',
    'JavaScript (npm install openai):',
    '',
    "  import OpenAI from 'openai';",
    `  const client = new OpenAI({ baseURL: '${gateway}/v1', apiKey: 'none' });`,
    `  const out = await client.chat.completions.create({ model: '${model}', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 24 });`,
    '  console.log(out.choices[0].message.content);',
    '',
  ].join('\n');
}

export function formatReady(
  t: Topology,
  p: StackPlan,
  components: readonly RunningComponent[],
  gateway: string,
): string {
  const servers = `${t.decode.replicas} decode${isPd(t) ? ` + ${t.prefill.replicas} prefill (P/D)` : ''}`;
  const indexer = p.precise ? `, ${t.indexer} indexer${t.redis !== null ? ' (Redis)' : ''}` : '';
  return [
    '',
    `llmd up: ${t.model} on ${servers} servers, ${p.routingLabel} routing${indexer}`,
    '',
    table(componentRows(components)),
    '',
    snippets(t.model, gateway),
    'Logs of every component follow on stderr. Ctrl-C stops the stack.',
    '',
  ].join('\n');
}
