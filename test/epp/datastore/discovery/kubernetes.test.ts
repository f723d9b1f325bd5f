/**
 * Kubernetes discovery into the real datastore, against the API server double through the real
 * @kubernetes/client-node: which pods become endpoints, on which ports, and how each watch event
 * changes the set — pods turning ready, unready or deleted, the pool's selector and ports changing,
 * both InferencePool API versions, the CRD-less selector mode, and malformed objects.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kubeClientFrom, type KubeApi } from '../../../../src/core/kubernetes/client.js';
import { parseLabelSelector } from '../../../../src/core/kubernetes/selector.js';
import { Datastore } from '../../../../src/epp/datastore/datastore.js';
import { KubernetesDiscovery } from '../../../../src/epp/datastore/discovery/kubernetes.js';
import { KV_EVENTS_ENDPOINT_ANNOTATION } from '../../../../src/epp/datastore/discovery/pods.js';
import { KV_EVENTS_ENDPOINT_LABEL } from '../../../../src/epp/plugins/producer/precise-prefix-cache.js';
import {
  PODS,
  POOLS_ALPHA,
  POOLS_V1,
  pod,
  poolAlpha,
  poolV1,
  startFakeKubeApi,
  type FakeKubeApi,
} from '../../../helpers/kube-api.js';
import { waitFor } from '../../../helpers/wait.js';

const SERVING = { 'llm-d.ai/inference-serving': 'true' };

let fake: FakeKubeApi;
let api: KubeApi;
let ds: Datastore;
let discovery: KubernetesDiscovery | null = null;

beforeEach(async () => {
  fake = await startFakeKubeApi();
  const kc = new KubeConfig();
  kc.loadFromOptions(fake.kubeConfigOptions());
  api = await kubeClientFrom(kc);
  ds = new Datastore();
});

afterEach(async () => {
  await discovery?.stop();
  discovery = null;
  await fake.stop();
});

async function startPool(name = 'pool', group = 'inference.networking.k8s.io'): Promise<KubernetesDiscovery> {
  discovery = new KubernetesDiscovery({
    api,
    namespace: 'default',
    source: { kind: 'pool', name, group },
    initialBackoffMs: 10,
    maxBackoffMs: 50,
  });
  await discovery.start(ds);
  return discovery;
}

const ids = (): string[] =>
  ds
    .list()
    .map((e) => e.meta.id)
    .sort();

/** Waits until both watches are open, so that what follows arrives as watch events. */
async function watching(): Promise<void> {
  await waitFor(() => fake.watchers(PODS) === 1 && fake.watchers() === 2, 5000, 'pool and pod watches');
}

describe('KubernetesDiscovery (InferencePool v1)', () => {
  it('has one endpoint per ready pod once started, with the pod address, port and labels', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: { ...SERVING, 'llm-d.ai/role': 'decode' } }));
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2', labels: SERVING }));
    fake.apply(PODS, pod({ name: 'other', ip: '10.0.0.9', labels: { app: 'x' } }));
    fake.apply(PODS, pod({ name: 'unready', ip: '10.0.0.3', labels: SERVING, ready: false }));
    fake.apply(PODS, pod({ name: 'pending', ip: '10.0.0.4', labels: SERVING, phase: 'Pending' }));
    fake.apply(PODS, pod({ name: 'no-ip', labels: SERVING }));
    fake.apply(PODS, pod({ name: 'going', ip: '10.0.0.5', labels: SERVING, deleting: true }));
    await startPool();
    expect(ids()).toEqual(['default/a-rank-0', 'default/b-rank-0']);
    const a = ds.get('default/a-rank-0')!;
    expect(a.meta).toMatchObject({ name: 'a', namespace: 'default', address: '10.0.0.1', port: 8000 });
    expect(a.meta.hostPort).toBe('10.0.0.1:8000');
    expect(a.meta.labels['llm-d.ai/role']).toBe('decode');
    // The pod watch asked the server for the pool's selector.
    const podWatch = fake.requests.find((r) => r.resource === PODS && r.watch);
    expect(
      podWatch?.query.labelSelector ?? fake.requests.find((r) => r.resource === PODS)!.query.labelSelector,
    ).toBe('llm-d.ai/inference-serving=true');
    expect(fake.requests.find((r) => r.resource === POOLS_V1)!.query.fieldSelector).toBe(
      'metadata.name=pool',
    );
  });

  it('each pod event changes the endpoints at once: ready, unready, deleting, deleted', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    await startPool();
    await watching();
    expect(ids()).toEqual([]);
    const changes: string[] = [];
    ds.onChange((c) => changes.push(`${c.kind} ${c.endpoint.meta.id}`));

    fake.apply(PODS, pod({ name: 'a', labels: SERVING, phase: 'Pending' }));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING }));
    await waitFor(() => ids().length === 1, 5000, 'a ready');
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING, ready: false }));
    await waitFor(() => ids().length === 0, 5000, 'a unready');
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING }));
    await waitFor(() => ids().length === 1, 5000, 'a ready again');
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING, deleting: true }));
    await waitFor(() => ids().length === 0, 5000, 'a terminating');
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2', labels: SERVING }));
    await waitFor(() => ids().length === 1, 5000, 'b ready');
    fake.remove(PODS, 'default', 'b');
    await waitFor(() => ids().length === 0, 5000, 'b deleted');
    // A new address behind the same pod is an update of its endpoint, not a new one.
    fake.apply(PODS, pod({ name: 'c', ip: '10.0.0.3', labels: SERVING }));
    await waitFor(() => ids().length === 1, 5000, 'c');
    fake.apply(PODS, pod({ name: 'c', ip: '10.0.0.4', labels: SERVING }));
    await waitFor(() => ds.get('default/c-rank-0')?.meta.address === '10.0.0.4', 5000, 'c moved');

    expect(changes).toEqual([
      'add default/a-rank-0',
      'remove default/a-rank-0',
      'add default/a-rank-0',
      'remove default/a-rank-0',
      'add default/b-rank-0',
      'remove default/b-rank-0',
      'add default/c-rank-0',
      'update default/c-rank-0',
    ]);
    // All of it came from watch events: the pods were listed once.
    expect(fake.lists(PODS)).toBe(1);
  });

  it('one endpoint per target port, narrowed by the active-ports annotation', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000, 8001, 8002]));
    fake.apply(PODS, pod({ name: 'all', ip: '10.0.0.1', labels: SERVING }));
    fake.apply(
      PODS,
      pod({
        name: 'some',
        ip: '10.0.0.2',
        labels: SERVING,
        annotations: { 'llm-d.ai/active-ports': '8002, 8000,9999,x' },
      }),
    );
    fake.apply(
      PODS,
      pod({
        name: 'legacy',
        ip: '10.0.0.3',
        labels: SERVING,
        annotations: { 'inference.networking.k8s.io/active-ports': '8001' },
      }),
    );
    fake.apply(
      PODS,
      pod({ name: 'none', ip: '10.0.0.4', labels: SERVING, annotations: { 'llm-d.ai/active-ports': '' } }),
    );
    await startPool();
    expect(ids()).toEqual([
      'default/all-rank-0',
      'default/all-rank-1',
      'default/all-rank-2',
      'default/legacy-rank-1',
      'default/some-rank-0',
      'default/some-rank-2',
    ]);
    expect(ds.get('default/some-rank-2')!.meta.port).toBe(8002);
    await watching();

    // A rank coming up is one annotation update.
    fake.apply(
      PODS,
      pod({
        name: 'some',
        ip: '10.0.0.2',
        labels: SERVING,
        annotations: { 'llm-d.ai/active-ports': '8000,8001,8002' },
      }),
    );
    await waitFor(() => ds.get('default/some-rank-1') !== undefined, 5000, 'rank 1 up');

    // The pool dropping a port removes that rank everywhere.
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000, 8001]));
    await waitFor(() => !ids().some((id) => id.endsWith('rank-2')), 5000, 'rank 2 gone');
    expect(ids()).toEqual([
      'default/all-rank-0',
      'default/all-rank-1',
      'default/legacy-rank-1',
      'default/some-rank-0',
      'default/some-rank-1',
    ]);
  });

  it("follows a change of the pool's selector", async () => {
    fake.apply(POOLS_V1, poolV1('pool', { model: 'a' }, [8000]));
    fake.apply(PODS, pod({ name: 'a1', ip: '10.0.0.1', labels: { model: 'a' } }));
    fake.apply(PODS, pod({ name: 'b1', ip: '10.0.0.2', labels: { model: 'b' } }));
    await startPool();
    expect(ids()).toEqual(['default/a1-rank-0']);
    await watching();
    fake.apply(POOLS_V1, poolV1('pool', { model: 'b' }, [8000]));
    await waitFor(() => ids().join() === 'default/b1-rank-0', 5000, 'the new selector');
    expect(
      fake.requests.filter((r) => r.resource === PODS && !r.watch).map((r) => r.query.labelSelector),
    ).toEqual(['model=a', 'model=b']);
    // Pods of the new selector keep arriving as events.
    await watching();
    fake.apply(PODS, pod({ name: 'b2', ip: '10.0.0.3', labels: { model: 'b' } }));
    await waitFor(() => ids().length === 2, 5000, 'b2');
  });

  it('supports a pool whose appProtocol the parsers read (http), and says so when it changes', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    const d = await startPool();
    expect(d.protocolSupported()).toBe(true);
    await watching();
    const h2c = poolV1('pool', SERVING, [8000]);
    (h2c.spec as Record<string, unknown>).appProtocol = 'kubernetes.io/h2c';
    fake.apply(POOLS_V1, h2c);
    await waitFor(() => !d.protocolSupported(), 5000, 'the h2c pool seen');
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    await waitFor(() => d.protocolSupported(), 5000, 'the http pool seen');
  });

  it('empties when the pool is deleted and fills again when it is back; a missing pool is no error', async () => {
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING }));
    await startPool();
    expect(ids()).toEqual([]);
    await waitFor(() => fake.watchers(POOLS_V1) === 1);
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    await waitFor(() => ids().length === 1, 5000, 'pool created');
    fake.remove(POOLS_V1, 'default', 'pool');
    await waitFor(() => ids().length === 0, 5000, 'pool deleted');
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    await waitFor(() => ids().length === 1, 5000, 'pool back');
  });

  it('ignores another pool in the namespace', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    fake.apply(POOLS_V1, poolV1('other', { app: 'x' }, [9000]));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING }));
    await startPool();
    expect(ids()).toEqual(['default/a-rank-0']);
  });

  it('keeps the last good pool when an update of it is malformed, and counts it', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING }));
    const d = await startPool();
    await watching();
    fake.putRaw(POOLS_V1, 'default', 'pool', {
      metadata: { name: 'pool', namespace: 'default' },
      spec: { selector: { matchLabels: SERVING }, targetPorts: [] },
    });
    fake.putRaw(PODS, 'default', 'a', {
      metadata: { name: 'a', namespace: 'default', labels: SERVING },
      status: 7,
    });
    await waitFor(() => (d.stats()?.malformed ?? 0) >= 2, 5000, 'both counted');
    expect(ids()).toEqual(['default/a-rank-0']);
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2', labels: SERVING }));
    await waitFor(() => ids().length === 2, 5000, 'still following');
  });

  it('survives 410 Gone and an API server restart, catching up on what it missed', async () => {
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: SERVING }));
    await startPool();
    await watching();
    await fake.stop();
    fake.remove(PODS, 'default', 'a');
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2', labels: SERVING }));
    // The restarted server has compacted what happened while it was down.
    fake.compact();
    await fake.start();
    await waitFor(() => ids().join() === 'default/b-rank-0', 10_000, 'caught up');
    expect(fake.lists(PODS)).toBe(2);
    await watching();
    fake.expireWatches();
    fake.apply(PODS, pod({ name: 'c', ip: '10.0.0.3', labels: SERVING }));
    await waitFor(() => ids().length === 2, 10_000, 'c after the 410');
  });

  it('copies the kv-events-endpoint annotation into the label the precise producer reads', async () => {
    expect(KV_EVENTS_ENDPOINT_ANNOTATION).toBe(KV_EVENTS_ENDPOINT_LABEL);
    fake.apply(POOLS_V1, poolV1('pool', SERVING, [8000]));
    fake.apply(
      PODS,
      pod({
        name: 'a',
        ip: '10.0.0.1',
        labels: SERVING,
        annotations: { [KV_EVENTS_ENDPOINT_ANNOTATION]: 'tcp://10.0.0.1:5600' },
      }),
    );
    await startPool();
    expect(ds.get('default/a-rank-0')!.meta.labels[KV_EVENTS_ENDPOINT_LABEL]).toBe('tcp://10.0.0.1:5600');
  });
});

describe('KubernetesDiscovery (InferencePool v1alpha2)', () => {
  it('reads spec.selector and spec.targetPortNumber in inference.networking.x-k8s.io', async () => {
    fake.apply(POOLS_ALPHA, poolAlpha('pool', { app: 'vllm' }, 8200));
    // A v1 pool of the same name is not the one asked for.
    fake.apply(POOLS_V1, poolV1('pool', { app: 'other' }, [8000]));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: { app: 'vllm' } }));
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2', labels: { app: 'other' } }));
    await startPool('pool', 'inference.networking.x-k8s.io');
    expect(ids()).toEqual(['default/a-rank-0']);
    expect(ds.get('default/a-rank-0')!.meta.port).toBe(8200);
    expect(fake.lists(POOLS_V1)).toBe(0);
    await waitFor(() => fake.watchers(POOLS_ALPHA) === 1 && fake.watchers(PODS) === 1);
    fake.apply(POOLS_ALPHA, poolAlpha('pool', { app: 'vllm' }, 8300));
    await waitFor(() => ds.get('default/a-rank-0')?.meta.port === 8300, 5000, 'new port');
  });
});

describe('KubernetesDiscovery (--endpoint-selector, no CRD)', () => {
  it('follows the pods of a label selector on the given ports', async () => {
    fake.apply(PODS, pod({ name: 'd1', ip: '10.0.0.1', labels: { app: 'vllm', 'llm-d.ai/role': 'decode' } }));
    fake.apply(
      PODS,
      pod({ name: 'p1', ip: '10.0.0.2', labels: { app: 'vllm', 'llm-d.ai/role': 'prefill' } }),
    );
    fake.apply(PODS, pod({ name: 'x', ip: '10.0.0.3', labels: { app: 'other' } }));
    discovery = new KubernetesDiscovery({
      api,
      namespace: 'default',
      source: {
        kind: 'selector',
        selector: parseLabelSelector('app=vllm,llm-d.ai/role in (decode,prefill)'),
        targetPorts: [8000, 8001],
      },
      initialBackoffMs: 10,
    });
    await discovery.start(ds);
    expect(ids()).toEqual([
      'default/d1-rank-0',
      'default/d1-rank-1',
      'default/p1-rank-0',
      'default/p1-rank-1',
    ]);
    expect(fake.watchers(POOLS_V1)).toBe(0);
    await waitFor(() => fake.watchers(PODS) === 1);
    fake.apply(
      PODS,
      pod({ name: 'p1', ip: '10.0.0.2', labels: { app: 'vllm', 'llm-d.ai/role': 'prefill' }, ready: false }),
    );
    await waitFor(() => ids().length === 2, 5000, 'p1 unready');
  });
});
