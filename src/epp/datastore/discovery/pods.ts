/**
 * A pod of the pool → its endpoints, as llm-d's datastore makes them: a pod takes traffic when it is
 * Running, has an address, its Ready condition is True and it is not being deleted; it then has one
 * endpoint per target port `i` (`namespace/<pod>-rank-<i>`), narrowed by the `llm-d.ai/active-ports`
 * annotation (legacy `inference.networking.k8s.io/active-ports`) to the ports it lists — data-parallel
 * ranks that are up. The rank stays the port's index in the pool, so a rank keeps its id as others
 * come and go.
 */
import { isIP } from 'node:net';
import type { Pod } from '../../../core/kubernetes/resources.js';
import type { EndpointSpec } from '../../framework/datalayer.js';

export const ACTIVE_PORTS_ANNOTATION = 'llm-d.ai/active-ports';
export const LEGACY_ACTIVE_PORTS_ANNOTATION = 'inference.networking.k8s.io/active-ports';
/**
 * Where the pod publishes its KV events, when not at `tcp://<podIP>:<socketPort>`. An annotation,
 * since a label value cannot hold a URL; it reaches the precise prefix-cache producer as the endpoint
 * label of the same name (`KV_EVENTS_ENDPOINT_LABEL`), which `--endpoint` and the endpoints file set.
 */
export const KV_EVENTS_ENDPOINT_ANNOTATION = 'llm-d.ai/kv-events-endpoint';

export function isPodReady(pod: Pod): boolean {
  return !pod.deleting && pod.phase === 'Running' && pod.readyCondition && isIP(pod.podIP) !== 0;
}

/** The target ports the pod serves: all of them, or those its annotation lists. */
export function activePorts(pod: Pod, targetPorts: readonly number[]): Set<number> {
  const all = new Set(targetPorts);
  const text = pod.annotations[ACTIVE_PORTS_ANNOTATION] ?? pod.annotations[LEGACY_ACTIVE_PORTS_ANNOTATION];
  if (text === undefined) return all;
  const active = new Set<number>();
  for (const part of text.split(',')) {
    // Go's Sscanf("%d"): leading digits count, whatever follows.
    const m = /^[+]?(\d+)/.exec(part.trim());
    const n = m === null ? 0 : Number(m[1]);
    if (n > 0 && all.has(n)) active.add(n);
  }
  return active;
}

export function podEndpoints(pod: Pod, targetPorts: readonly number[]): EndpointSpec[] {
  if (!isPodReady(pod)) return [];
  const active = activePorts(pod, targetPorts);
  const kvEvents = pod.annotations[KV_EVENTS_ENDPOINT_ANNOTATION];
  const labels =
    kvEvents === undefined ? pod.labels : { ...pod.labels, [KV_EVENTS_ENDPOINT_ANNOTATION]: kvEvents };
  const out: EndpointSpec[] = [];
  targetPorts.forEach((port, rank) => {
    if (!active.has(port)) return;
    out.push({ name: pod.name, namespace: pod.namespace, address: pod.podIP, port, rank, labels });
  });
  return out;
}
