import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IHTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IService } from 'kubernetes-models/v1/Service';
import { parse } from 'yaml';
import { parseConfigText } from '../../src/epp/config/loader.js';
import { kustomize, strategicMerge, type K8sObject } from '../helpers/kustomize.js';
import { problems, type InferencePool } from './schemas.js';

type Container = IContainer;
/** A rendered Deployment, once validated: the fields every one of ours sets. */
type Deployment = IDeployment & {
  metadata: { name: string };
  spec: NonNullable<IDeployment['spec']> & {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: NonNullable<IDeployment['spec']>['template']['spec'] & object;
    };
  };
};
type Service = IService & {
  metadata: { name: string };
  spec: { selector: Record<string, string>; ports: NonNullable<NonNullable<IService['spec']>['ports']> };
};
type HttpRoute = IHTTPRoute & {
  spec: {
    parentRefs: NonNullable<IHTTPRoute['spec']['parentRefs']>;
    rules: NonNullable<IHTTPRoute['spec']['rules']>;
  };
};

const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const CLI = join(ROOT, 'dist', 'cli.js');
const COMMANDS = ['serve', 'epp', 'sidecar', 'kv-indexer'] as const;

const OVERLAYS: Record<
  string,
  { example: string | null; prefill: boolean; kvEvents: boolean; redis: boolean }
> = {
  'inference-scheduling': { example: 'approx-prefix.yaml', prefill: false, kvEvents: false, redis: false },
  'pd-disaggregation': { example: 'pd-approx-prefix.yaml', prefill: true, kvEvents: false, redis: false },
  'precise-prefix-cache': { example: 'precise-prefix.yaml', prefill: false, kvEvents: true, redis: false },
  'precise-prefix-cache-ha': { example: null, prefill: false, kvEvents: true, redis: true },
};

// ---- helpers ----------------------------------------------------------------------------------------

const find = <T>(objs: K8sObject[], kind: string, n?: string): T[] =>
  objs.filter((o) => o.kind === kind && (n === undefined || o.metadata.name === n)) as unknown as T[];
const one = <T>(objs: K8sObject[], kind: string, n: string): T => {
  const found = find<T>(objs, kind, n);
  expect(found, `${kind}/${n}`).toHaveLength(1);
  return found[0]!;
};
const matches = (selector: Record<string, string>, l: Record<string, string> | undefined): boolean =>
  Object.entries(selector).every(([k, v]) => l?.[k] === v);
const allContainers = (d: Deployment): Container[] => [
  ...(d.spec.template.spec.initContainers ?? []),
  ...d.spec.template.spec.containers,
];
const isLlmd = (c: Container) => c.image?.startsWith('llmd') === true;
/** `--name=value` arguments as a map (the manifests spell every flag so). */
const flags = (args: string[]): Map<string, string> =>
  new Map(
    args
      .filter((a) => a.startsWith('--'))
      .map((a) => {
        const i = a.indexOf('=');
        return i < 0 ? [a, ''] : [a.slice(0, i), a.slice(i + 1)];
      }),
  );

/** Every --flag a command's help lists (commander's and the sidecar's own layout). */
function helpFlags(help: string): Set<string> {
  const out = new Set<string>();
  for (const line of help.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('-')) continue;
    const head = t.split(/\s{2,}/)[0]!;
    for (const m of head.matchAll(/--[a-zA-Z0-9][\w-]*/g)) out.add(m[0]);
  }
  return out;
}

const help = new Map<string, Set<string>>();
const rendered = new Map<string, K8sObject[]>();

beforeAll(async () => {
  const run = promisify(execFile);
  await Promise.all(
    COMMANDS.map(async (cmd) => {
      const { stdout } = await run(process.execPath, [CLI, cmd, '--help']);
      help.set(cmd, helpFlags(stdout));
    }),
  );
  for (const o of Object.keys(OVERLAYS)) rendered.set(o, kustomize(join(DEPLOY, 'overlays', o)));
});

describe('the kustomize renderer', () => {
  it('merges lists by their Kubernetes merge key and replaces the others', () => {
    const merged = strategicMerge(
      {
        containers: [
          { name: 'a', args: ['x', 'y'], ports: [{ containerPort: 1 }] },
          { name: 'b', args: ['z'] },
        ],
      },
      { containers: [{ name: 'a', args: ['w'], ports: [{ containerPort: 2 }] }, { name: 'c' }] },
    );
    expect(merged).toEqual({
      containers: [
        { name: 'a', args: ['w'], ports: [{ containerPort: 1 }, { containerPort: 2 }] },
        { name: 'b', args: ['z'] },
        { name: 'c' },
      ],
    });
  });
});

describe.each(Object.entries(OVERLAYS))('overlay %s', (overlay, expected) => {
  const objs = () => rendered.get(overlay)!;

  it('renders objects that the Kubernetes, Gateway API and InferencePool schemas accept', () => {
    expect(objs().length).toBeGreaterThan(0);
    for (const o of objs()) {
      expect(problems(o), `${o.apiVersion} ${o.kind}/${o.metadata?.name}`).toEqual([]);
      if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('llmd');
    }
    expect(find(objs(), 'Namespace', 'llmd')).toHaveLength(1);
  });

  it('has Deployments whose selectors match their pod labels and whose probes hit declared ports', () => {
    for (const d of find<Deployment>(objs(), 'Deployment')) {
      expect(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels), d.metadata.name).toBe(
        true,
      );
      for (const c of allContainers(d)) {
        const ports = new Set((c.ports ?? []).map((p) => p.containerPort));
        expect(new Set((c.ports ?? []).map((p) => p.name)).size).toBe(ports.size);
        for (const p of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
          const target = p?.httpGet?.port ?? p?.tcpSocket?.port ?? p?.grpc?.port;
          // The manifests name probe ports by number.
          if (target !== undefined)
            expect(ports.has(Number(target)), `${d.metadata.name}/${c.name} probe ${target}`).toBe(true);
        }
      }
      for (const v of d.spec.template.spec.volumes ?? []) one(objs(), 'ConfigMap', v.configMap!.name!);
      const sa = d.spec.template.spec.serviceAccountName;
      if (sa !== undefined) one(objs(), 'ServiceAccount', sa);
    }
  });

  it('has Services that select pods exposing their target ports', () => {
    for (const s of find<Service>(objs(), 'Service')) {
      const pods = find<Deployment>(objs(), 'Deployment').filter((d) =>
        matches(s.spec.selector, d.spec.template.metadata.labels),
      );
      expect(pods.length, `pods of Service ${s.metadata.name}`).toBeGreaterThan(0);
      for (const p of s.spec.ports) {
        for (const d of pods) {
          const declared = allContainers(d).flatMap((c) => c.ports ?? []);
          expect(
            declared.some((c) => c.containerPort === p.targetPort || c.name === p.targetPort),
            `${s.metadata.name}:${p.port}`,
          ).toBe(true);
        }
      }
    }
  });

  it('routes the Gateway to an InferencePool whose pods and endpoint picker exist', () => {
    const routes = find<HttpRoute>(objs(), 'HTTPRoute');
    expect(routes).toHaveLength(1);
    const route = routes[0]!;
    for (const p of route.spec.parentRefs) one(objs(), 'Gateway', p.name);
    const refs = route.spec.rules.flatMap((r) => r.backendRefs ?? []);
    for (const ref of refs) {
      const pool = one<InferencePool>(objs(), 'InferencePool', ref.name);
      if (ref.port !== undefined) expect(pool.spec.targetPorts.map((t) => t.number)).toContain(ref.port);
      const pods = find<Deployment>(objs(), 'Deployment').filter((d) =>
        matches(pool.spec.selector.matchLabels, d.spec.template.metadata.labels),
      );
      expect(pods.map((d) => d.spec.template.metadata.labels['llm-d.ai/role']).sort()).toEqual(
        expected.prefill ? ['decode', 'prefill'] : ['decode'],
      );
      for (const d of pods) {
        expect(d.spec.template.metadata.labels['llm-d.ai/inference-serving']).toBe('true');
        const declared = allContainers(d).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
        for (const t of pool.spec.targetPorts) expect(declared, d.metadata.name).toContain(t.number);
      }
      const picker = pool.spec.endpointPickerRef!;
      const epp = one<Service>(objs(), 'Service', picker.name);
      const eppPorts = epp.spec.ports.map((p) => p.port);
      expect(eppPorts).toContain(picker.port!.number);
      for (const p of [9002, 9003, 9090]) expect(eppPorts).toContain(p);
      // Istio dials ext_proc over TLS (the EPP's default), not verifying its self-signed certificate.
      const rule = one<K8sObject & { spec: { host: string; trafficPolicy: { tls: { mode: string } } } }>(
        objs(),
        'DestinationRule',
        'llmd-epp',
      );
      expect(rule.spec.host).toBe(epp.metadata.name);
      expect(rule.spec.trafficPolicy.tls.mode).toBe('SIMPLE');
      const eppPod = one<Deployment>(objs(), 'Deployment', 'llmd-epp').spec.template.spec.containers[0]!;
      expect(eppPod.args).not.toContain('--secure-serving=false');
    }
  });

  it('runs decode pods with the routing sidecar as a native sidecar in front of the model server', () => {
    const decode = one<Deployment>(objs(), 'Deployment', 'llmd-decode');
    const pool = find<InferencePool>(objs(), 'InferencePool')[0]!;
    const [sidecar] = decode.spec.template.spec.initContainers ?? [];
    expect(sidecar?.restartPolicy).toBe('Always');
    expect(sidecar?.args?.[0]).toBe('sidecar');
    const sf = flags(sidecar!.args!);
    expect(pool.spec.targetPorts.map((t) => String(t.number))).toContain(sf.get('--port'));
    const server = decode.spec.template.spec.containers.find((c) => c.args?.[0] === 'serve')!;
    expect(flags(server.args!).get('--port')).toBe(sf.get('--vllm-port'));
    expect(server.ports?.map((p) => String(p.containerPort))).toContain(sf.get('--vllm-port'));
    for (const c of [
      server,
      ...find<Deployment>(objs(), 'Deployment', 'llmd-prefill').flatMap(allContainers),
    ]) {
      expect(c.livenessProbe?.httpGet?.path).toBe('/health');
      expect(c.readinessProbe?.httpGet?.path).toBe('/v1/models');
      expect(c.startupProbe?.httpGet?.path).toBe('/v1/models');
    }
    const epp = one<Deployment>(objs(), 'Deployment', 'llmd-epp').spec.template.spec.containers[0]!;
    expect(epp.livenessProbe?.grpc?.port).toBe(9003);
    expect(epp.readinessProbe?.grpc?.port).toBe(9003);
  });

  it('passes only flags that exist in the llmd CLI, with valid JSON values', () => {
    for (const d of find<Deployment>(objs(), 'Deployment')) {
      for (const c of allContainers(d).filter(isLlmd)) {
        const [cmd, ...rest] = c.args ?? [];
        expect(COMMANDS as readonly string[], `${d.metadata.name}/${c.name}`).toContain(cmd);
        const known = help.get(cmd!)!;
        for (const [flag, value] of flags(rest)) {
          expect(known.has(flag), `llmd ${cmd} ${flag} (${d.metadata.name}/${c.name})`).toBe(true);
          if (flag.endsWith('-config') && flag !== '--config-file')
            expect(() => JSON.parse(value)).not.toThrow();
        }
      }
    }
  });

  it('gives the EPP a valid EndpointPickerConfig', () => {
    const epp = one<Deployment>(objs(), 'Deployment', 'llmd-epp');
    const c = epp.spec.template.spec.containers[0]!;
    const file = flags(c.args!).get('--config-file')!;
    const mount = c.volumeMounts!.find((m) => file.startsWith(`${m.mountPath}/`))!;
    const volume = epp.spec.template.spec.volumes!.find((v) => v.name === mount.name)!;
    const cm = one<{ data: Record<string, string> }>(objs(), 'ConfigMap', volume.configMap!.name!);
    const text = cm.data[file.slice(mount.mountPath.length + 1)];
    expect(text).toBeDefined();
    const doc = parseConfigText(text);
    if (expected.example !== null) {
      expect(doc).toEqual(parseConfigText(readFileSync(join(DEPLOY, 'examples', expected.example), 'utf8')));
    }
    const precise = doc.plugins.find((p) => p.type === 'precise-prefix-cache-producer');
    expect(precise !== undefined).toBe(expected.kvEvents);
    const index = (
      precise?.parameters as { indexerConfig?: { kvBlockIndexConfig?: Record<string, unknown> } }
    )?.indexerConfig?.kvBlockIndexConfig;
    expect(index?.redisConfig !== undefined).toBe(expected.redis);
    if (expected.redis) {
      const addr = new URL((index!.redisConfig as { address: string }).address);
      const redis = one<Service>(objs(), 'Service', addr.hostname);
      expect(redis.spec.ports.map((p) => p.port)).toContain(Number(addr.port));
      expect(epp.spec.replicas).toBeGreaterThan(1);
    }
  });

  it('wires the model servers’ KV events to the EPP’s ZMQ endpoint', () => {
    const servers = find<Deployment>(objs(), 'Deployment')
      .filter((d) => d.spec.template.metadata.labels['llm-d.ai/inference-serving'] === 'true')
      .flatMap((d) => d.spec.template.spec.containers.map((c) => ({ d, c })))
      .filter(({ c }) => c.args?.[0] === 'serve');
    const configs = servers.map(({ c }) => flags(c.args!).get('--kv-events-config'));
    if (!expected.kvEvents) {
      expect(configs.every((x) => x === undefined)).toBe(true);
      return;
    }
    const pool = find<InferencePool>(objs(), 'InferencePool')[0]!;
    const eppSvc = one<Service>(objs(), 'Service', 'llmd-epp');
    const eppContainer = one<Deployment>(objs(), 'Deployment', 'llmd-epp').spec.template.spec.containers[0]!;
    for (const [i, { d, c }] of servers.entries()) {
      expect(configs[i], d.metadata.name).toBeDefined();
      const cfg = JSON.parse(configs[i]!) as {
        enable_kv_cache_events: boolean;
        endpoint: string;
        topic: string;
      };
      expect(cfg.enable_kv_cache_events).toBe(true);
      const ep = /^tcp:\/\/([a-z0-9-]+):(\d+)$/.exec(cfg.endpoint);
      expect(ep, cfg.endpoint).not.toBeNull();
      expect(ep![1]).toBe(eppSvc.metadata.name);
      expect(eppSvc.spec.ports.map((p) => p.port)).toContain(Number(ep![2]));
      expect(eppContainer.ports!.map((p) => p.containerPort)).toContain(Number(ep![2]));
      const topic = /^kv@\$\(POD_IP\):(\d+)@(.+)$/.exec(cfg.topic);
      expect(topic, cfg.topic).not.toBeNull();
      expect(pool.spec.targetPorts.map((t) => t.number)).toContain(Number(topic![1]));
      expect(flags(c.args!).get('--served-model-name')).toBe(topic![2]);
      expect(c.env?.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath).toBe('status.podIP');
    }
  });
});

describe('the image', () => {
  it('is built from node:20-slim in stages, ships the .proto files and runs llmd', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f).toMatch(/^node:20-slim\b/);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["llmd"\]/m);
    expect(existsSync(join(ROOT, '.dockerignore'))).toBe(true);
    // The build stage has what `npm run build` needs to put the .proto files into dist/.
    const build = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { build: string } }
    ).scripts.build;
    expect(build).toMatch(/&& node scripts\/copy-assets\.mjs$/);
    const copyScript = dockerfile.indexOf('COPY scripts/copy-assets.mjs ');
    expect(copyScript).toBeGreaterThan(0);
    expect(copyScript).toBeLessThan(dockerfile.indexOf('RUN npm run build'));
    expect(dockerfile).toMatch(/^COPY src \.\/src$/m);
    expect(dockerfile).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    expect(ignored).toContain('!scripts/copy-assets.mjs');
    expect(ignored.indexOf('!scripts/copy-assets.mjs')).toBeGreaterThan(ignored.indexOf('scripts/*'));
    expect(ignored.filter((l) => l === 'src' || l.startsWith('src/') || l.includes('proto'))).toEqual([]);
    // Every image the manifests run llmd from is the one image.
    const images = new Set(
      [...rendered.values()]
        .flat()
        .filter((o) => o.kind === 'Deployment')
        .flatMap((o) => allContainers(o as unknown as Deployment))
        .filter(isLlmd)
        .map((c) => c.image),
    );
    expect([...images]).toEqual(['llmd:latest']);
  });
});

// The YAML files parse on their own too (kubectl apply -k reads each one).
it('every YAML file under deploy/ parses', async () => {
  const { readdirSync } = await import('node:fs');
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.yaml') ? [join(dir, e.name)] : [],
    );
  for (const f of walk(DEPLOY)) {
    const text = readFileSync(f, 'utf8');
    for (const doc of text.split(/^---$/m)) expect(() => parse(doc), f).not.toThrow();
  }
});
