import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { Datastore, endpointId, type EndpointChange } from '../../../src/epp/datastore/datastore.js';
import type { EndpointSpec } from '../../../src/epp/framework/datalayer.js';
import { AttributeKey, type Endpoint } from '../../../src/epp/framework/endpoint.js';

function spec(name: string, init: Partial<EndpointSpec> = {}): EndpointSpec {
  return { name, namespace: 'default', address: '10.0.0.1', port: 8000, labels: {}, ...init };
}

describe('Datastore', () => {
  it('names endpoints namespace/name-rank-i, rank 0 by default', () => {
    const ds = new Datastore();
    ds.upsert(spec('pod-a'));
    ds.upsert(spec('pod-a', { rank: 1, port: 8001 }));
    expect(ds.list().map((e) => e.meta.id)).toEqual(['default/pod-a-rank-0', 'default/pod-a-rank-1']);
    expect(endpointId('ns', 'p')).toBe('ns/p-rank-0');
    const e = ds.get('default/pod-a-rank-1')!;
    expect(e.meta).toMatchObject({ name: 'pod-a', namespace: 'default', address: '10.0.0.1', port: 8001 });
    expect(e.meta.hostPort).toBe('10.0.0.1:8001');
  });

  it('brackets IPv6 addresses in hostPort', () => {
    const ds = new Datastore();
    ds.upsert(spec('v6', { address: 'fd00::1' }));
    expect(ds.get('default/v6-rank-0')!.meta.hostPort).toBe('[fd00::1]:8000');
  });

  it('gives the lowest free slot and reuses freed slots', () => {
    const ds = new Datastore();
    for (const n of ['a', 'b', 'c', 'd']) ds.upsert(spec(n));
    expect(ds.list().map((e) => e.slot)).toEqual([0, 1, 2, 3]);
    ds.remove('default/b-rank-0');
    ds.remove('default/a-rank-0');
    expect(ds.slotCount()).toBe(4);
    ds.upsert(spec('e'));
    ds.upsert(spec('f'));
    ds.upsert(spec('g'));
    expect(ds.get('default/e-rank-0')!.slot).toBe(0);
    expect(ds.get('default/f-rank-0')!.slot).toBe(1);
    expect(ds.get('default/g-rank-0')!.slot).toBe(4);
    expect(ds.slotCount()).toBe(5);
  });

  it('shrinks slotCount when the highest slots are freed', () => {
    const ds = new Datastore();
    for (const n of ['a', 'b', 'c']) ds.upsert(spec(n));
    ds.remove('default/b-rank-0');
    expect(ds.slotCount()).toBe(3);
    ds.remove('default/c-rank-0');
    expect(ds.slotCount()).toBe(1);
    ds.clear();
    expect(ds.slotCount()).toBe(0);
    expect(ds.list()).toEqual([]);
  });

  it('replaces the list array on change and never mutates a returned one', () => {
    const ds = new Datastore();
    ds.upsert(spec('a'));
    const first = ds.list();
    expect(ds.list()).toBe(first);
    ds.upsert(spec('b'));
    const second = ds.list();
    expect(second).not.toBe(first);
    expect(first.map((e) => e.meta.name)).toEqual(['a']);
    expect(Object.isFrozen(second)).toBe(true);
    ds.upsert(spec('b'));
    expect(ds.list()).toBe(second);
  });

  it('updates labels in place, keeping slot, metrics and attributes', () => {
    const ds = new Datastore();
    ds.upsert(spec('a', { labels: { 'llm-d.ai/role': 'decode' } }));
    const e = ds.get('default/a-rank-0')!;
    e.metrics.waitingQueueSize = 7;
    const key = new AttributeKey<number>('k');
    e.attributes.set(key, 3);
    const changes: EndpointChange[] = [];
    ds.onChange((c) => changes.push(c));
    ds.upsert(spec('a', { labels: { 'llm-d.ai/role': 'prefill' } }));
    const after = ds.get('default/a-rank-0')!;
    expect(after).toBe(e);
    expect(after.slot).toBe(0);
    expect(after.meta.labels).toEqual({ 'llm-d.ai/role': 'prefill' });
    expect(after.metrics.waitingQueueSize).toBe(7);
    expect(after.attributes.get(key)).toBe(3);
    expect(changes).toEqual([{ kind: 'update', endpoint: e, serverChanged: false }]);
  });

  it('treats a new address as a new server: fresh metrics and poll state, same slot and attributes', () => {
    const ds = new Datastore();
    ds.upsert(spec('a'));
    const e = ds.get('default/a-rank-0')!;
    e.metrics.waitingQueueSize = 7;
    e.lastPollOk = 123;
    e.consecutiveFailures = 2;
    const key = new AttributeKey<number>('inflight');
    e.attributes.set(key, 1);
    const gen = e.generation;
    const changes: EndpointChange[] = [];
    ds.onChange((c) => changes.push(c));
    ds.upsert(spec('a', { address: '10.0.0.9' }));
    expect(ds.get('default/a-rank-0')).toBe(e);
    expect(e.meta.address).toBe('10.0.0.9');
    expect(e.metrics.waitingQueueSize).toBe(0);
    expect(e.metrics.updateTime).toBe(0);
    expect(e.lastPollOk).toBe(0);
    expect(e.consecutiveFailures).toBe(0);
    expect(e.generation).toBe(gen + 1);
    expect(e.attributes.get(key)).toBe(1);
    expect(changes.map((c) => [c.kind, c.serverChanged])).toEqual([['update', true]]);
  });

  it('ignores an upsert that changes nothing', () => {
    const ds = new Datastore();
    ds.upsert(spec('a', { labels: { x: '1' } }));
    const changes: EndpointChange[] = [];
    ds.onChange((c) => changes.push(c));
    ds.upsert(spec('a', { labels: { x: '1' } }));
    expect(changes).toEqual([]);
  });

  it('calls onRemove and onChange when an endpoint leaves, and unsubscribes', () => {
    const ds = new Datastore();
    ds.upsert(spec('a'));
    ds.upsert(spec('b'));
    const removed: Endpoint[] = [];
    const off = ds.onRemove((e) => removed.push(e));
    const kinds: string[] = [];
    ds.onChange((c) => kinds.push(`${c.kind}:${c.endpoint.meta.name}`));
    ds.remove('default/a-rank-0');
    ds.remove('default/nope-rank-0');
    expect(removed.map((e) => e.meta.name)).toEqual(['a']);
    expect(kinds).toEqual(['remove:a']);
    off();
    ds.remove('default/b-rank-0');
    expect(removed).toHaveLength(1);
  });

  it('keeps going when a listener throws', () => {
    const ds = new Datastore();
    ds.onChange(() => {
      throw new Error('listener bug');
    });
    ds.onRemove(() => {
      throw new Error('listener bug');
    });
    ds.upsert(spec('a'));
    ds.remove('default/a-rank-0');
    ds.upsert(spec('b'));
    expect(ds.list().map((e) => e.meta.name)).toEqual(['b']);
  });

  it('replace() removes what is not listed, adds what is new and updates the rest', () => {
    const ds = new Datastore();
    ds.replace([spec('a'), spec('b'), spec('c')]);
    const b = ds.get('default/b-rank-0')!;
    const kinds: string[] = [];
    ds.onChange((c) => kinds.push(`${c.kind}:${c.endpoint.meta.name}`));
    ds.replace([spec('b', { labels: { z: '1' } }), spec('d')]);
    expect(
      ds
        .list()
        .map((e) => e.meta.name)
        .sort(),
    ).toEqual(['b', 'd']);
    expect(ds.get('default/b-rank-0')).toBe(b);
    expect(kinds.sort()).toEqual(['add:d', 'remove:a', 'remove:c', 'update:b']);
    // d takes the lowest free slot
    expect(ds.get('default/d-rank-0')!.slot).toBe(0);
  });

  it('rejects a bad spec with a ConfigError, and a bad set changes nothing', () => {
    const ds = new Datastore();
    ds.replace([spec('a')]);
    expect(() => ds.upsert(spec('x', { address: 'not-an-ip' }))).toThrow(ConfigError);
    expect(() => ds.upsert(spec('x', { port: 0 }))).toThrow(/port/);
    expect(() => ds.upsert(spec('x', { port: 70000 }))).toThrow(/port/);
    expect(() => ds.upsert(spec('x/y'))).toThrow(/name/);
    expect(() => ds.upsert(spec('x', { namespace: '' }))).toThrow(/namespace/);
    expect(() => ds.upsert(spec('x', { rank: -1 }))).toThrow(/rank/);
    expect(() => ds.upsert(spec('x', { labels: { '': 'v' } }))).toThrow(/label/);
    expect(() => ds.replace([spec('b'), spec('c', { address: '' })])).toThrow(ConfigError);
    expect(ds.list().map((e) => e.meta.name)).toEqual(['a']);
  });

  it('freezes metadata and labels so plugins cannot change them', () => {
    const ds = new Datastore();
    const labels = { a: '1' };
    ds.upsert(spec('a', { labels }));
    labels.a = '2';
    const e = ds.get('default/a-rank-0')!;
    expect(e.meta.labels).toEqual({ a: '1' });
    expect(Object.isFrozen(e.meta)).toBe(true);
    expect(Object.isFrozen(e.meta.labels)).toBe(true);
  });

  it('keeps every endpoint object in the same shape', () => {
    const ds = new Datastore();
    ds.upsert(spec('a'));
    ds.upsert(spec('b', { address: '10.0.0.2' }));
    ds.upsert(spec('b', { address: '10.0.0.3' }));
    const [a, b] = ds.list();
    expect(Object.keys(a!)).toEqual(Object.keys(b!));
    expect(Object.keys(a!.metrics)).toEqual(Object.keys(b!.metrics));
  });
});
