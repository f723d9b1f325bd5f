/**
 * P/D between two `llmd serve` instances on loopback, through their HTTP APIs exactly as llm-d's
 * sidecar drives them: a prefill with `do_remote_decode`, then a decode with the returned
 * `kv_transfer_params` that pulls the blocks over the side channel.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type RunningServe } from '../../src/engine/serve.js';
import type { ServeOptionsInput } from '../../src/engine/options.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-8B';
const NIXL = { kv_connector: 'NixlConnector', kv_role: 'kv_both' } as const;
const LONG = 'Logistics manual, chapter one: parcels, pallets and the paperwork that follows them. '.repeat(
  60,
);

function serve(extra: Partial<ServeOptionsInput> = {}): Promise<RunningServe> {
  return startServe({
    model: MODEL,
    host: '127.0.0.1',
    port: 0,
    hashSeed: '42',
    enablePromptTokensDetails: true,
    kvTransferConfig: NIXL,
    nixlSideChannelPort: 0,
    nixlSideChannelHost: '127.0.0.1',
    simKvTransferGbps: 10_000,
    logLevel: 'silent',
    ...extra,
  });
}

async function completion(
  srv: RunningServe,
  body: Record<string, unknown>,
): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${srv.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, seed: 7, ...body }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, json, ms: performance.now() - t0 };
}

/** The sidecar's two legs: prefill (max_tokens 1, do_remote_decode), then decode with the params. */
async function pd(prefill: RunningServe, decode: RunningServe, prompt: string, maxTokens = 16) {
  const p = await completion(prefill, {
    prompt,
    max_tokens: 1,
    kv_transfer_params: { do_remote_decode: true, do_remote_prefill: false },
  });
  expect(p.status).toBe(200);
  const params = p.json.kv_transfer_params as Record<string, unknown>;
  const d = await completion(decode, {
    prompt,
    max_tokens: maxTokens,
    ignore_eos: true,
    kv_transfer_params: params,
  });
  return { prefill: p, decode: d, params };
}

function text(r: { json: Record<string, unknown> }): string {
  return (r.json.choices as { text: string }[])[0]!.text;
}

async function metric(srv: RunningServe, name: string): Promise<number> {
  const m = await (await fetch(`${srv.url}/metrics`)).text();
  const line = m.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('P/D between two llmd serve instances', () => {
  let prefill: RunningServe;
  let decode: RunningServe;
  let plain: RunningServe;

  beforeAll(async () => {
    [prefill, decode, plain] = await Promise.all([serve(), serve(), serve({ kvTransferConfig: undefined })]);
  });
  afterAll(async () => {
    await Promise.all([prefill?.close(), decode?.close(), plain?.close()]);
  });

  it('answers a prefill with the blocks it holds, and frees them once the decoder has pulled them', async () => {
    const r = await pd(prefill, decode, LONG);
    expect(r.params).toMatchObject({
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_host: '127.0.0.1',
      remote_port: prefill.sideChannelPort,
      tp_size: 1,
    });
    expect(Array.isArray(r.params.remote_block_ids)).toBe(true);
    expect(r.decode.status).toBe(200);
    expect(await metric(decode, 'vllm:nixl_bytes_transferred_sum')).toBeGreaterThan(0);
    await waitFor(() => prefill.core.stats().numHeld === 0, 5000, 'the prefiller to free the blocks');
    expect(prefill.core.stats().kvCacheUsage).toBe(0);
  });

  it('produces the same text as the same request served in one piece', async () => {
    const prompt = LONG + ' Same text?';
    const together = await completion(plain, { prompt, max_tokens: 16, ignore_eos: true });
    const split = await pd(prefill, decode, prompt);
    expect(text(split.decode)).toBe(text(together));
  });

  it('pays the transfer instead of the prefill in its time to first token', async () => {
    const prompt = 'A different long prompt about harbours and cranes. '.repeat(120);
    const together = await completion(plain, { prompt, max_tokens: 1, ignore_eos: true });
    const split = await pd(prefill, decode, prompt, 1);
    expect(split.decode.ms).toBeLessThan(together.ms / 2);
  });

  it('pulls only the blocks the decoder does not hold yet', async () => {
    const prompt = LONG + ' Repeated question.';
    await pd(prefill, decode, prompt);
    const before = await metric(decode, 'vllm:nixl_num_descriptors_sum');
    const again = await pd(prefill, decode, prompt);
    const pulled = (await metric(decode, 'vllm:nixl_num_descriptors_sum')) - before;
    const total = (again.params.remote_block_ids as number[]).length;
    // Only the block holding the prompt's last tokens is missing: the rest is in the decoder's cache.
    expect(pulled).toBe(1);
    expect(total).toBeGreaterThan(10);
  });

  it('computes the prompt itself when the params are unusable', async () => {
    const r = await completion(decode, {
      prompt: 'short prompt',
      max_tokens: 4,
      kv_transfer_params: { do_remote_prefill: true, remote_block_ids: 'nope' },
    });
    expect(r.status).toBe(200);
  });
});

describe('which --kv-transfer-config opens the side channel', () => {
  it('the NixlConnector, alone or inside a MultiConnector; no other connector', async () => {
    const multi = await serve({
      kvTransferConfig: {
        kv_connector: 'MultiConnector',
        kv_role: 'kv_both',
        kv_connector_extra_config: {
          connectors: [{ kv_connector: 'LMCacheConnectorV1' }, { kv_connector: 'NixlConnector' }],
        },
      },
    });
    const other = await serve({
      kvTransferConfig: { kv_connector: 'LMCacheConnectorV1', kv_role: 'kv_both' },
    });
    try {
      expect(multi.sideChannelPort).toBeGreaterThan(0);
      expect(other.sideChannelPort).toBeNull();
    } finally {
      await Promise.all([multi.close(), other.close()]);
    }
  });
});

describe('P/D failures', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    while (closers.length > 0) await closers.pop()!();
  });
  async function started(extra: Partial<ServeOptionsInput> = {}): Promise<RunningServe> {
    const s = await serve(extra);
    closers.push(() => s.close());
    return s;
  }

  it('fails the decode with a 500 when the blocks arrive corrupt, and frees them on the prefiller', async () => {
    const prefill = await started({ simKvTransferCorrupt: true });
    const decode = await started();
    const r = await pd(prefill, decode, LONG);
    expect(r.decode.status).toBe(500);
    expect(JSON.stringify(r.decode.json)).toMatch(/KV transfer .* failed \(corrupt\)/);
    expect(await metric(decode, 'vllm:nixl_num_failed_transfers_total')).toBe(1);
    await waitFor(() => prefill.core.stats().numHeld === 0, 5000, 'the prefiller to free the blocks');
  });

  it('recomputes the prompt when the policy says so, with the same result', async () => {
    const prefill = await started({ simKvTransferCorrupt: true });
    const decode = await started({ kvTransferConfig: { ...NIXL, kv_load_failure_policy: 'recompute' } });
    const plain = await started({ kvTransferConfig: undefined });
    const prompt = LONG + ' recompute';
    const r = await pd(prefill, decode, prompt);
    expect(r.decode.status).toBe(200);
    expect(text(r.decode)).toBe(text(await completion(plain, { prompt, max_tokens: 16, ignore_eos: true })));
  });

  it('fails fast when the prefiller is gone', async () => {
    const prefill = await started();
    const decode = await started();
    const p = await completion(prefill, {
      prompt: LONG,
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    await closers.shift()!();
    const d = await completion(decode, {
      prompt: LONG,
      max_tokens: 4,
      kv_transfer_params: p.json.kv_transfer_params,
    });
    expect(d.status).toBe(500);
    expect(d.ms).toBeLessThan(3000);
  });

  it('gives up on a prefiller that never answers within the transfer timeout', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    closers.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const decode = await started({ kvTransferTimeoutMs: 300 });
    const d = await completion(decode, {
      prompt: LONG,
      max_tokens: 4,
      kv_transfer_params: {
        do_remote_prefill: true,
        remote_block_ids: Array.from({ length: 60 }, (_, i) => i + 1),
        remote_engine_id: 'e',
        remote_request_id: 'r',
        remote_host: '127.0.0.1',
        remote_port: (silent.address() as { port: number }).port,
      },
    });
    expect(d.status).toBe(500);
    expect(d.ms).toBeLessThan(2500);
  });

  it('frees everything on both sides when the client goes away during the transfer', async () => {
    const prefill = await started();
    // A very slow simulated link keeps the decode waiting for its transfer.
    const decode = await started({ simKvTransferGbps: 0.001 });
    const p = await completion(prefill, {
      prompt: LONG,
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    const abort = new AbortController();
    const pending = fetch(`${decode.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        prompt: LONG,
        max_tokens: 4,
        kv_transfer_params: p.json.kv_transfer_params,
      }),
      signal: abort.signal,
    }).catch(() => null);
    await waitFor(
      async () => (await metric(decode, 'vllm:nixl_num_descriptors_count')) === 1,
      5000,
      'the pull',
    );
    abort.abort();
    await pending;
    await waitFor(() => prefill.core.stats().numHeld === 0, 5000, 'the prefiller to free the blocks');
    expect(decode.core.hasUnfinishedRequests()).toBe(false);
  });

  it('frees blocks no decoder came for after the abort timeout', async () => {
    const prefill = await started({ nixlAbortTimeoutS: 0.2 });
    await completion(prefill, {
      prompt: LONG,
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(prefill.core.stats().numHeld).toBe(1);
    await waitFor(() => prefill.core.stats().numHeld === 0, 5000, 'the hold to expire');
  });
});
