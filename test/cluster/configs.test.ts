/**
 * The EPP configs `llmd up` runs: the shipped deploy/examples load with the EPP's real loader and
 * catalog, equal the presets `--routing` picks, and are wired to the local stack's indexer.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';
import { Rng } from '../../src/core/rng.js';
import { loadEppConfig, type EppConfig } from '../../src/epp/config/loader.js';
import { inTreeRegistry } from '../../src/epp/plugins/registry.js';
import {
  checkEppConfig,
  EXAMPLE_FILES,
  parseUserConfig,
  presetDoc,
  presetFor,
  renderConfig,
  usesPrecise,
  wireConfig,
  type ConfigDoc,
  type Preset,
} from '../../src/cluster/configs.js';
import { testHandle } from '../epp/helpers.js';

const example = (file: string): string =>
  readFileSync(new URL(`../../deploy/examples/${file}`, import.meta.url), 'utf8');

function load(text: string): EppConfig {
  return loadEppConfig(text, {
    registry: inTreeRegistry(),
    logger: silentLogger(),
    rng: new Rng(1),
    clock: () => 0,
    endpoints: testHandle().endpoints,
  });
}

function weights(cfg: EppConfig, profile: string): Record<string, number> {
  return Object.fromEntries(
    cfg.profiles.get(profile)!.scorers.map((s) => [s.scorer.typedName.type, s.weight]),
  );
}

function producerParams(doc: ConfigDoc): Record<string, unknown> {
  const plugins = doc.plugins as { type: string; parameters?: Record<string, unknown> }[];
  return plugins.find((p) => p.type === 'precise-prefix-cache-producer')!.parameters!;
}

const presets = Object.keys(EXAMPLE_FILES) as Preset[];

describe('deploy/examples', () => {
  it.each(presets)('%s loads in the EPP and is the preset llmd up runs', async (preset) => {
    const text = example(EXAMPLE_FILES[preset]);
    expect(parseYaml(text)).toEqual(presetDoc(preset));
    const cfg = load(text);
    await cfg.close();
    await checkEppConfig(text);
  });

  it('random picks at random, load scores only load', async () => {
    const random = load(example('random.yaml'));
    expect(random.profiles.get('default')!.picker.typedName.type).toBe('random-picker');
    expect(weights(random, 'default')).toEqual({});
    const loadOnly = load(example('load.yaml'));
    expect(weights(loadOnly, 'default')).toEqual({ 'queue-scorer': 1, 'kv-cache-utilization-scorer': 1 });
    await Promise.all([random.close(), loadOnly.close()]);
  });

  it("approx and precise use llm-d's default weights, with their own producers", async () => {
    const approx = load(example('approx-prefix.yaml'));
    const precise = load(example('precise-prefix.yaml'));
    for (const cfg of [approx, precise]) {
      expect(weights(cfg, 'default')).toEqual({
        'queue-scorer': 2,
        'kv-cache-utilization-scorer': 2,
        'prefix-cache-scorer': 3,
      });
    }
    const types = (cfg: EppConfig) => cfg.producers.map((p) => p.typedName.type);
    expect(types(approx)).toContain('approx-prefix-cache-producer');
    expect(types(precise)).toContain('precise-prefix-cache-producer');
    expect(types(precise)).toContain('token-producer');
    await Promise.all([approx.close(), precise.close()]);
  });

  it('P/D has a prefill and a decode profile under the disagg handler', async () => {
    const cfg = load(example('pd-precise-prefix.yaml'));
    expect([...cfg.profiles.keys()].sort()).toEqual(['decode', 'prefill']);
    expect(cfg.profileHandler.typedName.type).toBe('disagg-profile-handler');
    expect(cfg.profiles.get('decode')!.filters.map((f) => f.typedName.type)).toEqual(['decode-filter']);
    expect(cfg.profiles.get('prefill')!.filters.map((f) => f.typedName.type)).toEqual(['prefill-filter']);
    await cfg.close();
  });
});

describe('presets by routing name', () => {
  it('maps routing and P/D to a preset', () => {
    expect(presetFor('precise', false)).toBe('precise');
    expect(presetFor('random', false)).toBe('random');
    expect(presetFor('precise', true)).toBe('pd-precise');
    expect(presetFor('approx', true)).toBe('pd-approx');
    expect(() => presetFor('random', true)).toThrow(/no P\/D variant/);
    expect(() => presetFor('load', true)).toThrow(ConfigError);
  });

  it('knows which presets need KV events', () => {
    expect(presets.filter((p) => usesPrecise(presetDoc(p))).sort()).toEqual(['pd-precise', 'precise']);
  });
});

describe('wiring to the local stack', () => {
  it('binds the embedded indexer where the servers publish, without pod discovery', async () => {
    const doc = wireConfig(presetDoc('precise'), {
      kind: 'embedded',
      zmqEndpoint: 'tcp://127.0.0.1:41000',
      redis: null,
    });
    expect(producerParams(doc).kvEventsConfig).toEqual({
      zmqEndpoint: 'tcp://127.0.0.1:41000',
      discoverPods: false,
    });
    // The original is untouched.
    expect(producerParams(presetDoc('precise')).kvEventsConfig).toMatchObject({
      zmqEndpoint: 'tcp://*:5557',
    });
    await checkEppConfig(renderConfig(doc));
  });

  it('puts the index in Redis', async () => {
    const doc = wireConfig(presetDoc('pd-precise'), {
      kind: 'embedded',
      zmqEndpoint: 'tcp://127.0.0.1:41000',
      redis: 'redis://127.0.0.1:6390',
    });
    expect(producerParams(doc).indexerConfig).toEqual({
      kvBlockIndexConfig: { redisConfig: { address: 'redis://127.0.0.1:6390' } },
    });
    await checkEppConfig(renderConfig(doc));
  });

  it('scores through a standalone indexer', async () => {
    const doc = wireConfig(presetDoc('precise'), { kind: 'remote', url: 'http://127.0.0.1:41001' });
    expect(producerParams(doc).indexerConfig).toEqual({
      remoteIndexerConfig: { url: 'http://127.0.0.1:41001' },
    });
    expect(producerParams(doc).kvEventsConfig).toBeUndefined();
    await checkEppConfig(renderConfig(doc));
  });

  it('refuses a precise config when the indexer is off', () => {
    expect(() => wireConfig(presetDoc('precise'), { kind: 'none' })).toThrow(/--indexer is off/);
    expect(wireConfig(presetDoc('approx'), { kind: 'none' })).toEqual(presetDoc('approx'));
  });

  it("checks a user's config before anything starts, naming the file", async () => {
    expect(() => parseUserConfig('kind: Pod\n', 'mine.yaml')).toThrow(/--config mine.yaml/);
    expect(() => parseUserConfig('{{', 'mine.yaml')).toThrow(ConfigError);
    const bad = example('random.yaml').replace('random-picker\n', 'no-such-picker\n');
    await expect(checkEppConfig(bad)).rejects.toThrow(/no-such-picker/);
  });
});
