import { describe, expect, it } from 'vitest';
import { TOKENIZED_REQUEST, type TokenizedRequest } from '../../../../src/epp/framework/data-keys.js';
import {
  definition,
  LEGACY_TYPE,
  params,
  TokenProducer,
  TYPE,
} from '../../../../src/epp/plugins/producer/token.js';
import { create, makeRequest } from '../../helpers.js';

describe('token-producer parameters', () => {
  it('is registered under its upstream name and the legacy `tokenizer` alias', () => {
    expect(TYPE).toBe('token-producer');
    expect(definition.aliases).toEqual([LEGACY_TYPE]);
    expect(LEGACY_TYPE).toBe('tokenizer');
  });

  it('defaults to the estimate backend with the framework’s producer timeout', () => {
    expect(params.parse({})).toEqual({
      backend: 'estimate',
      modelName: undefined,
      tokenizer: undefined,
      url: undefined,
      timeoutMs: 5000,
      produceTimeoutMs: 400,
    });
  });

  it('local: a tokenizer path, and time for the one-time load', () => {
    expect(params.parse({ backend: 'local', tokenizer: '/models/x' })).toMatchObject({
      backend: 'local',
      tokenizer: '/models/x',
      produceTimeoutMs: 5000,
    });
  });

  it('vllm: url and timeout, the producer timeout just above the render timeout', () => {
    expect(params.parse({ backend: 'vllm', url: 'http://r:8000', timeoutMs: 300 })).toMatchObject({
      backend: 'vllm',
      url: 'http://r:8000',
      timeoutMs: 300,
      produceTimeoutMs: 400,
    });
    expect(params.parse({ backend: 'vllm' })).toMatchObject({ timeoutMs: 5000, produceTimeoutMs: 5100 });
    expect(params.parse({ backend: 'vllm', modelName: 'm' })).toMatchObject({ modelName: 'm' });
    expect(params.parse({ modelName: 'm' })).toMatchObject({ backend: 'vllm', modelName: 'm' });
  });

  it('vllm: accepts upstream’s `vllm: {url, timeout}` form, which selects the backend', () => {
    expect(params.parse({ vllm: { url: 'http://r:8000', timeout: '1m30s' } })).toMatchObject({
      backend: 'vllm',
      url: 'http://r:8000',
      timeoutMs: 90_000,
    });
    expect(params.parse({ vllm: { timeout: '250ms' } })).toMatchObject({
      timeoutMs: 250,
      produceTimeoutMs: 350,
    });
    expect(params.parse({ vllm: {} })).toMatchObject({ backend: 'vllm', timeoutMs: 5000 });
    expect(params.parse({ vllm: { timeout: 1500 } })).toMatchObject({ timeoutMs: 1500 });
  });

  it('an explicit produceTimeoutMs wins', () => {
    expect(params.parse({ produceTimeoutMs: 50 })).toMatchObject({ produceTimeoutMs: 50 });
    expect(params.parse({ backend: 'vllm', produceTimeoutMs: 50 })).toMatchObject({ produceTimeoutMs: 50 });
  });

  it('rejects unknown, misplaced and malformed parameters', () => {
    for (const bad of [
      { backend: 'sentencepiece' },
      { tokenizer: '/x' },
      { backend: 'vllm', tokenizer: '/x' },
      { url: 'http://r:8000' },
      { backend: 'local', timeoutMs: 5 },
      { backend: 'estimate', vllm: {} },
      { backend: 'vllm', url: 'not a url' },
      { backend: 'vllm', url: 'http://a', vllm: { url: 'http://b' } },
      { backend: 'vllm', timeoutMs: 5, vllm: { timeout: '5s' } },
      { vllm: { timeout: '5 seconds' } },
      { vllm: { timeout: '' } },
      { vllm: { timeout: '0s' } },
      { vllm: { timeout: -5 } },
      { vllm: { timeout: '0' } },
      { vllm: { caCertPath: '/x' } },
      { backend: 'vllm', timeoutMs: 0 },
      { produceTimeoutMs: -1 },
      { modelName: '' },
      { backend: 'estimate', modelName: 'm' },
      { model: 'x' },
    ]) {
      expect(() => params.parse(bad), JSON.stringify(bad)).toThrow();
    }
  });
});

describe('token-producer with the estimate backend', () => {
  it('produces synchronously and declares TokenizedRequest', () => {
    const p = create<TokenProducer>(definition);
    expect(p.produces).toEqual([TOKENIZED_REQUEST]);
    expect(p.produceTimeoutMs).toBe(400);
    const req = makeRequest({ json: { model: 'm', prompt: 'abcdefgh' } });
    expect(p.produce(req, [])).toBeUndefined();
    expect(req.state.read(TOKENIZED_REQUEST)).toMatchObject({ tokenCount: 2, backend: 'estimate' });
  });

  it('keeps a TokenizedRequest that is already there', () => {
    const p = create<TokenProducer>(definition);
    const req = makeRequest();
    const existing: TokenizedRequest = { tokenCount: 1, prompts: [Uint32Array.of(7)], backend: 'vllm' };
    req.state.write(TOKENIZED_REQUEST, existing);
    p.produce(req, []);
    expect(req.state.read(TOKENIZED_REQUEST)).toBe(existing);
  });

  it('init and close are harmless', async () => {
    const p = create<TokenProducer>(definition);
    p.init();
    await p.close();
  });
});
