/**
 * The sidecar's SSRF allowlist from `--inference-pool`: the pool's pods (IP and name, any phase, once
 * they have an address), followed through the API server double with the real @kubernetes/client-node
 * — pods joining and leaving, the pool's selector changing, the v1alpha2 group — and a start-up that
 * fails with a hint when the pool cannot be listed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseSidecarArgs } from '../../src/sidecar/flags.js';
import { parseSidecarOptions } from '../../src/sidecar/options.js';
import { PoolAllowlist, parseInferencePool } from '../../src/sidecar/pool-allowlist.js';
import { startSidecar } from '../../src/sidecar/sidecar.js';
import {
  PODS,
  POOLS_ALPHA,
  POOLS_V1,
  pod,
  poolAlpha,
  poolV1,
  startFakeKubeApi,
  type FakeKubeApi,
} from '../helpers/kube-api.js';
import { waitFor } from '../helpers/wait.js';
import { closeAll, decodeOk, post, prefillOk, sidecar, standIn } from './helpers.js';

const CHAT = '{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":5}';
const PREFILL = { 'llm-d.ai/inference-serving': 'true', 'llm-d.ai/role': 'prefill' };

let fake: FakeKubeApi;
let dir: string;
let kubeconfig: string;
const lists: PoolAllowlist[] = [];

beforeEach(async () => {
  fake = await startFakeKubeApi();
  dir = mkdtempSync(join(tmpdir(), 'llmd-pool-allowlist-'));
  kubeconfig = fake.writeKubeconfig(dir);
});

afterEach(async () => {
  await closeAll();
  for (const l of lists.splice(0)) await l.close();
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function allowlist(pool = 'llmd/pool', group = 'inference.networking.k8s.io'): Promise<PoolAllowlist> {
  const l = await PoolAllowlist.start({
    inferencePool: pool,
    poolGroup: group,
    kubeconfig,
    initialBackoffMs: 10,
    maxBackoffMs: 50,
  });
  lists.push(l);
  return l;
}

describe('PoolAllowlist', () => {
  it('reads namespace/name, or name in default', () => {
    expect(parseInferencePool('llmd/pool')).toEqual({ namespace: 'llmd', name: 'pool' });
    expect(parseInferencePool('pool')).toEqual({ namespace: 'default', name: 'pool' });
  });

  it('takes --pool-group and --kubeconfig, and refuses an unknown group or a malformed pool', () => {
    const args = parseSidecarArgs(['-pool-group=inference.networking.x-k8s.io', '--kubeconfig', '/k']);
    expect(args.help).toBe(false);
    const o = parseSidecarOptions(args.help ? {} : args.input);
    expect(o.poolGroup).toBe('inference.networking.x-k8s.io');
    expect(o.kubeconfig).toBe('/k');
    expect(parseSidecarOptions({}).poolGroup).toBe('inference.networking.k8s.io');
    expect(() => parseSidecarOptions({ poolGroup: 'example.com' })).toThrow(/--pool-group/);
    expect(() => parseSidecarOptions({ inferencePool: 'a/b/c' })).toThrow(/--inference-pool/);
  });

  it("holds the pool's pod IPs and names, and follows pods, the selector and the pool", async () => {
    fake.apply(POOLS_V1, poolV1('pool', { 'llm-d.ai/inference-serving': 'true' }, [8000], 'llmd'));
    fake.apply(PODS, pod({ name: 'prefill-0', namespace: 'llmd', ip: '10.1.0.1', labels: PREFILL }));
    // Any phase, ready or not, once it has an address.
    fake.apply(
      PODS,
      pod({
        name: 'prefill-1',
        namespace: 'llmd',
        ip: '10.1.0.2',
        labels: PREFILL,
        phase: 'Pending',
        ready: false,
      }),
    );
    fake.apply(PODS, pod({ name: 'no-ip', namespace: 'llmd', labels: PREFILL }));
    fake.apply(PODS, pod({ name: 'elsewhere', namespace: 'other', ip: '10.1.0.9', labels: PREFILL }));
    fake.apply(PODS, pod({ name: 'unlabelled', namespace: 'llmd', ip: '10.1.0.8' }));
    const l = await allowlist();
    expect(l.size).toBe(4);
    for (const h of ['10.1.0.1', '10.1.0.2', 'prefill-0', 'PREFILL-1']) expect(l.allows(h), h).toBe(true);
    for (const h of ['no-ip', '10.1.0.9', 'elsewhere', '10.1.0.8', 'unlabelled'])
      expect(l.allows(h), h).toBe(false);

    await waitFor(() => fake.watchers(PODS) === 1 && fake.watchers(POOLS_V1) === 1);
    fake.remove(PODS, 'llmd', 'prefill-0');
    await waitFor(() => !l.allows('10.1.0.1') && !l.allows('prefill-0'), 5000, 'prefill-0 gone');
    fake.apply(PODS, pod({ name: 'prefill-2', namespace: 'llmd', ip: '10.1.0.3', labels: PREFILL }));
    await waitFor(() => l.allows('10.1.0.3'), 5000, 'prefill-2 allowed');

    // The pool now selects the unlabelled pod only.
    fake.apply(PODS, pod({ name: 'unlabelled', namespace: 'llmd', ip: '10.1.0.8', labels: { tier: 'x' } }));
    fake.apply(POOLS_V1, poolV1('pool', { tier: 'x' }, [8000], 'llmd'));
    await waitFor(() => l.allows('10.1.0.8') && !l.allows('10.1.0.2'), 5000, 'the new selector');

    fake.remove(POOLS_V1, 'llmd', 'pool');
    await waitFor(() => l.size === 0, 5000, 'pool deleted');
  });

  it('watches v1alpha2 pools in inference.networking.x-k8s.io', async () => {
    fake.apply(POOLS_ALPHA, poolAlpha('pool', { app: 'prefill' }, 8000, 'llmd'));
    fake.apply(PODS, pod({ name: 'p', namespace: 'llmd', ip: '10.2.0.1', labels: { app: 'prefill' } }));
    const l = await allowlist('llmd/pool', 'inference.networking.x-k8s.io');
    expect(l.allows('10.2.0.1')).toBe(true);
    expect(fake.lists(POOLS_V1)).toBe(0);
  });

  it('fails to start, naming RBAC and the pool, when the pool cannot be listed', async () => {
    await fake.stop();
    await expect(
      PoolAllowlist.start({
        inferencePool: 'llmd/pool',
        poolGroup: 'inference.networking.k8s.io',
        kubeconfig,
        initialBackoffMs: 10,
        maxBackoffMs: 20,
        syncTimeoutMs: 300,
      }),
    ).rejects.toThrow(/check RBAC permissions .* and that pool 'pool' exists/);
  });
});

describe('llmd sidecar --enable-ssrf-protection --inference-pool', () => {
  it('sends the prefill leg only to pods of the pool, as they come and go', async () => {
    const p = await standIn(prefillOk);
    const d = await standIn(decodeOk);
    fake.apply(POOLS_V1, poolV1('pool', { 'llm-d.ai/inference-serving': 'true' }, [8000], 'llmd'));
    const s = await sidecar({
      modelServerPort: d.port,
      enableSsrfProtection: true,
      inferencePool: 'llmd/pool',
      kubeconfig,
    });
    const hdr = { 'x-prefiller-host-port': `127.0.0.1:${p.port}` };
    expect((await post(s.url, CHAT, hdr)).status).toBe(403);
    expect(p.seen).toHaveLength(0);

    fake.apply(PODS, pod({ name: 'prefill-0', namespace: 'llmd', ip: '127.0.0.1', labels: PREFILL }));
    await waitFor(async () => (await post(s.url, CHAT, hdr)).status === 200, 5000, 'the pod allowed');
    expect(p.seen.length).toBeGreaterThanOrEqual(1);

    fake.remove(PODS, 'llmd', 'prefill-0');
    await waitFor(async () => (await post(s.url, CHAT, hdr)).status === 403, 5000, 'the pod refused');
  });

  it('does not start when the API server cannot be reached', async () => {
    await fake.stop();
    const d = await standIn(decodeOk);
    await expect(
      startSidecar(
        {
          host: '127.0.0.1',
          port: 0,
          modelServerPort: d.port,
          enableSsrfProtection: true,
          inferencePool: 'pool',
          kubeconfig,
          logLevel: 'silent',
        },
        { poolSyncTimeoutMs: 300 },
      ),
    ).rejects.toThrow(/InferencePool default\/pool .* check RBAC/);
  });
});
