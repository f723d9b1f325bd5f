import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import { Datastore } from '../../../../src/epp/datastore/datastore.js';
import {
  FileDiscovery,
  parseEndpointsFile,
  type ReloadResult,
} from '../../../../src/epp/datastore/discovery/file.js';
import { waitFor } from '../../../helpers/wait.js';

const TWO = `
endpoints:
  - name: pod-a
    namespace: default
    address: 10.0.0.1
    port: "8000"
    labels:
      llm-d.ai/role: decode
  - name: pod-b
    address: 10.0.0.2
    port: 8001
`;

function ids(ds: Datastore): string[] {
  return ds
    .list()
    .map((e) => e.meta.id)
    .sort();
}

describe('parseEndpointsFile', () => {
  it('reads upstream’s YAML format, port as string or number', () => {
    expect(parseEndpointsFile(TWO, 'f.yaml')).toEqual([
      {
        name: 'pod-a',
        namespace: 'default',
        address: '10.0.0.1',
        port: 8000,
        labels: { 'llm-d.ai/role': 'decode' },
        rank: 0,
      },
      { name: 'pod-b', namespace: 'default', address: '10.0.0.2', port: 8001, labels: {}, rank: 0 },
    ]);
  });

  it('reads JSON, IPv6 addresses, a rank, and labels YAML would type as numbers', () => {
    const json = JSON.stringify({
      endpoints: [
        { name: 'v6', address: 'fd00::1', port: '9000', rank: 1, labels: { version: 2, canary: true } },
      ],
    });
    expect(parseEndpointsFile(json, 'f.json')).toEqual([
      {
        name: 'v6',
        namespace: 'default',
        address: 'fd00::1',
        port: 9000,
        rank: 1,
        labels: { version: '2', canary: 'true' },
      },
    ]);
    expect(parseEndpointsFile('endpoints:\n  - {address: "[::1]", port: 8000}\n', 'f')[0]).toMatchObject({
      address: '::1',
      name: '1-8000',
    });
  });

  it('accepts an empty list', () => {
    expect(parseEndpointsFile('endpoints: []\n', 'f')).toEqual([]);
    expect(parseEndpointsFile('endpoints:\n', 'f')).toEqual([]);
  });

  it.each([
    ['endpoints:\n  - {name: a, port: 8000}\n', /endpoints\[0\] \(a\)\.address: Required/],
    [
      'endpoints:\n  - {name: a, address: 10.0.0.1, port: "80a"}\n',
      /endpoints\[0\] \(a\)\.port: "80a" is not a port/,
    ],
    ['endpoints:\n  - {name: a, address: 10.0.0.1, port: 70000}\n', /port: 70000 is not a port/],
    [
      'endpoints:\n  - {name: a, address: host.local, port: 1}\n',
      /address: "host.local" is not an IPv4 or IPv6/,
    ],
    ['endpoints:\n  - {name: a, adress: 10.0.0.1, port: 1}\n', /Unrecognized key.*adress/],
    ['endpoints:\n  - {name: a/b, address: 10.0.0.1, port: 1}\n', /endpoints\[0\] \(a\/b\)\.name/],
    [
      'endpoints:\n  - {name: a, address: 10.0.0.1, port: 1, labels: {"-x": y}}\n',
      /labels\.-x: has label key "-x"/,
    ],
    [
      'endpoints:\n  - {name: a, address: 10.0.0.1, port: 1}\n  - {name: a, address: 10.0.0.2, port: 2}\n',
      /endpoints\[0\] and endpoints\[1\] are both default\/a-rank-0/,
    ],
    ['endpoints: {name: a}\n', /endpoints: Expected array/],
    ['- a\n- b\n', /expected a mapping with an `endpoints` list/],
    ['', /expected a mapping/],
    ['endpoints: [\n', /not valid YAML or JSON/],
    ['a: 1\na: 2\n', /not valid YAML or JSON/],
  ])('rejects %j naming the entry and field', (text, message) => {
    expect(() => parseEndpointsFile(text, '/etc/eps.yaml')).toThrow(ConfigError);
    expect(() => parseEndpointsFile(text, '/etc/eps.yaml')).toThrow(/^endpoints file \/etc\/eps\.yaml: /);
    expect(() => parseEndpointsFile(text, '/etc/eps.yaml')).toThrow(message);
  });
});

describe('FileDiscovery', () => {
  let dir: string;
  let path: string;
  const running: FileDiscovery[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'llmd-file-discovery-'));
    path = join(dir, 'endpoints.yaml');
  });
  afterEach(() => {
    for (const d of running.splice(0)) d.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function start(opts: Partial<ConstructorParameters<typeof FileDiscovery>[0]> = {}): {
    d: FileDiscovery;
    ds: Datastore;
    results: ReloadResult[];
    ready: Promise<void>;
  } {
    const d = new FileDiscovery({ path, debounceMs: 20, ...opts });
    running.push(d);
    const ds = new Datastore();
    const results: ReloadResult[] = [];
    d.onReload((r) => results.push(r));
    return { d, ds, results, ready: d.start(ds) };
  }

  it('delivers the file’s endpoints on start', async () => {
    writeFileSync(path, TWO);
    const { ds, ready } = start();
    await ready;
    expect(ids(ds)).toEqual(['default/pod-a-rank-0', 'default/pod-b-rank-0']);
  });

  it('fails start-up on a missing or invalid file', async () => {
    await expect(start().ready).rejects.toThrow(/endpoints file .* cannot be read \(ENOENT\)/);
    writeFileSync(path, 'endpoints:\n  - {name: a}\n');
    await expect(start().ready).rejects.toThrow(ConfigError);
  });

  it('adds, updates and removes endpoints when the file is rewritten', async () => {
    writeFileSync(path, TWO);
    const { ds, ready } = start();
    await ready;
    const a = ds.get('default/pod-a-rank-0')!;
    writeFileSync(
      path,
      'endpoints:\n  - {name: pod-a, address: 10.0.0.1, port: 8000, labels: {llm-d.ai/role: prefill}}\n  - {name: pod-c, address: 10.0.0.3, port: 8000}\n',
    );
    await waitFor(() => ids(ds).join() === 'default/pod-a-rank-0,default/pod-c-rank-0', 5000, 'reload');
    expect(ds.get('default/pod-a-rank-0')).toBe(a);
    expect(a.meta.labels).toEqual({ 'llm-d.ai/role': 'prefill' });
  });

  it('follows an editor’s write-to-temp-then-rename', async () => {
    writeFileSync(path, TWO);
    const { ds, ready } = start();
    await ready;
    const tmp = join(dir, '.endpoints.yaml.swp');
    writeFileSync(tmp, 'endpoints:\n  - {name: pod-z, address: 10.0.0.26, port: 8000}\n');
    renameSync(tmp, path);
    await waitFor(() => ids(ds).join() === 'default/pod-z-rank-0', 5000, 'reload after rename');
    // And keeps following the new inode.
    writeFileSync(path, 'endpoints: []\n');
    await waitFor(() => ds.size === 0, 5000, 'second reload');
  });

  it('follows a Kubernetes ConfigMap-style symlink swap', async () => {
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'endpoints.yaml'), TWO);
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'endpoints.yaml'), path);
    const { ds, ready } = start();
    await ready;
    expect(ds.size).toBe(2);
    mkdirSync(join(dir, '..v2'));
    writeFileSync(
      join(dir, '..v2', 'endpoints.yaml'),
      'endpoints:\n  - {name: pod-q, address: 10.0.0.17, port: 8000}\n',
    );
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await waitFor(() => ids(ds).join() === 'default/pod-q-rank-0', 5000, 'reload after the swap');
  });

  it('keeps the last good set when the file turns invalid, and recovers', async () => {
    writeFileSync(path, TWO);
    const { ds, results, ready } = start();
    await ready;
    writeFileSync(path, 'endpoints:\n  - {name: broken, port: nope}\n');
    await waitFor(() => results.some((r) => !r.ok), 5000, 'a failed reload');
    const failed = results.find((r) => !r.ok)!;
    expect(failed.error).toMatch(/endpoints\[0\] \(broken\)/);
    expect(failed.endpoints).toBe(2);
    expect(ds.size).toBe(2);
    writeFileSync(path, 'endpoints:\n  - {name: fixed, address: 10.0.0.5, port: 8000}\n');
    await waitFor(() => ids(ds).join() === 'default/fixed-rank-0', 5000, 'recovery');
  });

  it('keeps the set while the file is gone and reloads when it is back', async () => {
    writeFileSync(path, TWO);
    const { ds, results, ready } = start();
    await ready;
    unlinkSync(path);
    await waitFor(() => results.some((r) => !r.ok && /ENOENT/.test(r.error ?? '')), 5000, 'a failed reload');
    expect(ds.size).toBe(2);
    writeFileSync(path, 'endpoints: []\n');
    await waitFor(() => ds.size === 0, 5000, 'reload of the new file');
  });

  it('does not replace the set when the content did not change', async () => {
    writeFileSync(path, TWO);
    const { ds, results, ready } = start();
    await ready;
    const list = ds.list();
    writeFileSync(path, TWO);
    await waitFor(() => results.length > 0, 5000, 'a reload');
    expect(results.every((r) => r.ok && !r.changed)).toBe(true);
    expect(ds.list()).toBe(list);
  });

  it('notices a change through the stat poll when no event arrives', async () => {
    writeFileSync(path, TWO);
    const { d, ds, ready } = start({ pollIntervalMs: 30 });
    await ready;
    // Make the watcher deaf to simulate a file system that drops events.
    (d as unknown as { watcher: { close(): void } | null }).watcher?.close();
    (d as unknown as { startWatcher: () => void }).startWatcher = () => {};
    writeFileSync(path, 'endpoints: []\n');
    await waitFor(() => ds.size === 0, 5000, 'reload from the poll');
  });

  it('does not watch when watch is false', async () => {
    writeFileSync(path, TWO);
    const { d, ds, results, ready } = start({ watch: false });
    await ready;
    writeFileSync(path, 'endpoints: []\n');
    // No watcher: an explicit reload is the only way the new content gets in.
    expect(results).toEqual([]);
    expect(d.reload()).toEqual({ ok: true, changed: true, endpoints: 0 });
    expect(ds.size).toBe(0);
  });

  it('stops reloading after stop()', async () => {
    writeFileSync(path, TWO);
    const { d, ds, ready } = start();
    await ready;
    d.stop();
    writeFileSync(path, 'endpoints: []\n');
    // reload() still works by hand; the watcher is gone, so the set only changes when asked.
    expect(ds.size).toBe(2);
    d.reload();
    expect(ds.size).toBe(0);
  });
});
