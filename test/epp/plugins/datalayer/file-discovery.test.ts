import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/core/errors.js';
import { Datastore } from '../../../../src/epp/datastore/datastore.js';
import { isEndpointDiscovery } from '../../../../src/epp/framework/datalayer.js';
import {
  definition,
  FileDiscoveryPlugin,
  TYPE,
} from '../../../../src/epp/plugins/datalayer/file-discovery.js';
import { waitFor } from '../../../helpers/wait.js';
import { create } from '../../helpers.js';

describe('file-discovery', () => {
  let dir: string;
  let path: string;
  const plugins: FileDiscoveryPlugin[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'llmd-file-discovery-plugin-'));
    path = join(dir, 'endpoints.yaml');
  });
  afterEach(() => {
    for (const p of plugins.splice(0)) p.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function plugin(params: unknown): FileDiscoveryPlugin {
    const p = create<FileDiscoveryPlugin>(definition, params, undefined, 'eps');
    plugins.push(p);
    return p;
  }

  it('is a discovery plugin with strict params', () => {
    expect(TYPE).toBe('file-discovery');
    const p = plugin({ path });
    expect(p.typedName).toEqual({ type: TYPE, name: 'eps' });
    expect(isEndpointDiscovery(p)).toBe(true);
    expect(definition.params.safeParse({}).success).toBe(false);
    expect(definition.params.safeParse({ path, watch: true }).success).toBe(false);
    expect(definition.params.parse({ path })).toEqual({ path, watchFile: true });
  });

  it('loads the file and follows changes by default', async () => {
    writeFileSync(
      path,
      'endpoints:\n  - {name: a, address: 10.0.0.1, port: "8000", labels: {llm-d.ai/role: decode}}\n',
    );
    const ds = new Datastore();
    const p = plugin({ path });
    await p.start(ds);
    expect(ds.list().map((e) => e.meta.hostPort)).toEqual(['10.0.0.1:8000']);
    writeFileSync(
      path,
      'endpoints:\n  - {name: a, address: 10.0.0.1, port: 8000}\n  - {name: b, address: 10.0.0.2, port: 8000}\n',
    );
    await waitFor(() => ds.size === 2, 5000, 'second endpoint');
    expect(ds.get('default/a-rank-0')!.meta.labels).toEqual({});
    p.stop();
  });

  it('reads the file once when watchFile is false', async () => {
    writeFileSync(path, 'endpoints: []\n');
    const ds = new Datastore();
    const p = plugin({ path, watchFile: false });
    await p.start(ds);
    const results: unknown[] = [];
    p.discovery.onReload((r) => results.push(r));
    writeFileSync(path, 'endpoints:\n  - {name: a, address: 10.0.0.1, port: 8000}\n');
    // Nothing watches: the only reload is one asked for by hand.
    expect(p.discovery.reload()).toMatchObject({ ok: true, changed: true });
    expect(results).toHaveLength(1);
  });

  it('fails start-up naming the file when it is invalid', async () => {
    writeFileSync(path, 'endpoints:\n  - {name: a, address: 10.0.0.1}\n');
    const p = plugin({ path });
    await expect(p.start(new Datastore())).rejects.toThrow(ConfigError);
    await expect(p.start(new Datastore())).rejects.toThrow(/endpoints\[0\] \(a\)\.port: Required/);
  });
});
