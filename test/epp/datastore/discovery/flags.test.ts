import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import { Datastore } from '../../../../src/epp/datastore/datastore.js';
import {
  defaultEndpointName,
  parseEndpointFlag,
  parseEndpointFlags,
  StaticDiscovery,
} from '../../../../src/epp/datastore/discovery/flags.js';

describe('parseEndpointFlag', () => {
  it('reads every field, with ;-separated labels', () => {
    expect(
      parseEndpointFlag(
        'name=pod-a,namespace=ns1,address=10.0.0.1,port=8000,rank=2,labels=llm-d.ai/role=decode;zone=a',
      ),
    ).toEqual({
      name: 'pod-a',
      namespace: 'ns1',
      address: '10.0.0.1',
      port: 8000,
      rank: 2,
      labels: { 'llm-d.ai/role': 'decode', zone: 'a' },
    });
  });

  it('defaults namespace, rank, labels and a name made from address and port', () => {
    expect(parseEndpointFlag('address=10.0.0.1,port=8000')).toEqual({
      name: '10-0-0-1-8000',
      namespace: 'default',
      address: '10.0.0.1',
      port: 8000,
      rank: 0,
      labels: {},
    });
    expect(defaultEndpointName('fd00::1', 8200)).toBe('fd00-1-8200');
    expect(defaultEndpointName('::1', 8000)).toBe('1-8000');
  });

  it('accepts IPv6 addresses, bracketed or not, and an address:port shorthand', () => {
    expect(parseEndpointFlag('address=[fd00::1],port=8000').address).toBe('fd00::1');
    expect(parseEndpointFlag('address=fd00::1,port=8000').address).toBe('fd00::1');
    expect(parseEndpointFlag('127.0.0.1:8200')).toMatchObject({
      address: '127.0.0.1',
      port: 8200,
      name: '127-0-0-1-8200',
    });
    expect(parseEndpointFlag('[::1]:8000')).toMatchObject({ address: '::1', port: 8000 });
  });

  it('allows a label with an empty value and tolerates spaces and empty parts', () => {
    expect(parseEndpointFlag(' address=10.0.0.1 , port=8000,, labels=a=;b=2; ').labels).toEqual({
      a: '',
      b: '2',
    });
  });

  it.each([
    ['', /empty value/],
    ['address=10.0.0.1', /port is required/],
    ['port=8000', /address is required/],
    ['address=pod.local,port=8000', /"address=pod.local" is not an IPv4 or IPv6 address/],
    ['address=10.0.0.1,port=0', /"port=0" is not a port/],
    ['address=10.0.0.1,port=65536', /port/],
    ['address=10.0.0.1,port=80x', /port/],
    ['address=10.0.0.1,port=8000,rank=-1', /"rank=-1"/],
    ['address=10.0.0.1,port=8000,weight=3', /"weight=3" has an unknown key/],
    ['address=10.0.0.1,port=8000,port=8001', /repeats port/],
    ['address=10.0.0.1,port=8000,name=a/b', /"name=a\/b"/],
    ['address=10.0.0.1,port=8000,labels=novalue', /"labels=…novalue" is not k=v/],
    ['address=10.0.0.1,port=8000,labels=-bad=1', /label key "-bad"/],
    ['address=10.0.0.1,port=8000,labels=Bad_Prefix/x=1', /prefix is not a DNS subdomain/],
    ['address=10.0.0.1,port=8000,justtext', /"justtext" is not key=value/],
    ['pod.local:8000', /IPv4 or IPv6/],
    ['10.0.0.1', /neither key=value pairs nor address:port/],
  ])('rejects %j with a ConfigError naming the bad part', (value, message) => {
    let err: unknown;
    try {
      parseEndpointFlag(value);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(/^--endpoint/);
    expect((err as ConfigError).message).toMatch(message);
    expect((err as ConfigError).param).toBe('--endpoint');
  });
});

describe('parseEndpointFlags', () => {
  it('parses every value and refuses two values for one endpoint id', () => {
    expect(parseEndpointFlags(['127.0.0.1:8000', '127.0.0.1:8001']).map((s) => s.name)).toEqual([
      '127-0-0-1-8000',
      '127-0-0-1-8001',
    ]);
    expect(() =>
      parseEndpointFlags(['name=a,address=10.0.0.1,port=1', 'name=a,address=10.0.0.2,port=2']),
    ).toThrow(/both default\/a-rank-0/);
    expect(
      parseEndpointFlags(['name=a,address=10.0.0.1,port=1', 'name=a,rank=1,address=10.0.0.1,port=2']),
    ).toHaveLength(2);
  });
});

describe('StaticDiscovery', () => {
  it('delivers its list once on start', async () => {
    const ds = new Datastore();
    ds.upsert({ name: 'old', namespace: 'default', address: '10.0.0.9', port: 1, labels: {} });
    const d = new StaticDiscovery(
      parseEndpointFlags(['name=a,address=10.0.0.1,port=8000,labels=llm-d.ai/role=decode']),
    );
    expect(d.typedName).toEqual({ type: 'static-discovery', name: 'static-discovery' });
    await d.start(ds);
    expect(ds.list().map((e) => [e.meta.id, e.meta.labels])).toEqual([
      ['default/a-rank-0', { 'llm-d.ai/role': 'decode' }],
    ]);
    d.stop();
  });
});
