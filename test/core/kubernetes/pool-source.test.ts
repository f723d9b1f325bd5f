import { afterEach, describe, expect, it } from 'vitest';
import { poolNamespaceOf, poolSourceOf } from '../../../src/core/kubernetes/pool-source.js';

const GROUP = 'inference.networking.k8s.io';

describe('poolSourceOf', () => {
  it('is null without --pool-name or --endpoint-selector', () => {
    expect(poolSourceOf({ poolGroup: GROUP })).toBeNull();
  });

  it('names the pool, or the selector with its ports', () => {
    expect(poolSourceOf({ poolName: 'p', poolGroup: GROUP })).toEqual({
      kind: 'pool',
      name: 'p',
      group: GROUP,
    });
    const s = poolSourceOf({ poolGroup: GROUP, endpointSelector: 'a=b', endpointTargetPorts: [8000, 8001] });
    expect(s?.kind).toBe('selector');
    expect(s?.kind === 'selector' && s.targetPorts).toEqual([8000, 8001]);
    expect(s?.kind === 'selector' && s.selector.matches({ a: 'b' })).toBe(true);
  });

  it.each<[Parameters<typeof poolSourceOf>[0], RegExp]>([
    [
      { poolGroup: GROUP, poolName: 'p', endpointSelector: 'a=b', endpointTargetPorts: [1] },
      /mutually exclusive/,
    ],
    [{ poolGroup: GROUP, endpointSelector: 'a=b' }, /needs --endpoint-target-ports/],
    [{ poolGroup: GROUP, endpointTargetPorts: [8000] }, /only used with --endpoint-selector/],
    [
      { poolGroup: GROUP, endpointSelector: 'a=b', endpointTargetPorts: [1, 2, 3, 4, 5, 6, 7, 8, 9] },
      /at most 8/,
    ],
    [{ poolGroup: GROUP, endpointSelector: 'a=b', endpointTargetPorts: [1, 1] }, /unique/],
    [
      { poolGroup: GROUP, endpointSelector: 'a in b', endpointTargetPorts: [1] },
      /--endpoint-selector "a in b"/,
    ],
    [{ poolGroup: 'example.com', poolName: 'p' }, /--pool-group "example.com"/],
  ])('refuses %j', (flags, message) => {
    expect(() => poolSourceOf(flags)).toThrow(message);
  });
});

describe('poolNamespaceOf', () => {
  const saved = process.env.NAMESPACE;
  afterEach(() => {
    if (saved === undefined) delete process.env.NAMESPACE;
    else process.env.NAMESPACE = saved;
  });

  it('takes the flag, else env NAMESPACE, else default', () => {
    process.env.NAMESPACE = 'llmd';
    expect(poolNamespaceOf('ns')).toBe('ns');
    expect(poolNamespaceOf(undefined)).toBe('llmd');
    process.env.NAMESPACE = '';
    expect(poolNamespaceOf(undefined)).toBe('default');
    delete process.env.NAMESPACE;
    expect(poolNamespaceOf(undefined)).toBe('default');
  });
});
