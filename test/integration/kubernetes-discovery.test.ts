/**
 * `llmd epp --pool-name` (the built CLI) against the Kubernetes API server double: a real
 * `llmd serve` registered as a pod of the InferencePool (podIP 127.0.0.1, target port = the server's
 * port) receives the requests once it is ready and stops receiving them when it is not; the precise
 * prefix-cache producer dials the KV events of the pod the pool discovered, at the address of its
 * `llm-d.ai/kv-events-endpoint` annotation. The pool's namespace comes from env NAMESPACE, as the
 * deploy manifests pass it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PODS, POOLS_V1, pod, poolV1, startFakeKubeApi, type FakeKubeApi } from '../helpers/kube-api.js';
import { killAll, startLlmd, startServeProcess, type LlmdProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const MODEL = 'Qwen/Qwen3-0.6B';
const NS = 'llmd';
const SERVING = { 'llm-d.ai/inference-serving': 'true', 'llm-d.ai/role': 'decode' };
const CONFIG = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: token-producer
    parameters: { backend: vllm }
  - type: precise-prefix-cache-producer
    parameters:
      tokenProcessorConfig: { blockSize: 16 }
      kvEventsConfig: { discoverPods: true }
  - type: prefix-cache-scorer
  - type: max-score-picker
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: prefix-cache-scorer
        weight: 1
`;

let fake: FakeKubeApi;
let dir: string;
let servePort: number;
let kvPort: number;
let epp: LlmdProcess;
let kubeconfig: string;

function servingPod(ready: boolean): Record<string, unknown> {
  return pod({
    name: 'decode-0',
    namespace: NS,
    ip: '127.0.0.1',
    ready,
    labels: SERVING,
    annotations: { 'llm-d.ai/kv-events-endpoint': `tcp://127.0.0.1:${kvPort}` },
  });
}

async function complete(prompt: string): Promise<Response> {
  return fetch(`${epp.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt, max_tokens: 2 }),
  });
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${epp.ready.metrics_url as string}/metrics`)).text();
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? '0');
}

beforeAll(async () => {
  fake = await startFakeKubeApi();
  dir = mkdtempSync(join(tmpdir(), 'llmd-k8s-'));
  kubeconfig = fake.writeKubeconfig(dir);
  [servePort, kvPort] = [await freePort(), await freePort()];
  await startServeProcess([
    '--port',
    String(servePort),
    '--kv-events-config',
    JSON.stringify({
      enable_kv_cache_events: true,
      publisher: 'zmq',
      endpoint: `tcp://*:${kvPort}`,
      topic: `kv@127.0.0.1:${servePort}@${MODEL}`,
    }),
  ]);
  fake.apply(POOLS_V1, poolV1('llmd', { 'llm-d.ai/inference-serving': 'true' }, [servePort], NS));
  fake.apply(PODS, servingPod(false));
  epp = await startLlmd(
    [
      'epp',
      '--gateway-host',
      '127.0.0.1',
      '--gateway-port',
      '0',
      '--metrics-port',
      '0',
      '--config-text',
      CONFIG,
      '--pool-name=llmd',
      '--kubeconfig',
      kubeconfig,
    ],
    'llmd epp is ready',
    20_000,
    { NAMESPACE: NS },
  );
}, 60_000);

afterAll(async () => {
  killAll();
  await fake?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('llmd epp --pool-name against a Kubernetes API server', () => {
  it('routes to the pool pod once it is ready, and not when it is not', async () => {
    expect(epp.ready.endpoints).toBe(0);
    expect((await complete('hello')).status).toBe(503);
    // The pool was looked up in the namespace of env NAMESPACE.
    expect(fake.requests.some((r) => r.resource === POOLS_V1)).toBe(true);
    expect(fake.lists(POOLS_V1)).toBeGreaterThanOrEqual(1);

    await waitFor(() => fake.watchers(PODS) === 1, 10_000, 'the pod watch');
    fake.apply(PODS, servingPod(true));
    await waitFor(async () => (await complete('hello')).status === 200, 10_000, 'the pod to take traffic');
    const res = await complete('a second request');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model: string; choices: unknown[] };
    expect(body.model).toBe(MODEL);

    // --pool-name also names the pool in its metrics.
    const text = await (await fetch(`${epp.ready.metrics_url as string}/metrics`)).text();
    expect(text).toMatch(/^inference_pool_ready_pods\{[^}]*name="llmd"[^}]*\} 1$/m);
    // The watches behind it: the pool and its pods listed, the pod's events seen, nothing skipped.
    expect(await metric('llmd_epp_kubernetes_lists_total')).toBeGreaterThanOrEqual(2);
    expect(await metric('llmd_epp_kubernetes_watch_events_total')).toBeGreaterThanOrEqual(1);
    expect(await metric('llmd_epp_kubernetes_malformed_objects_total')).toBe(0);

    // A pool of gRPC (h2c) model servers has no parser here: not ready until it is HTTP again.
    const readyz = async (): Promise<number> => (await fetch(`${epp.url}/readyz`)).status;
    expect(await readyz()).toBe(200);
    const h2c = poolV1('llmd', { 'llm-d.ai/inference-serving': 'true' }, [servePort], NS);
    (h2c.spec as Record<string, unknown>).appProtocol = 'kubernetes.io/h2c';
    fake.apply(POOLS_V1, h2c);
    await waitFor(async () => (await readyz()) === 503, 10_000, 'not ready for an h2c pool');
    fake.apply(POOLS_V1, poolV1('llmd', { 'llm-d.ai/inference-serving': 'true' }, [servePort], NS));
    await waitFor(async () => (await readyz()) === 200, 10_000, 'ready again');
  });

  it('dials the KV events of the discovered pod at its annotated endpoint', async () => {
    await waitFor(
      async () => (await metric('llm_d_epp_kv_cache_events_active_subscribers')) === 1,
      10_000,
      'the EPP to dial the pod',
    );
    // Events published before the subscription is through are lost (ZMQ's slow joiner): each try
    // sends a new document, whose blocks are new events.
    let n = 0;
    await waitFor(
      async () => {
        const doc = Array.from({ length: 40 }, (_, i) => `clause ${i} of agreement ${n}`).join('; ');
        n++;
        expect((await complete(doc)).status).toBe(200);
        for (let i = 0; i < 20; i++) {
          if ((await metric('llm_d_epp_kv_cache_index_admissions_total')) > 0) return true;
          await new Promise((r) => setTimeout(r, 10));
        }
        return false;
      },
      10_000,
      'KV events from the pod',
    );
  });

  it('takes the pod out when it turns unready, and back when it is deleted and re-created', async () => {
    fake.apply(PODS, servingPod(false));
    await waitFor(async () => (await complete('hello')).status === 503, 10_000, 'the pod out of rotation');
    fake.apply(PODS, servingPod(true));
    await waitFor(async () => (await complete('hello')).status === 200, 10_000, 'the pod back');
    fake.remove(PODS, NS, 'decode-0');
    await waitFor(async () => (await complete('hello')).status === 503, 10_000, 'the pod deleted');
    // Its KV events are no longer dialled either.
    await waitFor(
      async () => (await metric('llm_d_epp_kv_cache_events_active_subscribers')) === 0,
      10_000,
      'the EPP to hang up on the pod',
    );
  });
});

describe('llmd kv-indexer --pool-name', () => {
  it("dials the pool pods' KV events on --pod-socket-port and scores what they hold", async () => {
    const indexer = await startLlmd(
      [
        'kv-indexer',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--no-zmq',
        '--cache-size=100000',
        '--model',
        MODEL,
        '--pool-name',
        'llmd',
        '--kubeconfig',
        kubeconfig,
        '--pod-socket-port',
        String(kvPort),
      ],
      'llmd kv-indexer is ready',
      20_000,
      { NAMESPACE: NS },
    );
    await waitFor(() => indexer.logs.some((l) => l.includes('dialling the pool pods')), 10_000, 'the pool');
    // A ready pod without the annotation: its events are read at podIP:--pod-socket-port.
    await waitFor(() => fake.watchers(PODS) >= 2, 10_000, 'the pod watch');
    fake.apply(PODS, pod({ name: 'kv-0', namespace: NS, ip: '127.0.0.1', labels: SERVING }));
    const id = `127.0.0.1:${servePort}`;
    let n = 0;
    await waitFor(
      async () => {
        const prompt = Array.from({ length: 40 }, (_, i) => `indexed clause ${i} of contract ${n}`).join(
          '; ',
        );
        n++;
        const res = await fetch(`http://127.0.0.1:${servePort}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }),
        });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
        for (let i = 0; i < 20; i++) {
          const scores = (await (
            await fetch(`${indexer.url}/score_completions`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ model: MODEL, prompt }),
            })
          ).json()) as Record<string, number>;
          if ((scores[id] ?? 0) > 0) return true;
          await new Promise((r) => setTimeout(r, 10));
        }
        return false;
      },
      10_000,
      'the index to hold the pod',
    );
    await indexer.kill();
  });
});
