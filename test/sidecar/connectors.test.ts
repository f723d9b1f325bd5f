import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/core/rng.js';
import { oneTokenEdits, type ApiType } from '../../src/sidecar/api.js';
import { createConnector, type PdRequest } from '../../src/sidecar/connectors/index.js';
import { PREFILL_KV_TRANSFER_PARAMS } from '../../src/sidecar/connectors/nixlv2.js';
import { sglang } from '../../src/sidecar/connectors/sglang.js';
import { scanObject } from '../../src/sidecar/json-patch.js';
import { parseTarget } from '../../src/sidecar/ssrf.js';

const BIG = '1152921504606846976';

function req(body: string, api: ApiType = 'chat', target = '10.0.0.7:8000'): PdRequest {
  return { body: scanObject(body), api, target: parseTarget(target)! };
}

const connector = (name: 'nixlv2' | 'nixl' | 'shared-storage' | 'sglang') =>
  createConnector(name, { sglangBootstrapPort: 8998, rng: new Rng(1) });

const noWarn = (msg: string): void => {
  throw new Error(`unexpected warning: ${msg}`);
};

const NULL_FILLED = {
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
};

describe('the nixlv2 connector', () => {
  const c = connector('nixlv2');
  const client =
    `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,` +
    `"stream_options":{"include_usage":true},"max_tokens":50,"min_tokens":5,"seed":${BIG},` +
    `"kv_transfer_params":{"client":"junk"}}`;

  it('asks the prefiller for one token, non-streaming, with the null-filled kv_transfer_params', () => {
    const out = c.prefillBody(req(client)).toString();
    expect(JSON.parse(out)).toEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      stream: false,
      max_tokens: 1,
      max_completion_tokens: 1,
      min_tokens: 1,
      seed: Number(BIG),
      kv_transfer_params: NULL_FILLED,
    });
    expect(out).toContain(`"seed":${BIG}`);
    expect(out).toContain(`"kv_transfer_params":${PREFILL_KV_TRANSFER_PARAMS}`);
  });

  it("decodes with the client's body exactly plus the prefiller's kv_transfer_params verbatim", () => {
    const r = req(client);
    const kv =
      '{"do_remote_prefill":true,"remote_block_ids":[[1,2],[3]],"remote_engine_id":"e","remote_port":5600,"x":18446744073709551615}';
    const answer = scanObject(`{"id":"p","kv_transfer_params":${kv},"choices":[]}`);
    const out = c.decodeBody(r, answer, c.prefillBody(r), noWarn).toString();
    expect(out).toBe(client.replace('{"client":"junk"}', kv));
  });

  it('leaves absent fields absent in the decode leg', () => {
    const r = req('{"model":"m","prompt":"x"}', 'completions');
    const answer = scanObject('{"kv_transfer_params":{"a":1}}');
    expect(c.decodeBody(r, answer, c.prefillBody(r), noWarn).toString()).toBe(
      '{"model":"m","prompt":"x","kv_transfer_params":{"a":1}}',
    );
  });

  it('decodes with null kv_transfer_params when the prefiller sent none, and says so', () => {
    const warnings: string[] = [];
    const r = req('{"model":"m","prompt":"x"}', 'completions');
    const out = c.decodeBody(r, scanObject('{"id":"p"}'), c.prefillBody(r), (m) => warnings.push(m));
    expect(JSON.parse(out.toString())).toEqual({ model: 'm', prompt: 'x', kv_transfer_params: null });
    expect(warnings).toEqual(["missing 'kv_transfer_params' field in prefiller response"]);
  });

  it('caps the token field of each API', () => {
    const responses = JSON.parse(
      c.prefillBody(req('{"model":"m","input":"x","max_output_tokens":99}', 'responses')).toString(),
    );
    expect(responses).toMatchObject({ max_output_tokens: 1, stream: false });
    expect(responses).not.toHaveProperty('max_tokens');
    expect(responses).not.toHaveProperty('min_tokens');
    const messages = JSON.parse(
      c.prefillBody(req('{"model":"m","messages":[],"max_tokens":99}', 'messages')).toString(),
    );
    expect(messages).toMatchObject({ max_tokens: 1, max_completion_tokens: 1, min_tokens: 1 });
    const generate = req(
      `{"token_ids":[1,2],"sampling_params":{"max_tokens":99,"temperature":0.5,"seed":${BIG}}}`,
      'generate',
    );
    const g = c.prefillBody(generate).toString();
    expect(JSON.parse(g).sampling_params).toEqual({
      max_tokens: 1,
      temperature: 0.5,
      seed: Number(BIG),
      min_tokens: 1,
    });
    expect(g).toContain(`"seed":${BIG}`);
    const decoded = c
      .decodeBody(generate, scanObject('{"kv_transfer_params":null}'), Buffer.from(g), noWarn)
      .toString();
    expect(decoded).toContain(`"sampling_params":{"max_tokens":99,"temperature":0.5,"seed":${BIG}}`);
    const bare = req('{"token_ids":[1]}', 'generate');
    expect(JSON.parse(c.prefillBody(bare).toString()).sampling_params).toEqual({
      max_tokens: 1,
      min_tokens: 1,
    });
    expect(
      JSON.parse(c.decodeBody(bare, scanObject('{}'), Buffer.alloc(0), () => undefined).toString()),
    ).toEqual({
      token_ids: [1],
      kv_transfer_params: null,
    });
    expect(oneTokenEdits(scanObject('{"min_tokens":3}'), 'responses').map(([k]) => k)).toEqual([
      'max_output_tokens',
      'min_tokens',
    ]);
  });
});

describe('the nixl (v1) connector', () => {
  const c = connector('nixl');

  it('puts the transfer fields at the top level and leaves the token limits alone', () => {
    const r = req(
      '{"model":"m","prompt":"x","stream":true,"stream_options":{},"max_tokens":9}',
      'completions',
    );
    expect(JSON.parse(c.prefillBody(r).toString())).toEqual({
      model: 'm',
      prompt: 'x',
      stream: false,
      max_tokens: 9,
      do_remote_decode: true,
    });
    const answer = scanObject(
      '{"remote_block_ids":[1,2],"remote_engine_id":"e","remote_host":"10.0.0.7","remote_port":5600,"choices":[]}',
    );
    expect(JSON.parse(c.decodeBody(r, answer, c.prefillBody(r), noWarn).toString())).toEqual({
      model: 'm',
      prompt: 'x',
      stream: true,
      stream_options: {},
      max_tokens: 9,
      do_remote_prefill: true,
      remote_block_ids: [1, 2],
      remote_engine_id: 'e',
      remote_host: '10.0.0.7',
      remote_port: 5600,
    });
  });

  it('logs the remote fields the prefiller did not send, and goes on', () => {
    const seen: unknown[] = [];
    const r = req('{"model":"m","prompt":"x"}', 'completions');
    const out = c.decodeBody(r, scanObject('{"remote_engine_id":"e"}'), c.prefillBody(r), (m, f) =>
      seen.push([m, f]),
    );
    expect(JSON.parse(out.toString())).toEqual({
      model: 'm',
      prompt: 'x',
      do_remote_prefill: true,
      remote_engine_id: 'e',
    });
    expect(seen).toEqual([
      [
        'prefiller response lacks remote fields',
        { missing: ['remote_block_ids', 'remote_host', 'remote_port'] },
      ],
    ]);
  });
});

describe('the shared-storage connector', () => {
  const c = connector('shared-storage');

  it("prefills one token without streaming, and decodes the client's body untouched", () => {
    const client = `{"model":"m","prompt":"x","stream":true,"max_tokens":30,"seed":${BIG}}`;
    const r = req(client, 'completions');
    expect(JSON.parse(c.prefillBody(r).toString())).toEqual({
      model: 'm',
      prompt: 'x',
      stream: false,
      max_tokens: 1,
      max_completion_tokens: 1,
      min_tokens: 1,
      seed: Number(BIG),
    });
    expect(c.decodeBody(r, scanObject('{}'), c.prefillBody(r), noWarn).toString()).toBe(client);
    expect(createConnector('shared-storage', { sglangBootstrapPort: 1, rng: new Rng(0) }).name).toBe(
      'shared-storage',
    );
  });
});

describe('the sglang connector', () => {
  it('adds the bootstrap fields to both legs, identically, and runs them concurrently', () => {
    const c = sglang({ bootstrapPort: 8998, rng: new Rng(3), nowNs: () => 1_700_000_000_000_000_000n });
    expect(c.ordering).toBe('concurrent');
    const r = req(`{"model":"m","prompt":"x","seed":${BIG}}`, 'completions', '[fd00::5]:8000');
    const p = c.prefillBody(r);
    const parsed = JSON.parse(p.toString());
    expect(parsed).toMatchObject({ bootstrap_host: 'fd00::5', bootstrap_port: 8998 });
    const room = /"bootstrap_room":(\d+)/.exec(p.toString())![1]!;
    expect(BigInt(room) - 1_700_000_000_000_000_000n).toBeGreaterThanOrEqual(0n);
    expect(BigInt(room) - 1_700_000_000_000_000_000n).toBeLessThan(1000n);
    expect(p.toString()).toContain(`"seed":${BIG}`);
    expect(c.decodeBody(r, null, p, noWarn)).toBe(p);
  });

  it('gives requests distinct rooms', () => {
    const c = connector('sglang');
    const rooms = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const b = c.prefillBody(req('{"prompt":"x"}', 'completions')).toString();
      rooms.add(/"bootstrap_room":(\d+)/.exec(b)![1]!);
    }
    expect(rooms.size).toBe(1000);
    const host = JSON.parse(c.prefillBody(req('{"prompt":"x"}', 'completions', 'p.ns:8000')).toString());
    expect(host.bootstrap_host).toBe('p.ns');
  });
});
