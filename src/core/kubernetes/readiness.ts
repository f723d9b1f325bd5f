/**
 * Which pods of a pool serve, and on which of its target ports, as llm-d's datastore decides: a pod
 * serves when it is Running, has an address, its Ready condition is True and it is not being deleted;
 * the `llm-d.ai/active-ports` annotation (legacy `inference.networking.k8s.io/active-ports`) narrows
 * the target ports to those it lists (data-parallel ranks that are up). Shared by the EPP's endpoints
 * and the KV indexer's dialled publishers.
 */
import { isIP } from 'node:net';
import type { Pod } from './resources.js';

export const ACTIVE_PORTS_ANNOTATION = 'llm-d.ai/active-ports';
export const LEGACY_ACTIVE_PORTS_ANNOTATION = 'inference.networking.k8s.io/active-ports';
/**
 * Where the pod publishes its KV events, when not at `tcp://<podIP>:<socketPort>`. An annotation,
 * since a label value cannot hold a URL.
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

/** The (rank, port) pairs a ready pod serves; the rank is the port's index in the pool. */
export function servingPorts(pod: Pod, targetPorts: readonly number[]): { rank: number; port: number }[] {
  if (!isPodReady(pod)) return [];
  const active = activePorts(pod, targetPorts);
  const out: { rank: number; port: number }[] = [];
  targetPorts.forEach((port, rank) => {
    if (active.has(port)) out.push({ rank, port });
  });
  return out;
}
