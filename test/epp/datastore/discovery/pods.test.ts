/** Which pods take traffic and on which ports: llm-d's readiness rule and active-ports annotation. */
import { describe, expect, it } from 'vitest';
import { parsePod, type Pod } from '../../../../src/core/kubernetes/resources.js';
import { activePorts, isPodReady, podEndpoints } from '../../../../src/epp/datastore/discovery/pods.js';
import { pod, type PodInput } from '../../../helpers/kube-api.js';

function p(input: PodInput): Pod {
  const r = parsePod(pod(input));
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

describe('pods → endpoints', () => {
  it('is ready when Running, addressed, Ready and not being deleted', () => {
    expect(isPodReady(p({ name: 'a', ip: '10.0.0.1' }))).toBe(true);
    expect(isPodReady(p({ name: 'a', ip: 'fd00::1' }))).toBe(true);
    expect(isPodReady(p({ name: 'a', ip: '10.0.0.1', ready: false }))).toBe(false);
    expect(isPodReady(p({ name: 'a', ip: '10.0.0.1', phase: 'Succeeded' }))).toBe(false);
    expect(isPodReady(p({ name: 'a', ip: '10.0.0.1', deleting: true }))).toBe(false);
    expect(isPodReady(p({ name: 'a' }))).toBe(false);
    expect(isPodReady(p({ name: 'a', ip: 'not-an-ip' }))).toBe(false);
  });

  it('narrows the target ports by the annotation, as Go reads it', () => {
    const ports = [8000, 8001, 8002];
    const active = (a: Record<string, string>): number[] =>
      [...activePorts(p({ name: 'a', annotations: a }), ports)].sort();
    expect(active({})).toEqual(ports);
    expect(active({ 'llm-d.ai/active-ports': ' 8001 ,8002x,9000,-1,0' })).toEqual([8001, 8002]);
    expect(active({ 'inference.networking.k8s.io/active-ports': '8000' })).toEqual([8000]);
    // The current annotation wins over the legacy one.
    expect(
      active({ 'llm-d.ai/active-ports': '8002', 'inference.networking.k8s.io/active-ports': '8000' }),
    ).toEqual([8002]);
    expect(active({ 'llm-d.ai/active-ports': '' })).toEqual([]);
  });

  it('gives one endpoint per active port, keeping the port index as the rank', () => {
    const specs = podEndpoints(
      p({ name: 'a', ip: '10.0.0.1', labels: { r: 'd' }, annotations: { 'llm-d.ai/active-ports': '8002' } }),
      [8000, 8001, 8002],
    );
    expect(specs).toEqual([
      { name: 'a', namespace: 'default', address: '10.0.0.1', port: 8002, rank: 2, labels: { r: 'd' } },
    ]);
    expect(podEndpoints(p({ name: 'a', ip: '10.0.0.1', ready: false }), [8000])).toEqual([]);
  });
});
