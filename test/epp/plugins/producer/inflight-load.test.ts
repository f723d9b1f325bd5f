import { describe, expect, it } from 'vitest';
import {
  INFLIGHT_LOAD,
  INFLIGHT_LOAD_ATTR,
  TOKENIZED_REQUEST,
} from '../../../../src/epp/framework/data-keys.js';
import type { ResponseInfo } from '../../../../src/epp/framework/requestcontrol.js';
import {
  definition,
  InflightLoadProducer,
  params,
  TYPE,
} from '../../../../src/epp/plugins/producer/inflight-load.js';
import { create, makeEndpoint, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';
import { handleWithRemovals, scheduled } from './fixtures.js';

const done: ResponseInfo = {
  status: 200,
  headers: {},
  endpoint: null,
  streaming: false,
  usage: null,
  aborted: false,
};

function withTokens(count: number, init: Parameters<typeof makeRequest>[0] = {}) {
  const req = makeRequest(init);
  req.state.write(TOKENIZED_REQUEST, {
    tokenCount: count,
    prompts: [new Uint32Array(count)],
    backend: 'estimate',
  });
  return req;
}

function setup(p: Record<string, unknown> = {}, n = 3) {
  const endpoints = makeEndpoints(n);
  return { plugin: create<InflightLoadProducer>(definition, p, testHandle(endpoints)), endpoints };
}

describe('inflight-load-producer parameters', () => {
  it('has defaults: output tokens counted at 1.5× the input', () => {
    expect(TYPE).toBe('inflight-load-producer');
    expect(params.parse({})).toEqual({ addEstimatedOutputTokens: true, outputRatio: 1.5 });
  });

  it('rejects unknown and out-of-range parameters', () => {
    for (const bad of [
      { outputRatio: -1 },
      { outputRatio: Infinity },
      { maxEstimatedOutputTokens: -1 },
      { maxEstimatedOutputTokens: 1.5 },
      { addEstimatedOutputTokens: 'yes' },
      { syncCrossReplicaState: true },
    ]) {
      expect(() => params.parse(bad), JSON.stringify(bad)).toThrow();
    }
  });
});

describe('the token estimate', () => {
  it('is input tokens + round(1.5 × input)', () => {
    const { plugin } = setup();
    expect(plugin.estimateTokens(withTokens(100))).toBe(250);
    expect(plugin.estimateTokens(withTokens(3))).toBe(3 + 5);
    expect(plugin.estimateTokens(withTokens(0))).toBe(0);
  });

  it('caps the output by the request’s max tokens', () => {
    const { plugin } = setup();
    expect(plugin.estimateTokens(withTokens(100, { body: { maxTokens: 20 } }))).toBe(120);
    expect(plugin.estimateTokens(withTokens(100, { body: { maxTokens: 0 } }))).toBe(100);
    expect(plugin.estimateTokens(withTokens(100, { body: { maxTokens: 1000 } }))).toBe(250);
  });

  it('without a TokenizedRequest takes request bytes / 4 as the input', () => {
    const { plugin } = setup();
    const req = makeRequest({ json: { model: 'm', prompt: 'x'.repeat(100) } });
    const input = Math.floor(req.requestSizeBytes / 4);
    expect(plugin.estimateTokens(req)).toBe(input + Math.round(1.5 * input));
  });

  it('follows outputRatio, maxEstimatedOutputTokens and addEstimatedOutputTokens', () => {
    expect(setup({ outputRatio: 0.5 }).plugin.estimateTokens(withTokens(100))).toBe(150);
    expect(setup({ maxEstimatedOutputTokens: 10 }).plugin.estimateTokens(withTokens(100))).toBe(110);
    expect(setup({ addEstimatedOutputTokens: false }).plugin.estimateTokens(withTokens(100))).toBe(100);
  });
});

describe('counting what is in flight', () => {
  it('attaches counters to every candidate at Produce and marks the data produced', () => {
    const { plugin, endpoints } = setup();
    expect(plugin.produces).toEqual([INFLIGHT_LOAD]);
    const req = makeRequest();
    plugin.produce(req, endpoints);
    expect(req.state.read(INFLIGHT_LOAD)).toBe(true);
    for (const ep of endpoints)
      expect(ep.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 0, tokens: 0 });
  });

  it('adds one request and its tokens to the chosen endpoint at PreRequest, and takes them back at completion', () => {
    const { plugin, endpoints } = setup();
    const a = withTokens(100);
    const b = withTokens(10);
    plugin.preRequest(a, scheduled(endpoints[1]!));
    plugin.preRequest(b, scheduled(endpoints[1]!));
    expect(endpoints[1]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 2, tokens: 250 + 25 });
    expect(endpoints[0]!.attributes.get(INFLIGHT_LOAD_ATTR)).toBeUndefined();
    plugin.responseComplete(a, done);
    expect(endpoints[1]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 1, tokens: 25 });
    plugin.responseComplete(b, { ...done, aborted: true });
    expect(endpoints[1]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 0, tokens: 0 });
  });

  it('counts the prefill profile’s endpoint too', () => {
    const { plugin, endpoints } = setup();
    const req = withTokens(100);
    plugin.preRequest(req, scheduled(endpoints[0]!, endpoints[2]!));
    expect(endpoints[0]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 1, tokens: 250 });
    expect(endpoints[2]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 1, tokens: 250 });
    plugin.responseComplete(req, done);
    expect(endpoints[2]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 0, tokens: 0 });
  });

  it('subtracts exactly what was added, once, even if the request’s data changed meanwhile', () => {
    const { plugin, endpoints } = setup();
    const req = withTokens(100);
    plugin.preRequest(req, scheduled(endpoints[0]!));
    plugin.preRequest(req, scheduled(endpoints[0]!));
    req.state.write(TOKENIZED_REQUEST, { tokenCount: 5000, prompts: [], backend: 'estimate' });
    const other = withTokens(4);
    plugin.preRequest(other, scheduled(endpoints[0]!));
    plugin.responseComplete(req, done);
    plugin.responseComplete(req, done);
    expect(endpoints[0]!.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 1, tokens: 10 });
  });

  it('never goes negative and ignores requests it never counted', () => {
    const { plugin, endpoints } = setup();
    const req = withTokens(100);
    plugin.preRequest(req, scheduled(endpoints[0]!));
    const counters = endpoints[0]!.attributes.get(INFLIGHT_LOAD_ATTR)!;
    counters.requests = 0;
    counters.tokens = 7;
    plugin.responseComplete(req, done);
    expect(counters).toEqual({ requests: 0, tokens: 0 });
    plugin.responseComplete(withTokens(1), done);
    plugin.preRequest(withTokens(1), scheduled(null));
    expect(counters).toEqual({ requests: 0, tokens: 0 });
  });

  it('keeps counting by endpoint id when the Endpoint object is replaced', () => {
    const { plugin, endpoints } = setup();
    const req = withTokens(100);
    plugin.preRequest(req, scheduled(endpoints[0]!));
    const replacement = makeEndpoint({ slot: 0, name: 'pod-0' });
    plugin.produce(makeRequest(), [replacement]);
    expect(replacement.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 1, tokens: 250 });
    plugin.responseComplete(req, done);
    expect(replacement.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 0, tokens: 0 });
  });

  it('drops the counters of an endpoint that leaves; one that comes back starts from zero', () => {
    const endpoints = makeEndpoints(2);
    const { handle, leave } = handleWithRemovals(endpoints);
    const plugin = create<InflightLoadProducer>(definition, {}, handle);
    const req = withTokens(100);
    plugin.preRequest(req, scheduled(endpoints[1]!));
    leave(endpoints[1]!);
    expect(endpoints[1]!.attributes.get(INFLIGHT_LOAD_ATTR)).toBeUndefined();
    const back = makeEndpoint({ slot: 1, name: 'pod-1' });
    plugin.produce(makeRequest(), [back]);
    expect(back.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 0, tokens: 0 });
    plugin.responseComplete(req, done);
    expect(back.attributes.get(INFLIGHT_LOAD_ATTR)).toEqual({ requests: 0, tokens: 0 });
  });
});
