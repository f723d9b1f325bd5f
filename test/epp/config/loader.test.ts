/**
 * The loader's wiring, with small test plugins: defaults, validation and the error messages. The
 * in-tree catalog is exercised in catalog.test.ts.
 */
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/log.js';
import { Rng } from '../../../src/core/rng.js';
import { loadEppConfig, type LoaderDeps } from '../../../src/epp/config/loader.js';
import { DataKey } from '../../../src/epp/framework/cycle-state.js';
import { definePlugin, type Plugin } from '../../../src/epp/framework/plugin.js';
import { PluginRegistry } from '../../../src/epp/framework/registry.js';
import * as single from '../../../src/epp/plugins/profile/single.js';
import * as disagg from '../../../src/epp/plugins/profile/disagg.js';
import { testHandle } from '../helpers.js';

const A = new DataKey<number>('A', 'a-producer');
const B = new DataKey<number>('B', 'b-producer');
const ORPHAN = new DataKey<number>('Orphan');

const tn = (type: string, name: string) => ({ type, name });
const filterDef = definePlugin({
  type: 'test-filter',
  aliases: ['old-test-filter'],
  params: z.object({ keep: z.number().int().default(1) }).strict(),
  create: (name) =>
    ({ typedName: tn('test-filter', name), filter: (_r: unknown, e: readonly unknown[]) => e }) as Plugin,
});
const scorerDef = definePlugin({
  type: 'test-scorer',
  params: z.object({ needs: z.enum(['A', 'orphan']).optional(), depth: z.number().optional() }).strict(),
  create: (name, p) =>
    ({
      typedName: tn('test-scorer', name),
      category: 'distribution',
      score: () => undefined,
      consumes: p.needs === 'A' ? [A] : p.needs === 'orphan' ? [ORPHAN] : [],
      producerParams: () => (p.depth !== undefined ? { depth: p.depth } : undefined),
    }) as Plugin,
});
const pickerDef = definePlugin({
  type: 'max-score-picker',
  params: z.object({}).strict(),
  create: (name) => ({ typedName: tn('max-score-picker', name), pick: () => [] }) as Plugin,
});
const otherPicker = definePlugin({
  type: 'random-picker',
  params: z.object({}).strict(),
  create: (name) => ({ typedName: tn('random-picker', name), pick: () => [] }) as Plugin,
});
const aProducer = definePlugin({
  type: 'a-producer',
  params: z.object({ depth: z.number().default(0) }).strict(),
  create: (name, p) =>
    ({
      typedName: tn('a-producer', name),
      produces: [A],
      consumes: [B],
      produce: () => undefined,
      depth: p.depth,
    }) as Plugin,
});
const bProducer = definePlugin({
  type: 'b-producer',
  params: z.object({}).strict(),
  create: (name) =>
    ({ typedName: tn('b-producer', name), produces: [B], produce: () => undefined }) as Plugin,
});
const cProducer = definePlugin({
  type: 'c-producer',
  params: z.object({}).strict(),
  create: (name) =>
    ({ typedName: tn('c-producer', name), produces: [B], consumes: [A], produce: () => undefined }) as Plugin,
});
const alpha = definePlugin({
  type: 'shiny-scorer',
  stability: 'alpha',
  params: z.object({}).strict(),
  create: (name) =>
    ({ typedName: tn('shiny-scorer', name), category: 'balance', score: () => undefined }) as Plugin,
});
const source = definePlugin({
  type: 'metrics-data-source',
  params: z.object({}).strict(),
  create: (name) =>
    ({
      typedName: tn('metrics-data-source', name),
      kind: 'metrics',
      intervalMs: 50,
      poll: async () => true,
    }) as Plugin,
});
const extractor = definePlugin({
  type: 'core-metrics-extractor',
  params: z.object({}).strict(),
  create: (name) => ({ typedName: tn('core-metrics-extractor', name), sourceKind: 'metrics' }) as Plugin,
});
const decider = definePlugin({
  type: 'test-decider',
  params: z.object({}).strict(),
  create: (name) =>
    ({ typedName: tn('test-decider', name), disaggregate: () => ({ yes: true, reason: '' }) }) as Plugin,
});

function deps(allowExperimental = false): LoaderDeps {
  const registry = new PluginRegistry();
  for (const d of [
    filterDef,
    scorerDef,
    pickerDef,
    otherPicker,
    aProducer,
    bProducer,
    cProducer,
    alpha,
    source,
    extractor,
    decider,
    single.definition,
    disagg.definition,
  ]) {
    registry.register(d);
  }
  return {
    registry,
    logger: silentLogger(),
    rng: new Rng(1),
    clock: () => 0,
    endpoints: testHandle().endpoints,
    allowExperimental,
  };
}

const HEAD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const load = (body: string, d = deps()) => loadEppConfig(HEAD + body, d);
const fails = (body: string, message: RegExp, d = deps()) => {
  expect(() => load(body, d)).toThrow(ConfigError);
  expect(() => load(body, d)).toThrow(message);
};

describe('EndpointPickerConfig loader', () => {
  it('builds a default profile over every filter, scorer and picker, with a single-profile handler', () => {
    const cfg = load(
      'plugins:\n- type: test-filter\n- type: test-scorer\n  name: s1\n- type: test-scorer\n  name: s2\n',
    );
    const p = cfg.profiles.get('default')!;
    expect(p.filters.map((f) => f.typedName.name)).toEqual(['test-filter']);
    expect(p.scorers.map((s) => [s.scorer.typedName.name, s.weight])).toEqual([
      ['s1', 1],
      ['s2', 1],
    ]);
    expect(p.picker.typedName.type).toBe('max-score-picker');
    expect(cfg.profileHandler.typedName.type).toBe('single-profile-handler');
  });

  it('gives a profile without a picker the first configured one', () => {
    const cfg = load(
      'plugins:\n- type: test-scorer\n- type: random-picker\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: test-scorer\n    weight: 2.5\n',
    );
    const p = cfg.profiles.get('p')!;
    expect(p.picker.typedName.type).toBe('random-picker');
    expect(p.scorers[0]!.weight).toBe(2.5);
  });

  it('maps a legacy weight parameter onto the profile weight', () => {
    const cfg = load('plugins:\n- type: test-scorer\n  parameters:\n    weight: 0.5\n');
    expect(cfg.profiles.get('default')!.scorers[0]!.weight).toBe(0.5);
    expect(cfg.warnings.join('\n')).toMatch(/"weight" of plugin "test-scorer" is deprecated/);
    fails('plugins:\n- type: test-filter\n  parameters:\n    weight: 2\n', /applies to scorers only/);
  });

  it('adds the producers consumers need, with their parameters, in dependency order', () => {
    const cfg = load('plugins:\n- type: test-scorer\n  parameters:\n    needs: A\n    depth: 3\n');
    expect(cfg.producers.map((p) => p.typedName.type)).toEqual(['b-producer', 'a-producer']);
    expect((cfg.plugins.get('a-producer') as unknown as { depth: number }).depth).toBe(3);
    fails(
      'plugins:\n- type: test-scorer\n  parameters:\n    needs: orphan\n',
      /needs Orphan, which no configured plugin produces/,
    );
  });

  it('uses a configured producer instead of adding one', () => {
    const cfg = load(
      'plugins:\n- type: a-producer\n  name: mine\n  parameters:\n    depth: 9\n- type: test-scorer\n  parameters:\n    needs: A\n',
    );
    expect(cfg.producers.map((p) => p.typedName.name)).toEqual(['b-producer', 'mine']);
  });

  it('injects the default metrics source unless told not to', () => {
    const cfg = load('plugins:\n- type: test-scorer\n');
    expect(
      cfg.dataSources.map((b) => [b.source.typedName.type, b.extractors.map((x) => x.typedName.type)]),
    ).toEqual([['metrics-data-source', ['core-metrics-extractor']]]);
    expect(load('plugins:\n- type: test-scorer\ndataLayer:\n  injectDefaults: false\n').dataSources).toEqual(
      [],
    );
  });

  it('accepts the deprecated apiVersion and type aliases with a warning', () => {
    const cfg = loadEppConfig(
      'apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: old-test-filter\n',
      deps(),
    );
    expect(cfg.plugins.get('old-test-filter')!.typedName.type).toBe('test-filter');
    expect(cfg.warnings.some((w) => w.includes('apiVersion'))).toBe(true);
    expect(cfg.warnings.some((w) => w.includes('"old-test-filter" is deprecated'))).toBe(true);
  });

  it('reads JSON as well as YAML', () => {
    const cfg = loadEppConfig(
      JSON.stringify({
        apiVersion: 'llm-d.ai/v1alpha1',
        kind: 'EndpointPickerConfig',
        plugins: [{ type: 'test-scorer' }],
      }),
      deps(),
    );
    expect(cfg.profiles.size).toBe(1);
  });

  it('wires a disagg handler over two profiles', () => {
    const cfg = load(
      [
        'plugins:',
        '- type: test-filter',
        '  name: decode-filter',
        '- type: test-filter',
        '  name: prefill-filter',
        '- type: max-score-picker',
        '- type: test-decider',
        '- type: disagg-profile-handler',
        '  parameters:',
        '    deciders:',
        '      prefill: test-decider',
        'schedulingProfiles:',
        '- name: prefill',
        '  plugins: [{pluginRef: prefill-filter}, {pluginRef: max-score-picker}]',
        '- name: decode',
        '  plugins: [{pluginRef: decode-filter}, {pluginRef: max-score-picker}]',
        '',
      ].join('\n'),
    );
    expect(cfg.profileHandler.typedName.type).toBe('disagg-profile-handler');
    expect(cfg.preRequest.map((p) => p.typedName.type)).toContain('disagg-profile-handler');
  });

  describe('rejects, naming the field', () => {
    const cases: [string, string, RegExp][] = [
      ['unknown top-level field', 'plugin:\n- type: test-scorer\n', /unknown field "plugin"/],
      [
        'unknown plugin type',
        'plugins:\n- type: test-scorr\n',
        /plugins\[0\]: unknown plugin type "test-scorr" \(did you mean "test-scorer"\?\)/,
      ],
      [
        'unknown parameter',
        'plugins:\n- type: test-filter\n  parameters:\n    kep: 2\n',
        /plugins\[0\]: plugin "test-filter" \(test-filter\): parameters: unknown field "kep"/,
      ],
      [
        'wrong parameter type',
        'plugins:\n- type: test-filter\n  parameters:\n    keep: two\n',
        /parameters\.keep: Expected number/,
      ],
      [
        'parameters not a mapping',
        'plugins:\n- type: test-filter\n  parameters: [1]\n',
        /parameters of plugin "test-filter" \(test-filter\) must be a mapping/,
      ],
      [
        'duplicate plugin names',
        'plugins:\n- type: test-filter\n- type: test-filter\n',
        /plugins\[1\]: duplicate plugin name "test-filter"/,
      ],
      [
        'missing plugin reference',
        'plugins:\n- type: test-filter\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: nope\n',
        /schedulingProfiles\[0\]\.plugins\[0\]: pluginRef "nope" names no plugin/,
      ],
      [
        'weight on a non-scorer',
        'plugins:\n- type: test-filter\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: test-filter\n    weight: 2\n',
        /weight: plugin "test-filter" \(test-filter\) is not a scorer/,
      ],
      [
        'negative weight',
        'plugins:\n- type: test-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: test-scorer\n    weight: -1\n',
        /weight: must not be negative/,
      ],
      [
        'two pickers in a profile',
        'plugins:\n- type: max-score-picker\n- type: random-picker\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: max-score-picker\n  - pluginRef: random-picker\n',
        /has two pickers/,
      ],
      [
        'duplicate profiles',
        'plugins:\n- type: test-scorer\nschedulingProfiles:\n- name: p\n- name: p\n',
        /duplicate profile name "p"/,
      ],
      [
        'two profiles without a handler',
        'plugins:\n- type: test-scorer\nschedulingProfiles:\n- name: a\n- name: b\n',
        /2 scheduling profiles need a profile handler/,
      ],
      [
        'single handler with two profiles',
        'plugins:\n- type: single-profile-handler\nschedulingProfiles:\n- name: a\n- name: b\n',
        /needs exactly one scheduling profile, found 2/,
      ],
      [
        'two handlers',
        'plugins:\n- type: single-profile-handler\n  name: h1\n- type: single-profile-handler\n  name: h2\n',
        /exactly one profile handler is allowed/,
      ],
      [
        'a producer cycle',
        'plugins:\n- type: a-producer\n- type: c-producer\n',
        /data producers depend on each other in a cycle: "a-producer", "c-producer"/,
      ],
      [
        'unknown feature gate',
        'featureGates: [warpDrive]\nplugins:\n- type: test-scorer\n',
        /featureGates\[0\]: unknown feature gate "warpDrive"/,
      ],
      ['flow control', 'featureGates: [flowControl]\n', /flowControl is not supported/],
      [
        'bad data source ref',
        'plugins:\n- type: test-scorer\ndataLayer:\n  sources:\n  - pluginRef: test-scorer\n',
        /dataLayer\.sources\[0\]\.pluginRef: "test-scorer" is not a data source/,
      ],
      [
        'bad discovery ref',
        'plugins:\n- type: test-scorer\ndataLayer:\n  discovery:\n    pluginRef: test-scorer\n',
        /dataLayer\.discovery\.pluginRef: "test-scorer" is not an endpoint discovery plugin/,
      ],
      [
        'experimental plugin without the flag',
        'plugins:\n- type: shiny-scorer\n',
        /experimental; start with --allow-experimental-plugins/,
      ],
    ];
    for (const [what, body, message] of cases) {
      it(what, () => fails(body, message));
    }
    it('an envelope that is not a config', () => {
      expect(() => loadEppConfig('apiVersion: v1\nkind: Pod\n', deps())).toThrow(
        /apiVersion: Invalid enum value/,
      );
      expect(() => loadEppConfig('- a\n- b\n', deps())).toThrow(/must be a mapping/);
      expect(() => loadEppConfig('a: [', deps())).toThrow(/not valid YAML or JSON/);
      expect(() => loadEppConfig(HEAD + 'plugins:\n- type: a\n  type: b\n', deps())).toThrow(ConfigError);
    });
    it('allows experimental plugins with the flag', () => {
      expect(load('plugins:\n- type: shiny-scorer\n', deps(true)).plugins.has('shiny-scorer')).toBe(true);
    });
  });
});
