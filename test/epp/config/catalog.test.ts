/**
 * The in-tree catalog behind the loader: the built-in default, llm-d's published example configs and
 * the seed's legacy example load, get the plugins upstream would give them, and route.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/log.js';
import { Rng } from '../../../src/core/rng.js';
import { loadEppConfig, type EppConfig } from '../../../src/epp/config/loader.js';
import type { Endpoint } from '../../../src/epp/framework/endpoint.js';
import { Director } from '../../../src/epp/handling/director.js';
import { EppMetrics } from '../../../src/epp/metrics.js';
import { inTreeRegistry } from '../../../src/epp/plugins/registry.js';
import { makeEndpoints, testHandle } from '../helpers.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/epp-configs/${name}`, import.meta.url), 'utf8');

function load(text: string | undefined, endpoints: Endpoint[] = []): EppConfig {
  return loadEppConfig(text, {
    registry: inTreeRegistry(),
    logger: silentLogger(),
    rng: new Rng(3),
    clock: () => 1,
    endpoints: testHandle(endpoints).endpoints,
  });
}

function weights(cfg: EppConfig, profile: string): Record<string, number> {
  return Object.fromEntries(
    cfg.profiles.get(profile)!.scorers.map((s) => [s.scorer.typedName.type, s.weight]),
  );
}

function director(cfg: EppConfig, endpoints: Endpoint[]): Director {
  return new Director({
    config: cfg,
    endpoints: testHandle(endpoints).endpoints,
    metrics: new EppMetrics({ commit: 'x', buildRef: 'y' }),
    logger: silentLogger(),
    clock: () => 1,
  });
}

const long = 'You are a helpful assistant. '.repeat(200);

function completion(prompt: string): { path: string; headers: Record<string, string>; body: Buffer } {
  return {
    path: '/v1/completions',
    headers: {},
    body: Buffer.from(JSON.stringify({ model: 'm', prompt, max_tokens: 8 })),
  };
}

describe('the in-tree plugin catalog', () => {
  it('registers every type once, with the deprecated aliases', () => {
    const r = inTreeRegistry();
    expect(r.types()).toContain('disagg-profile-handler');
    expect(r.resolve('by-label-selector')!.def.type).toBe('label-selector-filter');
    expect(r.resolve('tokenizer')!.def.type).toBe('token-producer');
    expect(r.resolve('prefill-header-handler')!.def.type).toBe('disagg-headers-handler');
  });

  it('runs the built-in default without a config: queue ×2, kv-cache ×2, prefix ×3', () => {
    const cfg = load(undefined);
    expect(weights(cfg, 'default')).toEqual({
      'queue-scorer': 2,
      'kv-cache-utilization-scorer': 2,
      'prefix-cache-scorer': 3,
    });
    expect(cfg.profileHandler.typedName.type).toBe('single-profile-handler');
    expect(cfg.profiles.get('default')!.picker.typedName.type).toBe('max-score-picker');
    expect(cfg.producers.map((p) => p.typedName.type)).toEqual([
      'token-producer',
      'approx-prefix-cache-producer',
    ]);
    expect(cfg.dataSources.map((d) => d.source.typedName.type)).toEqual(['metrics-data-source']);
  });

  it('loads the seed example: legacy prefix parameters go to the producer, the legacy weight to the profile', () => {
    const cfg = load(fixture('seed.yaml'));
    expect(weights(cfg, 'default')).toEqual({ 'prefix-cache-scorer': 1, 'load-aware-scorer': 0.5 });
    const producer = cfg.plugins.get('approx-prefix-cache-producer') as unknown as {
      p: Record<string, unknown>;
    };
    expect(producer.p).toMatchObject({
      autoTune: false,
      maxPrefixBlocksToMatch: 256,
      maxPrefixTokensToMatch: 0,
    });
    expect(cfg.warnings.some((w) => w.includes('apiVersion'))).toBe(true);
    expect(cfg.warnings.some((w) => w.includes('"weight"'))).toBe(true);
  });

  it('routes the seed example to the endpoint that served the prompt before', async () => {
    const eps = makeEndpoints(4, () => ({ metrics: { waitingQueueSize: 0, updateTime: 1 } }));
    const cfg = load(fixture('seed.yaml'), eps);
    const d = director(cfg, eps);
    const first = await d.schedule(d.buildRequest(completion(long + ' first question')));
    for (let i = 0; i < 5; i++) {
      const next = await d.schedule(d.buildRequest(completion(long + ` question ${i}`)));
      expect(next.targets[0]).toBe(first.targets[0]);
    }
  });

  it("loads llm-d's P/D example and disaggregates a long uncached prompt", async () => {
    const eps = makeEndpoints(4, (i) => ({ labels: { 'llm-d.ai/role': i < 2 ? 'prefill' : 'decode' } }));
    const cfg = load(fixture('pd-epp-config.yaml'), eps);
    expect(cfg.profileHandler.typedName.type).toBe('disagg-profile-handler');
    expect(weights(cfg, 'decode')).toEqual({ 'prefix-cache-scorer': 2, 'queue-scorer': 1 });
    const d = director(cfg, eps);
    const s = await d.schedule(d.buildRequest(completion(long)));
    expect(s.result.pd!.decision).toBe('prefill-decode');
    expect(s.targets[0]!.meta.labels['llm-d.ai/role']).toBe('decode');
    const prefiller = s.req.headers['x-prefiller-host-port'];
    expect(eps.slice(0, 2).map((e) => e.meta.hostPort)).toContain(prefiller);
    // A short prompt stays on the decode endpoint.
    const short = await d.schedule(d.buildRequest(completion('hi')));
    expect(short.result.pd!.decision).toBe('decode-only');
    expect(short.req.headers['x-prefiller-host-port']).toBeUndefined();
  });

  it("loads llm-d's simplest config and the legacy P/D config", () => {
    expect(weights(load(fixture('epp-config.yaml')), 'default')).toEqual({ 'prefix-cache-scorer': 2 });
    const legacy = load(fixture('legacy-pd.yaml'));
    expect(legacy.profileHandler.typedName.type).toBe('pd-profile-handler');
    expect(legacy.preRequest.map((p) => p.typedName.type)).toContain('disagg-headers-handler');
    expect(legacy.warnings.some((w) => w.includes('pd-profile-handler'))).toBe(true);
  });
});
