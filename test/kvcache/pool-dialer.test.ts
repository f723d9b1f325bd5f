/**
 * The KV indexer's dialled publishers follow the pool's pods: one server `podIP:port` per target port
 * a ready pod serves, read at `tcp://podIP:<socketPort>` or the pod's kv-events-endpoint annotation.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { kubeClientFrom } from '../../src/core/kubernetes/client.js';
import { PoolPodsWatch } from '../../src/core/kubernetes/pool-pods.js';
import type { EventEndpoint } from '../../src/kvcache/events/subscriber.js';
import { PoolDialer } from '../../src/kvcache/pool-dialer.js';
import { PODS, POOLS_V1, pod, poolV1, startFakeKubeApi, type FakeKubeApi } from '../helpers/kube-api.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeKubeApi | null = null;
let watch: PoolPodsWatch | null = null;

afterEach(async () => {
  await watch?.stop();
  await fake?.stop();
});

describe('PoolDialer', () => {
  it('dials every served port of every ready pod, and follows them', async () => {
    fake = await startFakeKubeApi();
    const kc = new KubeConfig();
    kc.loadFromOptions(fake.kubeConfigOptions());
    const sel = { app: 'vllm' };
    fake.apply(POOLS_V1, poolV1('pool', sel, [8000, 8001]));
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', labels: sel }));
    fake.apply(
      PODS,
      pod({
        name: 'b',
        ip: 'fd00::2',
        labels: sel,
        annotations: {
          'llm-d.ai/active-ports': '8001',
          'llm-d.ai/kv-events-endpoint': 'tcp://[fd00::2]:6000',
        },
      }),
    );
    fake.apply(PODS, pod({ name: 'c', ip: '10.0.0.3', labels: sel, ready: false }));
    watch = new PoolPodsWatch({
      api: await kubeClientFrom(kc),
      namespace: 'default',
      source: { kind: 'pool', name: 'pool', group: 'inference.networking.k8s.io' },
      initialBackoffMs: 10,
    });
    let dialled: readonly EventEndpoint[] = [];
    const dialer = new PoolDialer({
      watch,
      socketPort: 5557,
      ingest: {
        setEndpoints: (e) => {
          dialled = e;
          return Promise.resolve();
        },
      },
    });
    watch.start();
    await watch.waitForSync();
    await dialer.idle();
    const byId = (x: EventEndpoint, y: EventEndpoint): number => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
    expect([...dialled].sort(byId)).toEqual(
      [
        { id: '10.0.0.1:8000', endpoint: 'tcp://10.0.0.1:5557' },
        { id: '10.0.0.1:8001', endpoint: 'tcp://10.0.0.1:5557' },
        { id: '[fd00::2]:8001', endpoint: 'tcp://[fd00::2]:6000' },
      ].sort(byId),
    );
    await waitFor(() => fake!.watchers(PODS) === 1);
    fake.remove(PODS, 'default', 'a');
    await waitFor(() => dialled.length === 1, 5000, 'a hung up');
    fake.remove(POOLS_V1, 'default', 'pool');
    await waitFor(() => dialled.length === 0, 5000, 'pool gone');
  });
});
