/**
 * A small Kustomize renderer for the manifests under deploy/: `resources` (files and directories),
 * `components`, strategic-merge `patches` (target from the patch's kind and name) and `namespace`.
 * Anything else in a kustomization is an error, so the manifests stay within what this renders the
 * way `kubectl kustomize` does.
 */
import { readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

type Json = Record<string, unknown>;

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'components', 'patches', 'namespace']);
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
]);

/** List merge keys, as in the Kubernetes API's patchMergeKey for the fields these manifests patch. */
function mergeKeyFor(field: string | undefined, item: Json): string | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'env':
    case 'volumes':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'ports':
      return 'containerPort' in item ? 'containerPort' : 'port';
    default:
      return undefined;
  }
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export function strategicMerge(base: unknown, patch: unknown, field?: string): unknown {
  if (isObject(base) && isObject(patch)) {
    const out: Json = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = strategicMerge(base[k], v, k);
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && patch.every(isObject) && base.every(isObject)) {
    const key = patch.length > 0 ? mergeKeyFor(field, patch[0] as Json) : undefined;
    if (key === undefined) return structuredClone(patch);
    const out = base.map((b) => structuredClone(b) as Json);
    for (const p of patch as Json[]) {
      const i = out.findIndex((b) => b[key] === p[key]);
      if (i >= 0) out[i] = strategicMerge(out[i], p) as Json;
      else out.push(structuredClone(p));
    }
    return out;
  }
  return structuredClone(patch);
}

function loadYaml(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: K8sObject[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
    const v: unknown = d.toJS();
    if (v === null || v === undefined) continue;
    if (!isObject(v)) throw new Error(`${file}: a document is not a mapping`);
    out.push(v as K8sObject);
  }
  return out;
}

const id = (o: K8sObject): string => `${o.kind}/${o.metadata?.name}`;

function insideRoot(dir: string, file: string): void {
  const rel = relative(dir, file);
  if (rel.startsWith('..')) throw new Error(`${file} is outside the kustomization root ${dir}`);
}

function readKustomization(dir: string, kind: 'Kustomization' | 'Component'): Json {
  const [k] = loadYaml(join(dir, 'kustomization.yaml')) as unknown as Json[];
  if (!k || k.kind !== kind) throw new Error(`${dir}: expected a ${kind}`);
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key)) throw new Error(`${dir}: unsupported kustomization field ${key}`);
  }
  return k;
}

function applyPatches(dir: string, k: Json, objects: K8sObject[]): K8sObject[] {
  let out = objects;
  for (const p of (k.patches as { path?: string }[] | undefined) ?? []) {
    if (typeof p.path !== 'string' || Object.keys(p).length !== 1) {
      throw new Error(`${dir}: only patches with a path are supported`);
    }
    const file = resolve(dir, p.path);
    insideRoot(dir, file);
    for (const doc of loadYaml(file)) {
      const i = out.findIndex((o) => id(o) === id(doc));
      if (i < 0) throw new Error(`${file}: patch target ${id(doc)} not found`);
      out = out.map((o, j) => (j === i ? (strategicMerge(o, doc) as K8sObject) : o));
    }
  }
  return out;
}

function loadResources(dir: string, k: Json): K8sObject[] {
  const out: K8sObject[] = [];
  for (const r of (k.resources as string[] | undefined) ?? []) {
    const path = resolve(dir, r);
    if (statSync(path).isDirectory()) out.push(...render(path, 'Kustomization'));
    else {
      insideRoot(dir, path);
      out.push(...loadYaml(path));
    }
  }
  return out;
}

function render(dir: string, kind: 'Kustomization' | 'Component', acc: K8sObject[] = []): K8sObject[] {
  const k = readKustomization(dir, kind);
  let objects = [...acc, ...loadResources(dir, k)];
  for (const c of (k.components as string[] | undefined) ?? []) {
    objects = render(resolve(dir, c), 'Component', objects);
  }
  objects = applyPatches(dir, k, objects);
  const ns = k.namespace;
  if (typeof ns === 'string') {
    objects = objects.map((o) => {
      if (CLUSTER_SCOPED.has(o.kind)) return o;
      const next = { ...o, metadata: { ...o.metadata, namespace: ns } } as K8sObject;
      if (o.kind === 'RoleBinding' && Array.isArray(o.subjects)) {
        next.subjects = (o.subjects as Json[]).map((s) =>
          s.kind === 'ServiceAccount' ? { ...s, namespace: ns } : s,
        );
      }
      return next;
    });
  }
  const seen = new Set<string>();
  for (const o of objects) {
    if (seen.has(id(o))) throw new Error(`${dir}: ${id(o)} defined twice`);
    seen.add(id(o));
  }
  return objects;
}

/** Render the kustomization in `dir` (what `kubectl kustomize <dir>` prints), as objects. */
export function kustomize(dir: string): K8sObject[] {
  return render(resolve(dir), 'Kustomization');
}
