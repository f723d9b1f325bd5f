/**
 * llmd serve's debug view of its prefix cache: the cached blocks by their 64-bit hashes (as KV events
 * name them) and, for a prompt, how many leading full blocks are cached — without running anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../src/engine/serve.js';

const MODEL = 'Qwen/Qwen3-0.6B';
let srv: RunningServe;

beforeAll(async () => {
  srv = await startServe({
    model: MODEL,
    host: '127.0.0.1',
    port: 0,
    blockSize: 16,
    simFixedStepMs: 1,
    hashSeed: '0',
    logLevel: 'silent',
  });
});
afterAll(() => srv.close());

async function post(path: string, body: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(srv.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe('debug endpoints', () => {
  it('list the cached blocks and count a prompt’s cached leading blocks, with no side effect', async () => {
    const tokens = Array.from({ length: 70 }, (_, i) => 1000 + i);
    expect(await post('/debug/kv_cache/prefix', { model: MODEL, prompt: tokens })).toEqual({
      status: 200,
      json: [{ prompt_tokens: 70, cached_blocks: 0 }],
    });
    const done = await post('/v1/completions', { model: MODEL, prompt: tokens, max_tokens: 1 });
    expect(done.status).toBe(200);
    // 70 prompt tokens and 1 output: four full blocks are cached.
    const prefix = await post('/debug/kv_cache/prefix', {
      model: MODEL,
      prompt: [tokens, tokens.slice(0, 40), [5, 6]],
    });
    expect(prefix.json).toEqual([
      { prompt_tokens: 70, cached_blocks: 4 },
      { prompt_tokens: 40, cached_blocks: 2 },
      { prompt_tokens: 2, cached_blocks: 0 },
    ]);
    const salted = await post('/debug/kv_cache/prefix', {
      model: MODEL,
      prompt: tokens,
      cache_salt: 'other',
    });
    expect(salted.json).toEqual([{ prompt_tokens: 70, cached_blocks: 0 }]);
    const all = (await (await fetch(srv.url + '/debug/kv_cache')).json()) as Record<string, unknown>;
    expect(all).toEqual({
      block_size: 16,
      num_cached_blocks: 4,
      block_hashes: srv.core
        .blockHashesOf(tokens)
        .slice(0, 4)
        .sort((a, b) => (a < b ? -1 : 1))
        .map(String),
    });
  });

  it('answer bad requests and wrong methods as every route does', async () => {
    expect((await post('/debug/kv_cache/prefix', { model: MODEL })).status).toBe(400);
    expect((await post('/debug/kv_cache/prefix', { model: 'nope', prompt: 'x' })).status).toBe(404);
    expect((await post('/debug/kv_cache', {})).status).toBe(405);
  });
});
