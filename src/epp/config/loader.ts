/**
 * Loads an `EndpointPickerConfig` (YAML or JSON) into running plugins, with upstream's two-phase
 * defaults (`pkg/epp/config/loader/{configloader,defaults,validation}.go`):
 *  1. decode strictly, check the envelope, create every plugin from its validated parameters;
 *  2. system defaults: a `default` profile over all filters/scorers/pickers when none is defined, a
 *     picker for every profile, a profile handler when one profile needs none, the producers every
 *     consumer needs (ordered by what they produce and consume), and the default metrics data source.
 * Every mistake fails here, at start-up, with a message naming the field.
 */
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Rng } from '../../core/rng.js';
import type { DataKey } from '../framework/cycle-state.js';
import {
  isDataSource,
  isEndpointDiscovery,
  isExtractor,
  type DataSource,
  type EndpointDiscovery,
  type Extractor,
} from '../framework/datalayer.js';
import type { EndpointSource } from '../framework/endpoint.js';
import type { Plugin, PluginHandle } from '../framework/plugin.js';
import type { PluginRegistry } from '../framework/registry.js';
import {
  isDataConsumer,
  isDataProducer,
  isPreRequest,
  isResponseComplete,
  isResponseReceived,
  isResponseStreaming,
  type DataProducer,
  type PreRequest,
  type ResponseComplete,
  type ResponseReceived,
  type ResponseStreaming,
} from '../framework/requestcontrol.js';
import {
  isFilter,
  isPicker,
  isProfileHandler,
  isScorer,
  type Filter,
  type Picker,
  type ProfileHandler,
  type SchedulerProfile,
  type WeightedScorer,
} from '../framework/scheduling.js';
import {
  DEFAULT_CONFIG,
  EndpointPickerConfigSchema,
  FEATURE_GATES,
  LEGACY_API_VERSION,
  type EndpointPickerConfigDoc,
} from './schema.js';

export interface LoaderDeps {
  readonly registry: PluginRegistry;
  readonly logger: Logger;
  readonly rng: Rng;
  readonly clock: () => number;
  readonly endpoints: EndpointSource;
  /** Alpha-stability plugin types are refused unless this is set (`--allow-experimental-plugins`). */
  readonly allowExperimental?: boolean;
}

export interface DataSourceBinding {
  readonly source: DataSource;
  readonly extractors: readonly Extractor[];
}

export interface EppConfig {
  /** Every plugin by name, auto-added ones included. */
  readonly plugins: ReadonlyMap<string, Plugin>;
  readonly profiles: ReadonlyMap<string, SchedulerProfile>;
  readonly profileHandler: ProfileHandler;
  /** In dependency order. */
  readonly producers: readonly DataProducer[];
  readonly preRequest: readonly PreRequest[];
  readonly responseReceived: readonly ResponseReceived[];
  readonly responseStreaming: readonly ResponseStreaming[];
  readonly responseComplete: readonly ResponseComplete[];
  readonly dataSources: readonly DataSourceBinding[];
  readonly discovery: EndpointDiscovery | null;
  readonly featureGates: ReadonlyMap<string, boolean>;
  /** Deprecations and mappings applied, as logged. */
  readonly warnings: readonly string[];
  /** The document after defaults, for `--config-dump`-style inspection and tests. */
  readonly source: EndpointPickerConfigDoc;
  close(): Promise<void>;
}

/** Parses YAML or JSON text; undefined or blank text means the built-in default. */
export function parseConfigText(text: string | undefined): EndpointPickerConfigDoc {
  if (text === undefined || text.trim() === '') return structuredClone(DEFAULT_CONFIG);
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`EndpointPickerConfig is not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('EndpointPickerConfig must be a mapping with apiVersion and kind');
  }
  const parsed = EndpointPickerConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`EndpointPickerConfig: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/** `path.to.field: message` for each zod issue, unknown keys named. */
export function formatIssues(err: z.ZodError, prefix: (string | number)[] = []): string {
  return err.issues
    .map((i) => {
      const path = formatPath([...prefix, ...i.path]);
      if (i.code === 'unrecognized_keys') {
        const keys = i.keys.map((k) => `"${k}"`).join(', ');
        return `${path ? path + ': ' : ''}unknown field${i.keys.length > 1 ? 's' : ''} ${keys}`;
      }
      return `${path ? path + ': ' : ''}${i.message}`;
    })
    .join('; ');
}

function formatPath(path: (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

export function loadEppConfig(text: string | undefined, deps: LoaderDeps): EppConfig {
  return buildEppConfig(parseConfigText(text), deps);
}

export function buildEppConfig(doc: EndpointPickerConfigDoc, deps: LoaderDeps): EppConfig {
  const warnings: string[] = [];
  const warn = (msg: string): void => {
    warnings.push(msg);
    deps.logger.warn(msg);
  };
  if (doc.apiVersion === LEGACY_API_VERSION) {
    warn(`apiVersion ${LEGACY_API_VERSION} is deprecated; use llm-d.ai/v1alpha1`);
  }
  const featureGates = parseFeatureGates(doc.featureGates ?? []);
  if (featureGates.get('flowControl') === true) {
    throw new ConfigError(
      'featureGates: flowControl is not supported by llmd yet; remove the gate to use legacy admission',
      'featureGates',
    );
  }
  if (doc.flowControl !== undefined) {
    throw new ConfigError('flowControl: flow control is not supported by llmd yet', 'flowControl');
  }

  const plugins = new Map<string, Plugin>();
  const order: Plugin[] = [];
  const legacyWeights = new Map<string, number>();
  const handle: PluginHandle = {
    logger: deps.logger,
    rng: deps.rng,
    clock: deps.clock,
    endpoints: deps.endpoints,
    plugin: (name) => plugins.get(name),
    plugins: () => order,
  };
  const add = (p: Plugin): void => {
    plugins.set(p.typedName.name, p);
    order.push(p);
  };

  // Phase 1: every configured plugin, from validated parameters.
  doc.plugins.forEach((spec, i) => {
    const name = spec.name ?? spec.type;
    const where = `plugins[${i}]`;
    if (plugins.has(name)) {
      throw new ConfigError(`${where}: duplicate plugin name "${name}"`, `${where}.name`);
    }
    const resolved = deps.registry.resolve(spec.type);
    if (resolved === undefined) {
      throw new ConfigError(
        `${where}: unknown plugin type "${spec.type}"${suggest(spec.type, deps.registry.types())}`,
        `${where}.type`,
      );
    }
    const { def, alias } = resolved;
    if (alias !== null) warn(`${where}: plugin type "${alias}" is deprecated; use "${def.type}"`);
    if (def.deprecated) warn(`${where}: plugin type "${def.type}" is deprecated: ${def.deprecated}`);
    if (def.stability === 'alpha' && !deps.allowExperimental) {
      throw new ConfigError(
        `${where}: plugin type "${def.type}" is experimental; start with --allow-experimental-plugins to use it`,
        `${where}.type`,
      );
    }
    let params = spec.parameters ?? {};
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      throw new ConfigError(
        `${where}: parameters of plugin "${name}" (${def.type}) must be a mapping`,
        `${where}.parameters`,
      );
    }
    // Earlier llm-d releases weighted a scorer with a `weight` parameter; it is now the profile's.
    const w = (params as Record<string, unknown>).weight;
    if (typeof w === 'number') {
      const { weight: _w, ...rest } = params as Record<string, unknown>;
      params = rest;
      legacyWeights.set(name, w);
      warn(
        `${where}: parameter "weight" of plugin "${name}" is deprecated; set weight in a scheduling profile`,
      );
    }
    const parsed = def.params.safeParse(params);
    if (!parsed.success) {
      throw new ConfigError(
        `${where}: plugin "${name}" (${def.type}): ${formatIssues(parsed.error, ['parameters'])}`,
        `${where}.parameters`,
      );
    }
    add(createPlugin(() => def.create(name, parsed.data, handle), where, name, def.type));
  });
  for (const name of legacyWeights.keys()) {
    if (!isScorer(plugins.get(name)!)) {
      throw new ConfigError(`plugin "${name}": parameter "weight" applies to scorers only`, 'plugins');
    }
  }

  // Phase 2: system defaults.
  const autoAdd = (type: string, name: string, params: unknown = {}): Plugin => {
    const resolved = deps.registry.resolve(type);
    if (resolved === undefined) throw new Error(`built-in plugin type ${type} is not registered`);
    const parsed = resolved.def.params.safeParse(params);
    if (!parsed.success) {
      throw new ConfigError(
        `auto-added plugin "${name}" (${type}): ${formatIssues(parsed.error, ['parameters'])}`,
      );
    }
    const p = createPlugin(() => resolved.def.create(name, parsed.data, handle), 'auto', name, type);
    add(p);
    return p;
  };
  const freeName = (base: string): string => {
    if (!plugins.has(base)) return base;
    for (let i = 2; ; i++) if (!plugins.has(`${base}-${i}`)) return `${base}-${i}`;
  };

  let profileDocs = doc.schedulingProfiles;
  if (profileDocs.length === 0) {
    profileDocs = [
      {
        name: 'default',
        plugins: order
          .filter((p) => isFilter(p) || isScorer(p) || isPicker(p))
          .map((p) => ({ pluginRef: p.typedName.name })),
      },
    ];
  }
  const firstPicker = (): Picker => {
    const existing = order.find(isPicker);
    return existing ?? (autoAdd('max-score-picker', freeName('max-score-picker')) as Picker);
  };
  const profiles = new Map<string, SchedulerProfile>();
  profileDocs.forEach((pd, i) => {
    const where = `schedulingProfiles[${i}]`;
    if (profiles.has(pd.name)) throw new ConfigError(`${where}: duplicate profile name "${pd.name}"`, where);
    const filters: Filter[] = [];
    const scorers: WeightedScorer[] = [];
    let picker: Picker | null = null;
    pd.plugins.forEach((ref, j) => {
      const at = `${where}.plugins[${j}]`;
      const p = plugins.get(ref.pluginRef);
      if (p === undefined) {
        throw new ConfigError(
          `${at}: pluginRef "${ref.pluginRef}" names no plugin defined under plugins`,
          `${at}.pluginRef`,
        );
      }
      let used = false;
      if (isFilter(p)) {
        filters.push(p);
        used = true;
      }
      if (isScorer(p)) {
        const weight = ref.weight ?? legacyWeights.get(ref.pluginRef) ?? 1;
        if (!(weight >= 0)) throw new ConfigError(`${at}.weight: must not be negative`, `${at}.weight`);
        scorers.push({ scorer: p, weight });
        used = true;
      } else if (ref.weight !== undefined) {
        throw new ConfigError(
          `${at}.weight: plugin "${ref.pluginRef}" (${p.typedName.type}) is not a scorer; only scorers take a weight`,
          `${at}.weight`,
        );
      }
      if (isPicker(p)) {
        if (picker !== null) {
          throw new ConfigError(
            `${at}: profile "${pd.name}" has two pickers ("${picker.typedName.name}" and "${p.typedName.name}")`,
            `${at}.pluginRef`,
          );
        }
        picker = p;
        used = true;
      }
      if (!used) {
        throw new ConfigError(
          `${at}: plugin "${ref.pluginRef}" (${p.typedName.type}) is not a filter, scorer or picker`,
          `${at}.pluginRef`,
        );
      }
    });
    profiles.set(pd.name, { name: pd.name, filters, scorers, picker: picker ?? firstPicker() });
  });

  const handlers = order.filter(isProfileHandler);
  let profileHandler: ProfileHandler;
  if (handlers.length > 1) {
    throw new ConfigError(
      `plugins: exactly one profile handler is allowed, found ${handlers.map((h) => `"${h.typedName.name}"`).join(', ')}`,
      'plugins',
    );
  } else if (handlers.length === 1) {
    profileHandler = handlers[0]!;
  } else if (profiles.size === 1) {
    profileHandler = autoAdd('single-profile-handler', freeName('single-profile-handler')) as ProfileHandler;
  } else {
    throw new ConfigError(
      `plugins: ${profiles.size} scheduling profiles need a profile handler (e.g. disagg-profile-handler)`,
      'plugins',
    );
  }

  // References between plugins resolve once every configured plugin exists; what a plugin consumes
  // may depend on them, so this runs before the producers are worked out (and again for those added).
  const initialized = new Set<Plugin>();
  const initAll = (): void => {
    for (const p of order) {
      if (initialized.has(p)) continue;
      initialized.add(p);
      try {
        p.init?.();
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw new ConfigError(
          `plugin "${p.typedName.name}" (${p.typedName.type}): ${(err as Error).message}`,
        );
      }
    }
  };
  initAll();
  const producers = resolveProducers(order, plugins, autoAdd, freeName);

  // Data layer: the sources the config names, plus the default metrics source unless told not to.
  const dataSources: DataSourceBinding[] = [];
  const dl = doc.dataLayer;
  (dl?.sources ?? []).forEach((s, i) => {
    const where = `dataLayer.sources[${i}]`;
    const source = plugins.get(s.pluginRef);
    if (source === undefined || !isDataSource(source)) {
      throw new ConfigError(`${where}.pluginRef: "${s.pluginRef}" is not a data source plugin`, where);
    }
    const extractors = s.extractors.map((e, j) => {
      const x = plugins.get(e.pluginRef);
      if (x === undefined || !isExtractor(x)) {
        throw new ConfigError(
          `${where}.extractors[${j}].pluginRef: "${e.pluginRef}" is not an extractor plugin`,
          `${where}.extractors[${j}]`,
        );
      }
      if (x.sourceKind !== source.kind) {
        throw new ConfigError(
          `${where}.extractors[${j}]: extractor "${e.pluginRef}" reads ${x.sourceKind} data, but "${s.pluginRef}" provides ${source.kind}`,
          `${where}.extractors[${j}]`,
        );
      }
      return x;
    });
    dataSources.push({ source, extractors });
  });
  if (dl?.injectDefaults !== false && !dataSources.some((b) => b.source.kind === 'metrics')) {
    const source = (order.find((p) => isDataSource(p) && p.kind === 'metrics') ??
      autoAdd('metrics-data-source', freeName('metrics-data-source'))) as DataSource;
    const extractors = order.filter((p): p is Extractor => isExtractor(p) && p.sourceKind === 'metrics');
    dataSources.push({
      source,
      extractors:
        extractors.length > 0
          ? extractors
          : [autoAdd('core-metrics-extractor', freeName('core-metrics-extractor')) as Extractor],
    });
  }
  let discovery: EndpointDiscovery | null = null;
  if (dl?.discovery) {
    const d = plugins.get(dl.discovery.pluginRef);
    if (d === undefined || !isEndpointDiscovery(d)) {
      throw new ConfigError(
        `dataLayer.discovery.pluginRef: "${dl.discovery.pluginRef}" is not an endpoint discovery plugin`,
        'dataLayer.discovery',
      );
    }
    discovery = d;
  }
  for (const ref of [doc.saturationDetector, doc.parser, ...(doc.requestHandler?.parsers ?? [])]) {
    if (ref && !plugins.has(ref.pluginRef)) {
      throw new ConfigError(`pluginRef "${ref.pluginRef}" names no plugin defined under plugins`, 'plugins');
    }
  }
  if (doc.saturationDetector) warn('saturationDetector is deprecated; use flowControl.saturationDetector');
  if (doc.parser) warn('parser is deprecated; use requestHandler.parsers');

  initAll();
  profileHandler.checkProfiles?.(profiles);

  const resolvedDoc: EndpointPickerConfigDoc = {
    ...doc,
    plugins: order.map((p) => ({ name: p.typedName.name, type: p.typedName.type })),
    schedulingProfiles: [...profiles.values()].map((p) => ({
      name: p.name,
      plugins: [
        ...p.filters.map((f) => ({ pluginRef: f.typedName.name })),
        ...p.scorers.map((s) => ({ pluginRef: s.scorer.typedName.name, weight: s.weight })),
        { pluginRef: p.picker.typedName.name },
      ],
    })),
  };
  return {
    plugins,
    profiles,
    profileHandler,
    producers,
    preRequest: order.filter(isPreRequest),
    responseReceived: order.filter(isResponseReceived),
    responseStreaming: order.filter(isResponseStreaming),
    responseComplete: order.filter(isResponseComplete),
    dataSources,
    discovery,
    featureGates,
    warnings,
    source: resolvedDoc,
    async close() {
      for (const p of order) {
        try {
          await p.close?.();
        } catch (err) {
          deps.logger.warn({ err, plugin: p.typedName.name }, 'plugin failed to close');
        }
      }
    },
  };
}

function createPlugin(make: () => Plugin, where: string, name: string, type: string): Plugin {
  try {
    return make();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${where}: plugin "${name}" (${type}): ${(err as Error).message}`, where);
  }
}

function parseFeatureGates(gates: readonly string[]): Map<string, boolean> {
  const out = new Map<string, boolean>(Object.entries(FEATURE_GATES));
  gates.forEach((g, i) => {
    const [name, value] = g.split('=', 2) as [string, string | undefined];
    if (!(name in FEATURE_GATES)) {
      throw new ConfigError(
        `featureGates[${i}]: unknown feature gate "${name}" (known: ${Object.keys(FEATURE_GATES).join(', ')})`,
        `featureGates[${i}]`,
      );
    }
    if (value !== undefined && value !== 'true' && value !== 'false') {
      throw new ConfigError(
        `featureGates[${i}]: "${g}" must be name, name=true or name=false`,
        `featureGates[${i}]`,
      );
    }
    out.set(name, value !== 'false');
  });
  return out;
}

/**
 * The producers every consumer needs, auto-adding upstream's default producer for a key nobody
 * produces, in an order where each producer runs after the producers of what it consumes.
 */
function resolveProducers(
  order: Plugin[],
  plugins: Map<string, Plugin>,
  autoAdd: (type: string, name: string, params?: unknown) => Plugin,
  freeName: (base: string) => string,
): DataProducer[] {
  const producedBy = (key: DataKey<unknown>): DataProducer | undefined =>
    order.find((p): p is DataProducer => isDataProducer(p) && p.produces.some((k) => k.name === key.name));
  for (let i = 0; i < order.length; i++) {
    const p = order[i]!;
    const consumed = [
      ...(isDataConsumer(p) ? p.consumes : []),
      ...(isDataProducer(p) ? (p.consumes ?? []) : []),
    ];
    for (const key of consumed) {
      if (producedBy(key) !== undefined) continue;
      if (key.defaultProducer === undefined) {
        throw new ConfigError(
          `plugin "${p.typedName.name}" (${p.typedName.type}) needs ${key.name}, which no configured plugin produces`,
          'plugins',
        );
      }
      const params = isDataConsumer(p) ? p.producerParams?.(key) : undefined;
      autoAdd(key.defaultProducer, freeName(key.defaultProducer), params ?? {});
    }
  }
  void plugins;
  const producers = order.filter(isDataProducer);
  // Kahn's algorithm over "consumes a key another producer produces".
  const deps = new Map<DataProducer, Set<DataProducer>>();
  for (const p of producers) {
    const d = new Set<DataProducer>();
    for (const key of p.consumes ?? []) {
      const q = producedBy(key);
      if (q !== undefined && q !== p) d.add(q);
    }
    deps.set(p, d);
  }
  const sorted: DataProducer[] = [];
  const done = new Set<DataProducer>();
  while (sorted.length < producers.length) {
    const ready = producers.find((p) => !done.has(p) && [...deps.get(p)!].every((q) => done.has(q)));
    if (ready === undefined) {
      const stuck = producers.filter((p) => !done.has(p)).map((p) => `"${p.typedName.name}"`);
      throw new ConfigError(
        `plugins: data producers depend on each other in a cycle: ${stuck.join(', ')}`,
        'plugins',
      );
    }
    done.add(ready);
    sorted.push(ready);
  }
  return sorted;
}

function suggest(type: string, known: string[]): string {
  const close = known.filter((k) => distance(k, type) <= 3).slice(0, 3);
  return close.length > 0 ? ` (did you mean ${close.map((c) => `"${c}"`).join(' or ')}?)` : '';
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}
