/**
 * `llmd kv-indexer`'s HTTP API in process: scores for tokens, completions and chat prompts against a
 * seeded index, speculative entries, metrics under upstream's names, and bad input answered with
 * vLLM's error JSON without hurting the service.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/engine/tokenizer/tokenizer.js';
import { renderChat } from '../../src/engine/tokenizer/chat-template.js';
import type { PodEntry } from '../../src/kvcache/index/index.js';
import { parseKvEndpoint, startKvIndexer, type RunningKvIndexer } from '../../src/kvcache/kv-indexer.js';
import { silentLogger } from '../../src/core/log.js';

const MODEL = 'Qwen/Qwen3-8B';
const gpu = (pod: string): PodEntry => ({ pod, tier: 'gpu', speculative: false, groupIdx: null });
const cpu = (pod: string): PodEntry => ({ pod, tier: 'cpu', speculative: false, groupIdx: null });

let kv: RunningKvIndexer;
let tokens: number[];
let chatTokens: number[];
const PROMPT = Array.from({ length: 40 }, (_, i) => `word${i % 7} of the shared document`).join(', ');
const MESSAGES = [
  { role: 'system', content: 'You answer questions about caches.' },
  { role: 'user', content: PROMPT },
];

async function call(
  path: string,
  body?: unknown,
  init: RequestInit = {},
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(kv.url + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? null : (JSON.parse(text) as unknown) };
}

beforeAll(async () => {
  kv = await startKvIndexer(
    {
      host: '127.0.0.1',
      port: 0,
      zmqEndpoint: null,
      model: MODEL,
      cacheSize: 10_000,
      speculativeTtlMs: 60_000,
    },
    { logger: silentLogger() },
  );
  const tk = await loadTokenizer(undefined);
  tokens = tk.encode(PROMPT, { addSpecialTokens: true });
  chatTokens = tk.encode(
    renderChat(tk, { messages: MESSAGES, addGenerationPrompt: true, continueFinalMessage: false }),
    { addSpecialTokens: false },
  );
  const ix = kv.indexer;
  const keys = ix.requestKeys(tokens, MODEL);
  const n = keys.length >> 1;
  expect(n).toBeGreaterThan(8);
  // a: the whole prompt on GPU; b: half of it, its second block on CPU only; c: nothing of it.
  await ix.index.add(null, keys, [gpu('10.0.0.1:8000')]);
  await ix.index.add(null, keys.subarray(0, 2), [gpu('10.0.0.2:8000')]);
  await ix.index.add(null, keys.subarray(2, 4), [cpu('10.0.0.2:8000')]);
  await ix.index.add(null, ix.requestKeys(tokens, MODEL, 'salty').subarray(0, 6), [gpu('10.0.0.3:8000')]);
  await ix.index.add(null, ix.requestKeys(chatTokens, MODEL), [gpu('10.0.0.4:8000')]);
});

afterAll(async () => {
  await kv.close();
});

describe('llmd kv-indexer HTTP API', () => {
  it('scores token ids: the tier-weighted longest prefix per server', async () => {
    const n = Math.floor(tokens.length / 16);
    const r = await call('/score_tokens', { tokens, model: MODEL });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ '10.0.0.1:8000': n, '10.0.0.2:8000': 1.8 });
    const d = await call('/score_tokens?detail=true', { tokens, model: MODEL, pods: ['10.0.0.2:8000'] });
    expect(d.json).toEqual({ '10.0.0.2:8000': { score: 1.8, blocks: 2 } });
  });

  it('scores a completion prompt tokenized as the model server does, with the cache salt folded in', async () => {
    const n = Math.floor(tokens.length / 16);
    expect((await call('/score_completions', { prompt: PROMPT, model: MODEL })).json).toEqual({
      '10.0.0.1:8000': n,
      '10.0.0.2:8000': 1.8,
    });
    expect((await call('/score_completions', { prompt: tokens })).json).toMatchObject({ '10.0.0.1:8000': n });
    expect((await call('/score_completions', { prompt: PROMPT, cache_salt: 'salty' })).json).toEqual({
      '10.0.0.3:8000': 3,
    });
  });

  it('scores a chat prompt rendered with the chat template', async () => {
    const r = await call('/score_chat_completions', { model: MODEL, messages: MESSAGES });
    expect(r.json).toEqual({ '10.0.0.4:8000': Math.floor(chatTokens.length / 16) });
  });

  it('adds speculative entries that score until confirmed or expired', async () => {
    const other = tokens.map((t) => (t + 1) % 1000);
    expect((await call('/score_tokens', { tokens: other })).json).toEqual({});
    expect((await call('/speculative', { tokens: other, pod: '10.0.0.9:8000' })).status).toBe(204);
    const r = (await call('/score_tokens?detail=true', { tokens: other })).json as Record<
      string,
      { blocks: number }
    >;
    expect(r['10.0.0.9:8000']!.blocks).toBe(Math.floor(other.length / 16));
  });

  it('reports health, per-server key counts and metrics under upstream names', async () => {
    expect((await call('/health')).json).toEqual({ status: 'ok' });
    const d = (await call('/debug/index')).json as { backend: string; servers: Record<string, number> };
    expect(d.backend).toBe('memory');
    expect(d.servers['10.0.0.2:8000']).toBe(2);
    const res = await fetch(`${kv.url}/metrics`);
    const text = await res.text();
    for (const name of [
      'kvcache_index_lookup_requests_total',
      'llm_d_epp_kv_cache_index_lookup_requests_total',
      'kvcache_index_lookup_latency_seconds_bucket',
      'kvcache_index_admissions_total',
    ])
      expect(text).toContain(name);
    expect(text).toMatch(/^kvcache_index_lookup_requests_total [1-9]/m);
  });

  it('answers bad input with vLLM error JSON and keeps serving', async () => {
    const cases: [string, unknown, number][] = [
      ['/score_tokens', '{"tokens": [1, 2', 400],
      ['/score_tokens', { tokens: 'abc' }, 400],
      ['/score_tokens', { tokens: [-1] }, 400],
      ['/score_tokens', { tokens: [1.5] }, 400],
      ['/score_completions', {}, 400],
      ['/score_chat_completions', { messages: [] }, 400],
      ['/speculative', { tokens: [1] }, 400],
      ['/nope', {}, 404],
    ];
    for (const [path, body, status] of cases) {
      const r = await call(path, body);
      expect({ path, status: r.status }).toEqual({ path, status });
      expect(r.json).toMatchObject({ error: { code: status } });
      expect(JSON.stringify(r.json)).not.toContain('    at ');
    }
    expect((await call('/score_tokens', undefined, { method: 'GET' })).status).toBe(405);
    const big = await fetch(`${kv.url}/score_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '[' + '1,'.repeat(9 * 1024 * 1024) + '1]',
    }).catch(() => null);
    if (big !== null) expect(big.status).toBe(413);
    expect((await call('/health')).status).toBe(200);
  });
});

describe('parseKvEndpoint', () => {
  it('reads <server>=<endpoint>[,replay=<endpoint>]', () => {
    expect(parseKvEndpoint('10.0.0.5:8000=tcp://10.0.0.5:5557')).toEqual({
      id: '10.0.0.5:8000',
      endpoint: 'tcp://10.0.0.5:5557',
      replayEndpoint: null,
    });
    expect(parseKvEndpoint('a:1=tcp://a:2,replay=tcp://a:3').replayEndpoint).toBe('tcp://a:3');
  });
  it.each([
    'tcp://x:1',
    '=tcp://x:1',
    'a:1=http://x',
    'a:1=tcp://x:1,foo=bar',
    'a:1=tcp://x:1,replay=',
    'a:1=',
  ])('rejects %s', (spec) => {
    expect(() => parseKvEndpoint(spec)).toThrow(/--endpoint/);
  });
});
