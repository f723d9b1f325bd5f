import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { parseConfigText } from '../../src/epp/config/loader.js';
import { kustomize, strategicMerge, type K8sObject } from '../helpers/kustomize.js';

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

// ---- schemas of the kinds the manifests use -------------------------------------------------------

const name = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
const labels = z.record(z.string().regex(/^([a-z0-9.-]+\/)?[A-Za-z0-9_.-]+$/), z.string());
const metadata = z.object({ name, namespace: name.optional(), labels: labels.optional() }).passthrough();
const port = z.number().int().min(1).max(65535);
const base = (apiVersion: string, kind: string) =>
  z.object({ apiVersion: z.literal(apiVersion), kind: z.literal(kind), metadata });

const probe = z
  .object({
    httpGet: z
      .object({ path: z.string().startsWith('/'), port })
      .strict()
      .optional(),
    tcpSocket: z.object({ port }).strict().optional(),
    grpc: z.object({ port, service: z.string().optional() }).strict().optional(),
    exec: z
      .object({ command: z.array(z.string()).min(1) })
      .strict()
      .optional(),
    initialDelaySeconds: z.number().int().min(0).optional(),
    periodSeconds: z.number().int().min(1).optional(),
    failureThreshold: z.number().int().min(1).optional(),
  })
  .strict()
  .refine((p) => [p.httpGet, p.tcpSocket, p.grpc, p.exec].filter(Boolean).length === 1, 'one handler');

const envVar = z
  .object({
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
    value: z.string().optional(),
    valueFrom: z
      .object({ fieldRef: z.object({ fieldPath: z.string() }).strict() })
      .strict()
      .optional(),
  })
  .strict()
  .refine((e) => (e.value === undefined) !== (e.valueFrom === undefined), 'value or valueFrom');

const container = z
  .object({
    name,
    image: z.string().min(1),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
    restartPolicy: z.literal('Always').optional(),
    command: z.array(z.string()).optional(),
    args: z.array(z.string()).optional(),
    env: z.array(envVar).optional(),
    ports: z
      .array(
        z
          .object({ name: z.string().max(15), containerPort: port, protocol: z.enum(['TCP', 'UDP']) })
          .strict(),
      )
      .optional(),
    startupProbe: probe.optional(),
    livenessProbe: probe.optional(),
    readinessProbe: probe.optional(),
    resources: z
      .object({ requests: z.record(z.string()).optional(), limits: z.record(z.string()).optional() })
      .strict()
      .optional(),
    volumeMounts: z
      .array(z.object({ name, mountPath: z.string(), readOnly: z.boolean().optional() }).strict())
      .optional(),
  })
  .strict();
type Container = z.infer<typeof container>;

const deployment = base('apps/v1', 'Deployment').extend({
  spec: z
    .object({
      replicas: z.number().int().min(1),
      selector: z.object({ matchLabels: labels }).strict(),
      template: z.object({
        metadata: z.object({ labels }).strict(),
        spec: z
          .object({
            serviceAccountName: name.optional(),
            terminationGracePeriodSeconds: z.number().int().optional(),
            initContainers: z.array(container).optional(),
            containers: z.array(container).min(1),
            volumes: z.array(z.object({ name, configMap: z.object({ name }).strict() }).strict()).optional(),
          })
          .strict(),
      }),
    })
    .strict(),
});
type Deployment = z.infer<typeof deployment>;

const service = base('v1', 'Service').extend({
  spec: z
    .object({
      type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer']).optional(),
      selector: labels,
      ports: z
        .array(
          z
            .object({
              name: z.string().max(15),
              port,
              targetPort: z.union([port, z.string()]),
              protocol: z.literal('TCP'),
              appProtocol: z.string().optional(),
            })
            .strict(),
        )
        .min(1),
    })
    .strict(),
});
type Service = z.infer<typeof service>;

const inferencePool = base('inference.networking.k8s.io/v1', 'InferencePool').extend({
  spec: z
    .object({
      selector: z.object({ matchLabels: labels }).strict(),
      targetPorts: z
        .array(z.object({ number: port }).strict())
        .min(1)
        .max(8),
      appProtocol: z.enum(['http', 'kubernetes.io/h2c']).optional(),
      endpointPickerRef: z
        .object({
          group: z.literal('').optional(),
          kind: z.literal('Service'),
          name,
          port: z.object({ number: port }).strict(),
          failureMode: z.enum(['FailOpen', 'FailClose']).optional(),
        })
        .strict(),
    })
    .strict(),
});
type InferencePool = z.infer<typeof inferencePool>;

const gateway = base('gateway.networking.k8s.io/v1', 'Gateway').extend({
  spec: z
    .object({
      gatewayClassName: z.string().min(1),
      listeners: z
        .array(
          z.object({ name, port, protocol: z.enum(['HTTP', 'HTTPS']), allowedRoutes: z.unknown() }).strict(),
        )
        .min(1),
    })
    .strict(),
});

const httpRoute = base('gateway.networking.k8s.io/v1', 'HTTPRoute').extend({
  spec: z
    .object({
      parentRefs: z
        .array(z.object({ group: z.string().optional(), kind: z.literal('Gateway'), name }).strict())
        .min(1),
      rules: z
        .array(
          z
            .object({
              matches: z.array(z.object({ path: z.object({ type: z.string(), value: z.string() }) })),
              backendRefs: z
                .array(
                  z
                    .object({
                      group: z.literal('inference.networking.k8s.io'),
                      kind: z.literal('InferencePool'),
                      name,
                      port: port.optional(),
                      weight: z.number().int().optional(),
                    })
                    .strict(),
                )
                .min(1),
              timeouts: z.object({ backendRequest: z.string(), request: z.string() }).strict().optional(),
            })
            .strict(),
        )
        .min(1),
    })
    .strict(),
});

const policyRule = z
  .object({ apiGroups: z.array(z.string()), resources: z.array(z.string()), verbs: z.array(z.string()) })
  .strict();
const SCHEMAS: Record<string, z.ZodTypeAny> = {
  Namespace: base('v1', 'Namespace'),
  ServiceAccount: base('v1', 'ServiceAccount'),
  ConfigMap: base('v1', 'ConfigMap').extend({ data: z.record(z.string()) }),
  Role: base('rbac.authorization.k8s.io/v1', 'Role').extend({ rules: z.array(policyRule).min(1) }),
  RoleBinding: base('rbac.authorization.k8s.io/v1', 'RoleBinding').extend({
    roleRef: z.object({ apiGroup: z.string(), kind: z.literal('Role'), name }).strict(),
    subjects: z.array(z.object({ kind: z.literal('ServiceAccount'), name, namespace: name }).strict()).min(1),
  }),
  Deployment: deployment,
  Service: service,
  InferencePool: inferencePool,
  Gateway: gateway,
  HTTPRoute: httpRoute,
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
const isLlmd = (c: Container) => c.image.startsWith('llmd');
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

  it('renders objects that match the schemas of their kinds', () => {
    expect(objs().length).toBeGreaterThan(0);
    for (const o of objs()) {
      const schema = SCHEMAS[o.kind];
      expect(schema, `no schema for ${o.kind}`).toBeDefined();
      const r = schema!.safeParse(o);
      expect(
        r.success,
        `${o.kind}/${o.metadata?.name}: ${r.success ? '' : JSON.stringify(r.error.issues)}`,
      ).toBe(true);
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
          if (target !== undefined)
            expect(ports.has(target), `${d.metadata.name}/${c.name} probe ${target}`).toBe(true);
        }
      }
      for (const v of d.spec.template.spec.volumes ?? []) one(objs(), 'ConfigMap', v.configMap.name);
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
    const routes = find<z.infer<typeof httpRoute>>(objs(), 'HTTPRoute');
    expect(routes).toHaveLength(1);
    const route = routes[0]!;
    for (const p of route.spec.parentRefs) one(objs(), 'Gateway', p.name);
    const refs = route.spec.rules.flatMap((r) => r.backendRefs);
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
      const epp = one<Service>(objs(), 'Service', pool.spec.endpointPickerRef.name);
      const eppPorts = epp.spec.ports.map((p) => p.port);
      expect(eppPorts).toContain(pool.spec.endpointPickerRef.port.number);
      for (const p of [9002, 9003, 9090]) expect(eppPorts).toContain(p);
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
    const cm = one<{ data: Record<string, string> }>(objs(), 'ConfigMap', volume.configMap.name);
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
      expect(c.env?.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef.fieldPath).toBe('status.podIP');
    }
  });
});

describe('the image', () => {
  it('is built from node:20-slim in stages and runs llmd', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f).toMatch(/^node:20-slim\b/);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["llmd"\]/m);
    expect(existsSync(join(ROOT, '.dockerignore'))).toBe(true);
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
