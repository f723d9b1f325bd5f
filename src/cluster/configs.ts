/**
 * The EPP configs `llmd up` runs, by routing name: the same documents as deploy/examples/*.yaml (a
 * test keeps them equal), then wired to the local stack — the precise producer's ZMQ endpoint, the
 * remote indexer's URL or the Redis index. A user's own config (`--config`) is wired the same way, so
 * the shipped examples work unchanged with `--config`.
 */
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError } from '../core/errors.js';
import { silentLogger } from '../core/log.js';
import { Rng } from '../core/rng.js';
import { loadEppConfig, parseConfigText } from '../epp/config/loader.js';
import { inTreeRegistry } from '../epp/plugins/registry.js';
import type { Routing } from './topology.js';

/** A config document as plain data (what YAML parses to). */
export type ConfigDoc = Record<string, unknown>;

const HEAD = { apiVersion: 'llm-d.ai/v1alpha1', kind: 'EndpointPickerConfig' } as const;

const PRECISE_TYPES = new Set(['precise-prefix-cache-producer', 'precise-prefix-cache-scorer']);

/** The producer as shipped: a central ZMQ endpoint every server publishes to, no pod discovery. */
const preciseProducer = {
  type: 'precise-prefix-cache-producer',
  parameters: {
    tokenProcessorConfig: { blockSize: 16 },
    indexerConfig: { kvBlockIndexConfig: { inMemoryConfig: { size: 100_000_000 } } },
    kvEventsConfig: { zmqEndpoint: 'tcp://*:5557', discoverPods: false },
    speculativeIndexing: true,
  },
};

/** Example file name (under deploy/examples) per preset. */
export const EXAMPLE_FILES = {
  random: 'random.yaml',
  load: 'load.yaml',
  approx: 'approx-prefix.yaml',
  precise: 'precise-prefix.yaml',
  'pd-precise': 'pd-precise-prefix.yaml',
  'pd-approx': 'pd-approx-prefix.yaml',
} as const;
export type Preset = keyof typeof EXAMPLE_FILES;

function single(plugins: unknown[], profile: unknown[]): ConfigDoc {
  return { ...HEAD, plugins, schedulingProfiles: [{ name: 'default', plugins: profile }] };
}

function pd(producer: unknown[]): ConfigDoc {
  const scorers = [
    { pluginRef: 'prefix-cache-scorer', weight: 3 },
    { pluginRef: 'queue-scorer', weight: 2 },
    { pluginRef: 'kv-cache-utilization-scorer', weight: 2 },
  ];
  return {
    ...HEAD,
    plugins: [
      ...producer,
      { type: 'prefix-cache-scorer' },
      { type: 'queue-scorer' },
      { type: 'kv-cache-utilization-scorer' },
      { type: 'prefill-filter' },
      { type: 'decode-filter' },
      { type: 'max-score-picker' },
      { type: 'prefix-based-pd-decider', parameters: { nonCachedTokens: 16 } },
      { type: 'disagg-profile-handler', parameters: { deciders: { prefill: 'prefix-based-pd-decider' } } },
    ],
    schedulingProfiles: [
      {
        name: 'prefill',
        plugins: [{ pluginRef: 'prefill-filter' }, ...scorers, { pluginRef: 'max-score-picker' }],
      },
      {
        name: 'decode',
        plugins: [{ pluginRef: 'decode-filter' }, ...scorers, { pluginRef: 'max-score-picker' }],
      },
    ],
  };
}

/** Fresh copies of the shipped presets. */
export function presetDoc(preset: Preset): ConfigDoc {
  switch (preset) {
    case 'random':
      return single([{ type: 'random-picker' }], [{ pluginRef: 'random-picker' }]);
    case 'load':
      return single(
        [{ type: 'queue-scorer' }, { type: 'kv-cache-utilization-scorer' }, { type: 'max-score-picker' }],
        [
          { pluginRef: 'queue-scorer', weight: 1 },
          { pluginRef: 'kv-cache-utilization-scorer', weight: 1 },
          { pluginRef: 'max-score-picker' },
        ],
      );
    case 'approx':
    case 'precise':
      return single(
        [
          ...(preset === 'precise'
            ? [{ type: 'token-producer', parameters: { backend: 'vllm' } }, structuredClone(preciseProducer)]
            : [{ type: 'approx-prefix-cache-producer' }]),
          { type: 'queue-scorer' },
          { type: 'kv-cache-utilization-scorer' },
          { type: 'prefix-cache-scorer' },
          { type: 'max-score-picker' },
        ],
        [
          { pluginRef: 'queue-scorer', weight: 2 },
          { pluginRef: 'kv-cache-utilization-scorer', weight: 2 },
          { pluginRef: 'prefix-cache-scorer', weight: 3 },
          { pluginRef: 'max-score-picker' },
        ],
      );
    case 'pd-precise':
      return pd([
        { type: 'token-producer', parameters: { backend: 'vllm' } },
        structuredClone(preciseProducer),
      ]);
    case 'pd-approx':
      return pd([{ type: 'approx-prefix-cache-producer' }]);
  }
}

/** The preset for a routing name; P/D has its own (prefix-aware: the decider needs prefix matches). */
export function presetFor(routing: Routing, pdOn: boolean): Preset {
  if (!pdOn) return routing;
  if (routing === 'precise') return 'pd-precise';
  if (routing === 'approx') return 'pd-approx';
  throw new ConfigError(
    `--routing ${routing} has no P/D variant: P/D (--prefill > 0) decides on prefix matches, use --routing precise or approx`,
  );
}

/** How the precise producer reaches the index in this stack. */
export type IndexWiring =
  | { readonly kind: 'embedded'; readonly zmqEndpoint: string; readonly redis: string | null }
  | { readonly kind: 'remote'; readonly url: string }
  | { readonly kind: 'none' };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether the document routes on the servers' KV events (so they must publish them). */
export function usesPrecise(doc: ConfigDoc): boolean {
  const plugins = doc.plugins;
  return Array.isArray(plugins) && plugins.some((p) => isRecord(p) && PRECISE_TYPES.has(String(p.type)));
}

/** A copy of `doc` whose precise producers use `wiring`. */
export function wireConfig(doc: ConfigDoc, wiring: IndexWiring): ConfigDoc {
  const out = structuredClone(doc);
  const plugins = Array.isArray(out.plugins) ? (out.plugins as unknown[]) : [];
  for (const p of plugins) {
    if (!isRecord(p) || !PRECISE_TYPES.has(String(p.type))) continue;
    if (wiring.kind === 'none') {
      throw new ConfigError(
        `plugin ${String(p.type)} needs the KV-cache indexer, but --indexer is off`,
        'plugins',
      );
    }
    const params: Record<string, unknown> = isRecord(p.parameters) ? p.parameters : {};
    p.parameters = params;
    const indexerConfig: Record<string, unknown> = isRecord(params.indexerConfig) ? params.indexerConfig : {};
    if (wiring.kind === 'remote') {
      params.indexerConfig = { remoteIndexerConfig: { url: wiring.url } };
      delete params.kvEventsConfig;
      continue;
    }
    const events: Record<string, unknown> = isRecord(params.kvEventsConfig) ? params.kvEventsConfig : {};
    params.kvEventsConfig = { ...events, zmqEndpoint: wiring.zmqEndpoint, discoverPods: false };
    if (wiring.redis !== null) {
      const { kvBlockIndexConfig: _, ...rest } = indexerConfig;
      params.indexerConfig = { ...rest, kvBlockIndexConfig: { redisConfig: { address: wiring.redis } } };
    }
  }
  return out;
}

/** Parses and checks a user's config against the EPP's document schema (fields, not plugins). */
export function parseUserConfig(text: string, path: string): ConfigDoc {
  try {
    parseConfigText(text);
  } catch (err) {
    throw new ConfigError(`--config ${path}: ${(err as Error).message}`);
  }
  // The raw document, not the defaulted one: the EPP applies its own defaults when it loads it.
  const raw: unknown = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  return isRecord(raw) ? raw : {};
}

export function renderConfig(doc: ConfigDoc): string {
  return stringifyYaml(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}

/**
 * Loads a config with the EPP's own loader and catalog, without endpoints or I/O, so that a bad one
 * fails before any process starts. Throws the loader's ConfigError.
 */
export async function checkEppConfig(text: string): Promise<void> {
  const cfg = loadEppConfig(text, {
    registry: inTreeRegistry(),
    logger: silentLogger(),
    rng: new Rng(0),
    clock: () => Date.now(),
    endpoints: {
      list: () => [],
      get: () => undefined,
      slotCount: () => 0,
      onRemove: () => undefined,
    },
  });
  await cfg.close();
}
