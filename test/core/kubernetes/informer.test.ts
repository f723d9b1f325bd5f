/**
 * The informer against the API server double, through the real @kubernetes/client-node: list then
 * watch with bookmarks, resourceVersions followed, 410 Gone re-listed (as an ERROR event and as an
 * HTTP status), the API server going away and coming back, malformed objects skipped and counted.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kubeClientFrom, type KubeApi } from '../../../src/core/kubernetes/client.js';
import { Informer, type InformerEvent } from '../../../src/core/kubernetes/informer.js';
import { parsePod, podsPath, type Pod } from '../../../src/core/kubernetes/resources.js';
import { PODS, pod, startFakeKubeApi, type FakeKubeApi } from '../../helpers/kube-api.js';
import { waitFor } from '../../helpers/wait.js';

let fake: FakeKubeApi;
let api: KubeApi;
let informer: Informer<Pod> | null = null;

beforeEach(async () => {
  fake = await startFakeKubeApi();
  const kc = new KubeConfig();
  kc.loadFromOptions(fake.kubeConfigOptions());
  api = await kubeClientFrom(kc);
});

afterEach(async () => {
  await informer?.stop();
  informer = null;
  await fake.stop();
});

function podInformer(opts: { labelSelector?: string; pageSize?: number } = {}): {
  inf: Informer<Pod>;
  events: InformerEvent<Pod>[];
} {
  const inf = new Informer<Pod>({
    api,
    path: podsPath('default'),
    parse: parsePod,
    what: 'pods',
    initialBackoffMs: 10,
    maxBackoffMs: 50,
    labelSelector: opts.labelSelector,
    pageSize: opts.pageSize,
  });
  const events: InformerEvent<Pod>[] = [];
  inf.onEvent((e) => events.push(e));
  informer = inf;
  return { inf, events };
}

const names = (inf: Informer<Pod>): string[] =>
  inf
    .list()
    .map((p) => p.name)
    .sort();

describe('Informer', () => {
  it('lists, then watches from the list version with bookmarks, following every event', async () => {
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2' }));
    const { inf, events } = podInformer();
    inf.start();
    await inf.waitForSync();
    expect(names(inf)).toEqual(['a', 'b']);
    await waitFor(() => fake.watchers(PODS) === 1, 5000, 'the watch');
    const watch = fake.requests.find((r) => r.watch)!;
    expect(watch.query.resourceVersion).toBe(String(fake.resourceVersion));
    expect(watch.query.allowWatchBookmarks).toBe('true');

    fake.apply(PODS, pod({ name: 'c', ip: '10.0.0.3' }));
    await waitFor(() => inf.get('default/c') !== undefined, 5000, 'c added');
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1', ready: false }));
    await waitFor(() => inf.get('default/a')?.readyCondition === false, 5000, 'a updated');
    fake.remove(PODS, 'default', 'b');
    await waitFor(() => inf.get('default/b') === undefined, 5000, 'b deleted');
    expect(events.map((e) => `${e.type} ${e.object.name}`)).toEqual([
      'add a',
      'add b',
      'add c',
      'update a',
      'delete b',
    ]);

    // A bookmark moves the version on: the next watch resumes from it.
    fake.bookmark();
    const at = fake.resourceVersion;
    await waitFor(() => inf.stats.bookmarks === 1, 5000, 'the bookmark');
    fake.dropConnections();
    await waitFor(() => fake.watchers(PODS) === 1 && fake.requests.filter((r) => r.watch).length >= 2);
    expect(fake.requests.filter((r) => r.watch).at(-1)!.query.resourceVersion).toBe(String(at));
    expect(fake.lists(PODS)).toBe(1);
  });

  it('pages through a long list', async () => {
    for (let i = 0; i < 7; i++) fake.apply(PODS, pod({ name: `p${i}`, ip: `10.0.0.${i + 1}` }));
    const { inf } = podInformer({ pageSize: 3 });
    inf.start();
    await inf.waitForSync();
    expect(inf.list()).toHaveLength(7);
    expect(fake.requests.filter((r) => !r.watch)).toHaveLength(3);
  });

  it('passes the label selector to the list and the watch', async () => {
    fake.apply(PODS, pod({ name: 'in', ip: '10.0.0.1', labels: { app: 'vllm' } }));
    fake.apply(PODS, pod({ name: 'out', ip: '10.0.0.2', labels: { app: 'other' } }));
    const { inf } = podInformer({ labelSelector: 'app=vllm' });
    inf.start();
    await inf.waitForSync();
    expect(names(inf)).toEqual(['in']);
    await waitFor(() => fake.watchers(PODS) === 1);
    // Relabelled out of the selector: the server sends DELETED.
    fake.apply(PODS, pod({ name: 'in', ip: '10.0.0.1', labels: { app: 'other' } }));
    await waitFor(() => inf.list().length === 0, 5000, 'relabelled pod gone');
  });

  it('re-lists on a 410 ERROR event, and sees only what changed', async () => {
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2' }));
    const { inf, events } = podInformer();
    inf.start();
    await inf.waitForSync();
    await waitFor(() => fake.watchers(PODS) === 1);
    // Changes the informer never sees as events: it must find them by listing again.
    fake.dropConnections();
    fake.remove(PODS, 'default', 'a');
    fake.apply(PODS, pod({ name: 'c', ip: '10.0.0.3' }));
    fake.expireWatches();
    await waitFor(() => fake.lists(PODS) === 2 && names(inf).join() === 'b,c', 5000, 're-list');
    expect(inf.stats.relists).toBeGreaterThanOrEqual(1);
    expect(events.map((e) => `${e.type} ${e.object.name}`)).toEqual(['add a', 'add b', 'delete a', 'add c']);
    await waitFor(() => fake.watchers(PODS) === 1, 5000, 'watching again');
    fake.apply(PODS, pod({ name: 'd', ip: '10.0.0.4' }));
    await waitFor(() => inf.get('default/d') !== undefined, 5000, 'd after the re-list');
  });

  it('re-lists when the watch request itself is answered 410', async () => {
    fake.goneAs = 'http';
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    const { inf } = podInformer();
    inf.start();
    await inf.waitForSync();
    await waitFor(() => fake.watchers(PODS) === 1);
    fake.compact();
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2' }));
    fake.dropConnections();
    fake.compact();
    await waitFor(() => fake.requests.some((r) => r.status === 410), 5000, 'a 410');
    await waitFor(() => fake.lists(PODS) === 2 && names(inf).join() === 'a,b', 5000, 're-list');
    expect(inf.stats.relists).toBe(1);
  });

  it('survives the API server going away and coming back on the same port', async () => {
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    const { inf } = podInformer();
    inf.start();
    await inf.waitForSync();
    await waitFor(() => fake.watchers(PODS) === 1);
    await fake.stop();
    // While it is down, watches fail and are retried with backoff.
    await waitFor(() => inf.stats.errors >= 2, 5000, 'failed reconnects');
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2' }));
    await fake.start();
    await waitFor(() => inf.get('default/b') !== undefined, 5000, 'b after the restart');
    // Resumed from its version: no second list was needed.
    expect(fake.lists(PODS)).toBe(1);
  });

  it('retries the first list until the API server answers', async () => {
    await fake.stop();
    const { inf } = podInformer();
    inf.start();
    await waitFor(() => inf.stats.errors >= 1, 5000, 'a failed list');
    expect(inf.hasSynced).toBe(false);
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    await fake.start();
    await inf.waitForSync();
    expect(names(inf)).toEqual(['a']);
  });

  it('skips malformed objects, counting them, and keeps going', async () => {
    fake.putRaw(PODS, 'default', 'bad-list', {
      metadata: { name: 'bad-list', namespace: 'default' },
      status: { conditions: 'not a list' },
    });
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    const { inf } = podInformer();
    inf.start();
    await inf.waitForSync();
    expect(names(inf)).toEqual(['a']);
    expect(inf.stats.malformed).toBe(1);
    await waitFor(() => fake.watchers(PODS) === 1);

    fake.sendRaw(PODS, '{not json');
    fake.sendRaw(PODS, JSON.stringify({ type: 'ADDED', object: { metadata: { namespace: 'default' } } }));
    fake.putRaw(PODS, 'default', 'a', {
      metadata: { name: 'a', namespace: 'default', labels: 'oops' },
    });
    fake.sendRaw(PODS, JSON.stringify({ type: 'SURPRISE', object: pod({ name: 'x' }) }));
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2' }));
    await waitFor(() => inf.get('default/b') !== undefined, 5000, 'b after the bad events');
    // The bad update of a left its last good state in place.
    expect(inf.get('default/a')?.podIP).toBe('10.0.0.1');
    expect(inf.stats.malformed).toBe(4);
    // A delete needs only the key, even when the last state was malformed.
    fake.remove(PODS, 'default', 'a');
    await waitFor(() => inf.get('default/a') === undefined, 5000, 'a deleted');
  });

  it('a listener that throws does not stop the stream', async () => {
    const { inf } = podInformer();
    inf.onEvent(() => {
      throw new Error('boom');
    });
    inf.start();
    await inf.waitForSync();
    await waitFor(() => fake.watchers(PODS) === 1);
    fake.apply(PODS, pod({ name: 'a', ip: '10.0.0.1' }));
    fake.apply(PODS, pod({ name: 'b', ip: '10.0.0.2' }));
    await waitFor(() => inf.list().length === 2, 5000, 'both pods');
  });
});
