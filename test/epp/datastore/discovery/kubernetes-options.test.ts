/**
 * `llmd epp`'s Kubernetes options as startEpp checks them: one source of endpoints, a selector with its
 * ports, a known pool group; and an EPP that follows an InferencePool in-process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startEpp, type EppOptionsInput, type RunningEpp } from '../../../../src/epp/epp.js';
import {
  PODS,
  POOLS_V1,
  pod,
  poolV1,
  startFakeKubeApi,
  type FakeKubeApi,
} from '../../../helpers/kube-api.js';
import { waitFor } from '../../../helpers/wait.js';

const base: EppOptionsInput = {
  gatewayHost: '127.0.0.1',
  gatewayPort: 0,
  metricsPort: null,
  logLevel: 'silent',
};
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

describe('startEpp Kubernetes options', () => {
  it.each<[EppOptionsInput, RegExp]>([
    [{ poolName: 'p', endpointSelector: 'a=b', endpointTargetPorts: [8000] }, /mutually exclusive/],
    [{ endpointSelector: 'a=b' }, /--endpoint-selector needs --endpoint-target-ports/],
    [{ endpointTargetPorts: [8000] }, /only used with --endpoint-selector/],
    [{ endpointSelector: 'a=b', endpointTargetPorts: [1, 2, 3, 4, 5, 6, 7, 8, 9] }, /at most 8/],
    [{ endpointSelector: 'a=b', endpointTargetPorts: [8000, 8000] }, /unique/],
    [{ endpointSelector: 'a in b', endpointTargetPorts: [8000] }, /--endpoint-selector "a in b"/],
    [{ poolName: 'p', poolGroup: 'example.com' }, /--pool-group "example.com"/],
    [{ poolName: 'p', endpoints: ['127.0.0.1:8000'] }, /one source; got --pool-name and --endpoint/],
  ])('refuses %j', async (opts, message) => {
    await expect(startEpp({ ...base, ...opts })).rejects.toThrow(message);
  });

  it('fails cleanly on a kubeconfig that cannot be read', async () => {
    await expect(startEpp({ ...base, poolName: 'p', kubeconfig: '/nonexistent/kubeconfig' })).rejects.toThrow(
      /--kubeconfig: cannot load \/nonexistent\/kubeconfig/,
    );
  });

  it('fails at start-up on a kubeconfig whose cluster cannot be used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'llmd-epp-k8s-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'config');
    writeFileSync(
      path,
      'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]\n' +
        'users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
    );
    await expect(startEpp({ ...base, poolName: 'p', kubeconfig: path })).rejects.toThrow(
      /--kubeconfig: cannot reach cluster http:\/\/127\.0\.0\.1:1: HTTP protocol is not allowed/,
    );
  });

  it("follows the pool's pods, and names the pool metrics after it", async () => {
    const fake: FakeKubeApi = await startFakeKubeApi();
    const dir = mkdtempSync(join(tmpdir(), 'llmd-epp-k8s-'));
    cleanup.push(async () => {
      await fake.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    fake.apply(POOLS_V1, poolV1('llmd', { app: 'vllm' }, [8000], 'llmd'));
    fake.apply(PODS, pod({ name: 'a', namespace: 'llmd', ip: '10.0.0.1', labels: { app: 'vllm' } }));
    const epp: RunningEpp = await startEpp({
      ...base,
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      poolName: 'llmd',
      poolNamespace: 'llmd',
      kubeconfig: fake.writeKubeconfig(dir),
    });
    cleanup.push(() => epp.close());
    expect(epp.datastore.list().map((e) => e.meta.id)).toEqual(['llmd/a-rank-0']);
    const metrics = await (await fetch(`${epp.metricsUrl!}/metrics`)).text();
    expect(metrics).toMatch(/name="llmd"/);
    await waitFor(() => fake.watchers(PODS) === 1);
    fake.remove(PODS, 'llmd', 'a');
    await waitFor(() => epp.datastore.size === 0, 5000, 'a removed');
  });
});
