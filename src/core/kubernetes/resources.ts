/**
 * The two kinds the watches read — core/v1 Pod and the InferencePool in both API groups — reduced to
 * the fields llmd uses, validated with zod at the edge. Everything else in the objects is ignored.
 *
 * InferencePool shapes:
 *   inference.networking.k8s.io/v1:        spec.selector.matchLabels, spec.targetPorts[].number (1–8)
 *   inference.networking.x-k8s.io/v1alpha2: spec.selector (a flat map), spec.targetPortNumber
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { ParseResult } from './informer.js';

export const DEFAULT_POOL_GROUP = 'inference.networking.k8s.io';
export const ALPHA_POOL_GROUP = 'inference.networking.x-k8s.io';

/** `--pool-group` → the version served in it. */
export function poolVersion(group: string, flag = '--pool-group'): 'v1' | 'v1alpha2' {
  if (group === DEFAULT_POOL_GROUP) return 'v1';
  if (group === ALPHA_POOL_GROUP) return 'v1alpha2';
  throw new ConfigError(
    `${flag} ${JSON.stringify(group)}: expected ${DEFAULT_POOL_GROUP} (v1) or ${ALPHA_POOL_GROUP} (v1alpha2)`,
    flag,
  );
}

export function podsPath(namespace: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`;
}

export function poolsPath(namespace: string, group: string): string {
  return `/apis/${group}/${poolVersion(group)}/namespaces/${encodeURIComponent(namespace)}/inferencepools`;
}

export interface Pod {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly deleting: boolean;
  readonly phase: string;
  /** Empty until the pod has an address. */
  readonly podIP: string;
  /** The Ready condition is True. */
  readonly readyCondition: boolean;
}

export interface InferencePool {
  readonly name: string;
  readonly namespace: string;
  /** `matchLabels` (v1) or the flat selector (v1alpha2): every key must equal. */
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly targetPorts: readonly number[];
  readonly appProtocol: string;
  readonly deleting: boolean;
}

const stringMap = z.record(z.string());
const portNumber = z.number().int().min(1).max(65535);

const metadata = z.object({
  name: z.string().min(1),
  namespace: z.string().min(1),
  labels: stringMap.nullish(),
  annotations: stringMap.nullish(),
  deletionTimestamp: z.string().nullish(),
});

const podSchema = z.object({
  metadata,
  status: z
    .object({
      phase: z.string().nullish(),
      podIP: z.string().nullish(),
      conditions: z.array(z.object({ type: z.string(), status: z.string() }).passthrough()).nullish(),
    })
    .passthrough()
    .nullish(),
});

const v1PoolSchema = z.object({
  metadata,
  spec: z.object({
    selector: z.object({ matchLabels: stringMap }).passthrough(),
    targetPorts: z
      .array(z.object({ number: portNumber }).passthrough())
      .min(1)
      .max(8)
      .refine((ps) => new Set(ps.map((p) => p.number)).size === ps.length, 'target ports must be unique'),
    appProtocol: z.string().nullish(),
  }),
});

const alphaPoolSchema = z.object({
  metadata,
  spec: z.object({
    selector: stringMap,
    targetPortNumber: portNumber,
  }),
});

export function parsePod(raw: unknown): ParseResult<Pod> {
  const r = podSchema.safeParse(raw);
  if (!r.success) return { ok: false, error: issue(r.error) };
  const { metadata: m, status: s } = r.data;
  return {
    ok: true,
    value: {
      name: m.name,
      namespace: m.namespace,
      labels: m.labels ?? {},
      annotations: m.annotations ?? {},
      deleting: m.deletionTimestamp != null && m.deletionTimestamp !== '',
      phase: s?.phase ?? '',
      podIP: s?.podIP ?? '',
      readyCondition: (s?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    },
  };
}

/** A parser for the pools of `group`. */
export function poolParser(group: string): (raw: unknown) => ParseResult<InferencePool> {
  const version = poolVersion(group);
  return (raw) => {
    if (version === 'v1') {
      const r = v1PoolSchema.safeParse(raw);
      if (!r.success) return { ok: false, error: issue(r.error) };
      return pool(
        r.data.metadata,
        r.data.spec.selector.matchLabels,
        r.data.spec.targetPorts.map((p) => p.number),
        r.data.spec.appProtocol ?? 'http',
      );
    }
    const r = alphaPoolSchema.safeParse(raw);
    if (!r.success) return { ok: false, error: issue(r.error) };
    return pool(r.data.metadata, r.data.spec.selector, [r.data.spec.targetPortNumber], 'http');
  };
}

function pool(
  m: z.infer<typeof metadata>,
  matchLabels: Record<string, string>,
  targetPorts: number[],
  appProtocol: string,
): ParseResult<InferencePool> {
  // An empty selector would take every pod in the namespace; the API requires at least one label.
  if (Object.keys(matchLabels).length === 0) return { ok: false, error: 'spec.selector: no labels' };
  return {
    ok: true,
    value: {
      name: m.name,
      namespace: m.namespace,
      matchLabels,
      targetPorts,
      appProtocol,
      deleting: m.deletionTimestamp != null && m.deletionTimestamp !== '',
    },
  };
}

function issue(err: z.ZodError): string {
  const i = err.issues[0]!;
  return `${i.path.join('.') || '(object)'}: ${i.message}`;
}
