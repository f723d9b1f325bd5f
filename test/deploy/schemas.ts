/**
 * Validation of rendered manifests against the real API schemas: the Kubernetes OpenAPI models of
 * `kubernetes-models` and the Gateway API CRD models of `@kubernetes-models/gateway-api`, picked by
 * apiVersion and kind. Those schemas allow fields they do not define, while the API server rejects
 * them (kubectl's default strict field validation), so built-in kinds are also walked against the
 * field lists of the `@kubernetes/client-node` models. InferencePool has no model package: its strict
 * schema below follows the upstream CRD (gateway-api-inference-extension `api/v1`). An object of a
 * kind not listed here is a problem in itself.
 */
import * as k8s from '@kubernetes/client-node';
import { Gateway, HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { z } from 'zod';
import type { K8sObject } from '../helpers/kustomize.js';

// ---- InferencePool (inference.networking.k8s.io/v1), from the upstream CRD --------------------------

const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const group = z
  .string()
  .max(253)
  .regex(new RegExp(`^$|${dnsSubdomain.source}`));
const kind = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/);
const objectName = z.string().min(1).max(253);
const portNumber = z.number().int().min(1).max(65535);
const labelKey = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/,
  );
const labelValue = z
  .string()
  .max(63)
  .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/);
const port = z.object({ number: portNumber }).strict();

/** The object metadata a manifest may set (ObjectMeta, the fields that are not server-set). */
const metadata = z
  .object({
    name: z.string().max(253).regex(dnsSubdomain),
    namespace: z
      .string()
      .max(63)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
      .optional(),
    labels: z.record(labelKey, labelValue).optional(),
    annotations: z.record(z.string()).optional(),
  })
  .strict();

export const inferencePoolSchema = z
  .object({
    apiVersion: z.literal('inference.networking.k8s.io/v1'),
    kind: z.literal('InferencePool'),
    metadata,
    spec: z
      .object({
        selector: z
          .object({
            matchLabels: z
              .record(labelKey, labelValue)
              .refine((m) => Object.keys(m).length >= 1 && Object.keys(m).length <= 64, '1 to 64 labels'),
          })
          .strict(),
        targetPorts: z
          .array(port)
          .min(1)
          .max(8)
          .refine((ps) => new Set(ps.map((p) => p.number)).size === ps.length, 'port number must be unique'),
        appProtocol: z.enum(['http', 'kubernetes.io/h2c']).optional(),
        endpointPickerRef: z
          .object({
            group: group.optional(),
            kind: kind.optional(),
            name: objectName,
            port: port.optional(),
            failureMode: z.enum(['FailOpen', 'FailClose']).optional(),
          })
          .strict()
          .refine(
            (r) => (r.kind ?? 'Service') !== 'Service' || r.port !== undefined,
            "port is required when kind is 'Service' or unspecified (defaults to 'Service')",
          )
          .optional(),
      })
      .strict(),
  })
  .strict();
export type InferencePool = z.infer<typeof inferencePoolSchema>;

// ---- DestinationRule (networking.istio.io/v1), the fields of Istio's API the manifests use ------------

const tlsMode = z.enum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']);

export const destinationRuleSchema = z
  .object({
    apiVersion: z.literal('networking.istio.io/v1'),
    kind: z.literal('DestinationRule'),
    metadata,
    spec: z
      .object({
        host: z.string().min(1),
        trafficPolicy: z
          .object({
            tls: z
              .object({
                mode: tlsMode,
                insecureSkipVerify: z.boolean().optional(),
                sni: z.string().optional(),
                caCertificates: z.string().optional(),
                credentialName: z.string().optional(),
              })
              .strict()
              .optional(),
          })
          .strict()
          .optional(),
      })
      .strict(),
  })
  .strict();

// ---- the model kinds ------------------------------------------------------------------------------------

interface ModelClass {
  new (data: never): { validate(): void };
}

interface Attribute {
  readonly baseName: string;
  readonly type: string;
}
interface ClientModel {
  getAttributeTypeMap(): readonly Attribute[];
}

interface Entry {
  readonly model: ModelClass;
  /** The `@kubernetes/client-node` model of the kind, for its field list; none for CRDs. */
  readonly fields?: string;
}

const MODELS: Record<string, Entry> = {
  'v1/Namespace': { model: Namespace, fields: 'V1Namespace' },
  'v1/ServiceAccount': { model: ServiceAccount, fields: 'V1ServiceAccount' },
  'v1/ConfigMap': { model: ConfigMap, fields: 'V1ConfigMap' },
  'v1/Service': { model: Service, fields: 'V1Service' },
  'apps/v1/Deployment': { model: Deployment, fields: 'V1Deployment' },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, fields: 'V1Role' },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding, fields: 'V1RoleBinding' },
  'gateway.networking.k8s.io/v1/Gateway': { model: Gateway },
  'gateway.networking.k8s.io/v1/HTTPRoute': { model: HTTPRoute },
};

const clientModels = k8s as unknown as Record<string, Partial<ClientModel> | undefined>;

/** Fields the API has no place for, by path (`spec.template.spec.containers[0].readinesProbe`). */
function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const item = /^Array<(.+)>$/.exec(type);
  if (item) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, item[1]!, `${path}[${i}]`, out));
    return;
  }
  const entry = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (entry) {
    if (typeof value === 'object')
      for (const [k, v] of Object.entries(value)) unknownFields(v, entry[1]!, `${path}.${k}`, out);
    return;
  }
  const model = clientModels[type];
  // A scalar (or a value of the wrong type, which the schema reports).
  if (typeof model?.getAttributeTypeMap !== 'function' || typeof value !== 'object' || Array.isArray(value))
    return;
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = attrs.get(k);
    const at = path === '' ? k : `${path}.${k}`;
    if (t === undefined) out.push(`unknown field ${at}`);
    else unknownFields(v, t, at, out);
  }
}

/** What the API server would reject in `o`; empty when it is valid. */
export function problems(o: K8sObject): string[] {
  const key = `${String(o.apiVersion)}/${String(o.kind)}`;
  const crd =
    key === 'inference.networking.k8s.io/v1/InferencePool'
      ? inferencePoolSchema
      : key === 'networking.istio.io/v1/DestinationRule'
        ? destinationRuleSchema
        : null;
  if (crd !== null) {
    const r = crd.safeParse(o);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  }
  const entry = MODELS[key];
  if (entry === undefined) return [`no schema for ${key}`];
  const out: string[] = [];
  try {
    new entry.model(o as never).validate();
  } catch (err) {
    out.push((err as Error).message);
  }
  const meta = metadata.safeParse(o.metadata);
  if (!meta.success) out.push(...meta.error.issues.map((i) => `metadata.${i.path.join('.')}: ${i.message}`));
  if (entry.fields !== undefined) unknownFields(o, entry.fields, '', out);
  return out;
}
