/**
 * The edge of the Kubernetes watches: label selectors as `--endpoint-selector` takes them, and the
 * Pod and InferencePool shapes (v1 and v1alpha2) read with their malformed variants refused.
 */
import { describe, expect, it } from 'vitest';
import {
  parsePod,
  poolParser,
  poolsPath,
  poolVersion,
  type InferencePool,
} from '../../../src/core/kubernetes/resources.js';
import { parseLabelSelector, selectorFromLabels } from '../../../src/core/kubernetes/selector.js';
import { pod, poolAlpha, poolV1 } from '../../helpers/kube-api.js';

describe('label selectors', () => {
  it('reads equality, inequality, set and existence requirements', () => {
    const s = parseLabelSelector('app = vllm, tier!=cache,llm-d.ai/role in (decode, prefill),!canary,zone');
    expect(s.text).toBe('app=vllm,tier!=cache,llm-d.ai/role in (decode,prefill),!canary,zone');
    const base = { app: 'vllm', 'llm-d.ai/role': 'decode', zone: 'a' };
    expect(s.matches(base)).toBe(true);
    expect(s.matches({ ...base, tier: 'cache' })).toBe(false);
    expect(s.matches({ ...base, 'llm-d.ai/role': 'encode' })).toBe(false);
    expect(s.matches({ ...base, canary: '' })).toBe(false);
    const { zone: _zone, ...noZone } = base;
    expect(s.matches(noZone)).toBe(false);
    expect(parseLabelSelector('a==b').text).toBe('a=b');
    expect(parseLabelSelector('a notin (x,y)').matches({})).toBe(true);
    expect(parseLabelSelector('').matches({ any: 'thing' })).toBe(true);
  });

  it.each(['a=b,,c', 'a=b c', 'a in b', 'Bad_Prefix/x=1', 'a=has space', 'a=' + 'v'.repeat(64), 'a=(x)'])(
    'refuses %j naming the flag',
    (text) => {
      expect(() => parseLabelSelector(text)).toThrow(/--endpoint-selector/);
    },
  );

  it('makes the selector of matchLabels', () => {
    const s = selectorFromLabels({ b: '2', a: '1' });
    expect(s.text).toBe('a=1,b=2');
    expect(s.matches({ a: '1', b: '2', c: '3' })).toBe(true);
    expect(s.matches({ a: '1' })).toBe(false);
  });
});

describe('InferencePool', () => {
  it('maps the group to its version and path', () => {
    expect(poolVersion('inference.networking.k8s.io')).toBe('v1');
    expect(poolVersion('inference.networking.x-k8s.io')).toBe('v1alpha2');
    expect(() => poolVersion('example.com')).toThrow(/--pool-group "example.com"/);
    expect(poolsPath('llmd', 'inference.networking.k8s.io')).toBe(
      '/apis/inference.networking.k8s.io/v1/namespaces/llmd/inferencepools',
    );
  });

  it('reads v1 and v1alpha2 pools to one shape', () => {
    const v1 = poolParser('inference.networking.k8s.io')(poolV1('p', { app: 'x' }, [8000, 8001], 'ns'));
    expect(v1).toEqual({
      ok: true,
      value: {
        name: 'p',
        namespace: 'ns',
        matchLabels: { app: 'x' },
        targetPorts: [8000, 8001],
        appProtocol: 'http',
        deleting: false,
      } satisfies InferencePool,
    });
    const alpha = poolParser('inference.networking.x-k8s.io')(poolAlpha('p', { app: 'x' }, 8000, 'ns'));
    expect(alpha.ok && alpha.value.targetPorts).toEqual([8000]);
    expect(alpha.ok && alpha.value.matchLabels).toEqual({ app: 'x' });
  });

  it.each([
    ['no ports', { selector: { matchLabels: { a: 'b' } }, targetPorts: [] }],
    [
      'nine ports',
      {
        selector: { matchLabels: { a: 'b' } },
        targetPorts: [1, 2, 3, 4, 5, 6, 7, 8, 9].map((number) => ({ number })),
      },
    ],
    [
      'a repeated port',
      { selector: { matchLabels: { a: 'b' } }, targetPorts: [{ number: 1 }, { number: 1 }] },
    ],
    ['port 0', { selector: { matchLabels: { a: 'b' } }, targetPorts: [{ number: 0 }] }],
    ['an empty selector', { selector: { matchLabels: {} }, targetPorts: [{ number: 1 }] }],
    ['the alpha shape', { selector: { a: 'b' }, targetPortNumber: 8000 }],
  ])('refuses a v1 pool with %s', (_what, spec) => {
    const r = poolParser('inference.networking.k8s.io')({ metadata: { name: 'p', namespace: 'n' }, spec });
    expect(r.ok).toBe(false);
  });
});

describe('Pod', () => {
  it('reads what readiness needs', () => {
    const r = parsePod(pod({ name: 'a', ip: '10.0.0.1', labels: { x: 'y' }, deleting: true }));
    expect(r).toMatchObject({
      ok: true,
      value: {
        name: 'a',
        namespace: 'default',
        podIP: '10.0.0.1',
        phase: 'Running',
        readyCondition: true,
        deleting: true,
      },
    });
    const unready = parsePod(pod({ name: 'b', ready: false }));
    expect(unready.ok && unready.value.readyCondition).toBe(false);
    expect(unready.ok && unready.value.podIP).toBe('');
  });

  it('refuses malformed pods, saying where', () => {
    const r = parsePod({ metadata: { name: 'a', namespace: 'n', labels: { x: 1 } } });
    expect(r).toEqual({ ok: false, error: expect.stringMatching(/^metadata\.labels\.x: /) as string });
    expect(parsePod({ metadata: { name: 'a', namespace: 'n' }, status: { conditions: 'no' } }).ok).toBe(
      false,
    );
  });
});
