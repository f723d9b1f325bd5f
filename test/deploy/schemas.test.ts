/** The manifest validation rejects what the API server would: wrong types, unknown fields, unknown kinds. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kustomize, type K8sObject } from '../helpers/kustomize.js';
import { problems } from './schemas.js';

const objs = kustomize(join(import.meta.dirname, '..', '..', 'deploy', 'overlays', 'pd-disaggregation'));

/**
 * A deep copy of the rendered `kind/name`, changed by `edit`. The edits break the objects' types on
 * purpose, so they reach into them untyped.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function broken(kind: string, name: string, edit: (o: Record<string, any>) => void): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  expect(o, `${kind}/${name}`).toBeDefined();
  const copy = structuredClone(o!);
  edit(copy);
  return copy;
}

describe('manifest validation', () => {
  it('accepts every rendered object as it is', () => {
    for (const o of objs) expect(problems(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
  });

  it('rejects a field of the wrong type in each kind of schema', () => {
    const cases: [K8sObject, RegExp][] = [
      [broken('Deployment', 'llmd-decode', (d) => (d.spec.replicas = 'two')), /replicas must be integer/],
      [
        broken('Service', 'llmd-epp', (s) => (s.spec.ports[0].port = '9002')),
        /ports\/0\/port must be integer/,
      ],
      [
        broken('Gateway', 'llmd-gateway', (g) => (g.spec.listeners[0].port = 'eighty')),
        /port must be integer/,
      ],
      [
        broken('HTTPRoute', 'llmd-route', (r) => (r.spec.rules[0].backendRefs[0].weight = 'half')),
        /weight must be integer/,
      ],
      [
        broken('InferencePool', 'llmd', (p) => (p.spec.targetPorts[0].number = '8000')),
        /targetPorts\.0\.number: Expected number/,
      ],
      [broken('ConfigMap', 'llmd-epp-config', (c) => (c.data = ['x'])), /data must be object/],
      [
        broken('DestinationRule', 'llmd-epp', (r) => (r.spec.trafficPolicy.tls.mode = 'TLS')),
        /spec\.trafficPolicy\.tls\.mode: Invalid enum value/,
      ],
    ];
    for (const [o, message] of cases) {
      const p = problems(o);
      expect(p.join('\n'), `${o.kind}/${o.metadata.name}`).toMatch(message);
    }
  });

  it('rejects fields the API has no place for, as strict field validation does', () => {
    const typo = broken('Deployment', 'llmd-decode', (d) => {
      const c = d.spec.template.spec.containers[0];
      c.readinesProbe = c.readinessProbe;
      delete c.readinessProbe;
    });
    expect(problems(typo)).toEqual(['unknown field spec.template.spec.containers[0].readinesProbe']);
    const env = broken('Deployment', 'llmd-decode', (d) => {
      d.spec.template.spec.initContainers[0].env = [{ name: 'A', vaule: 'b' }];
    });
    expect(problems(env)).toEqual(['unknown field spec.template.spec.initContainers[0].env[0].vaule']);
    const pool = broken('InferencePool', 'llmd', (p) => (p.spec.extensionRef = p.spec.endpointPickerRef));
    expect(problems(pool).join('\n')).toMatch(/Unrecognized key\(s\) in object: 'extensionRef'/);
  });

  it('applies the InferencePool CRD’s own rules', () => {
    const noPort = broken('InferencePool', 'llmd', (p) => delete p.spec.endpointPickerRef.port);
    expect(problems(noPort).join('\n')).toMatch(/port is required when kind is 'Service'/);
    const dup = broken('InferencePool', 'llmd', (p) => p.spec.targetPorts.push({ number: 8000 }));
    expect(problems(dup).join('\n')).toMatch(/port number must be unique/);
    const mode = broken('InferencePool', 'llmd', (p) => (p.spec.endpointPickerRef.failureMode = 'FailSoft'));
    expect(problems(mode).join('\n')).toMatch(/failureMode/);
    const noSelector = broken('InferencePool', 'llmd', (p) => (p.spec.selector.matchLabels = {}));
    expect(problems(noSelector).join('\n')).toMatch(/1 to 64 labels/);
  });

  it('rejects bad names and labels, and any kind it has no schema for', () => {
    const label = broken('Service', 'llmd-epp', (s) => (s.metadata.labels = { 'a b': 'c' }));
    expect(problems(label).join('\n')).toMatch(/metadata\.labels/);
    const name = broken('ConfigMap', 'llmd-epp-config', (c) => (c.metadata.name = 'Not_A_Name'));
    expect(problems(name).join('\n')).toMatch(/metadata\.name/);
    const old = broken('Deployment', 'llmd-decode', (d) => (d.apiVersion = 'apps/v1beta1'));
    expect(problems(old)).toEqual(['no schema for apps/v1beta1/Deployment']);
    expect(problems({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })).toEqual([
      'no schema for example.com/v1/Widget',
    ]);
  });
});
