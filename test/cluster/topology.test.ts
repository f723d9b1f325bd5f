/** `llmd up`'s inputs: defaults, the topology file, flags over the file, and clear errors. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { loadTopology } from '../../src/cluster/command.js';
import { isPd, parseFlags, parseTopologyFile } from '../../src/cluster/topology.js';

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'llmd-up-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

describe('defaults', () => {
  it('give 4 decode servers, precise routing and the embedded indexer with no arguments', () => {
    const t = loadTopology({});
    expect(t).toMatchObject({
      model: 'Qwen/Qwen3-8B',
      host: '127.0.0.1',
      port: 8080,
      decode: { replicas: 4, hardware: 'H100', args: [] },
      prefill: { replicas: 0 },
      routing: 'precise',
      indexer: 'embedded',
      redis: null,
      eppConfig: null,
      logLevel: 'warn',
    });
    expect(isPd(t)).toBe(false);
  });

  it('route approximately when the indexer is off', () => {
    expect(loadTopology({ indexer: 'off' }).routing).toBe('approx');
  });

  it('turn P/D on with prefill servers', () => {
    const t = loadTopology({ prefill: '2', decode: '1', port: '0' });
    expect(isPd(t)).toBe(true);
    expect([t.decode.replicas, t.prefill.replicas, t.port]).toEqual([1, 2, 0]);
  });
});

describe('flags', () => {
  it('are coerced from strings and validated', () => {
    expect(parseFlags({ decode: '3', port: '9000', startTimeout: '5000' })).toEqual({
      decode: 3,
      port: 9000,
      startTimeout: 5000,
    });
  });

  it.each([
    [{ decode: '0' }, /--decode: must be at least 1/],
    [{ decode: 'two' }, /--decode: must be a number/],
    [{ prefill: '-1' }, /--prefill: must be at least 0/],
    [{ decode: '1.5' }, /--decode: must be an integer/],
    [{ port: '70000' }, /--port: must be a port in 0..65535/],
    [{ routing: 'fastest' }, /--routing: Invalid enum value/],
    [{ indexer: 'remote' }, /--indexer: Invalid enum value/],
    [{ redis: 'not a url' }, /--redis: must be redis:\/\/host:port/],
    [{ logLevel: 'loud' }, /--log-level: Invalid enum value/],
  ])('refuse %o', (flags, message) => {
    expect(() => loadTopology(flags)).toThrow(ConfigError);
    expect(() => loadTopology(flags)).toThrow(message);
  });

  it.each([
    [{ indexer: 'off', routing: 'precise' }, /--routing precise needs the KV-cache indexer/],
    [{ indexer: 'standalone', routing: 'approx' }, /--indexer standalone serves precise routing only/],
    [{ redis: 'redis://127.0.0.1:6379', routing: 'load' }, /--redis holds the KV-cache index/],
    [{ redis: 'redis://127.0.0.1:6379', indexer: 'off' }, /--redis holds the KV-cache index/],
    [{ config: 'x.yaml', routing: 'random' }, /--config and --routing exclude each other/],
  ])('refuse the combination %o', (flags, message) => {
    expect(() => loadTopology(flags)).toThrow(message);
  });

  it('read the --config file, and name it when it is missing', () => {
    const d = dir({ 'epp.yaml': 'kind: EndpointPickerConfig\n' });
    const t = loadTopology({ config: 'epp.yaml' }, d);
    expect(t.eppConfig).toEqual({ path: join(d, 'epp.yaml'), text: 'kind: EndpointPickerConfig\n' });
    expect(() => loadTopology({ config: 'nope.yaml' }, d)).toThrow(/--config .*nope.yaml/);
  });
});

describe('topology file', () => {
  const FILE = `
model: Qwen/Qwen3-0.6B
hardware: L40S
port: 0
decode: { replicas: 2, args: [--num-gpu-blocks-override, "512"] }
prefill: { replicas: 1, hardware: H200 }
indexer: standalone
redis: redis://127.0.0.1:6390
logLevel: info
config: configs/epp.yaml
epp: { args: [--seed, "7"] }
`;

  it('sets every field, with paths relative to the file', () => {
    const d = dir({ 'topology.yaml': FILE });
    const cfgDir = dir({ 'epp.yaml': 'kind: EndpointPickerConfig\n' });
    const text = FILE.replace('configs/epp.yaml', join(cfgDir, 'epp.yaml'));
    writeFileSync(join(d, 'topology.yaml'), text);
    const t = loadTopology({ file: 'topology.yaml' }, d);
    expect(t).toMatchObject({
      model: 'Qwen/Qwen3-0.6B',
      port: 0,
      decode: { replicas: 2, hardware: 'L40S', args: ['--num-gpu-blocks-override', '512'] },
      prefill: { replicas: 1, hardware: 'H200', args: [] },
      indexer: 'standalone',
      redis: 'redis://127.0.0.1:6390',
      logLevel: 'info',
      eppArgs: ['--seed', '7'],
    });
    expect(t.eppConfig!.path).toBe(join(cfgDir, 'epp.yaml'));
  });

  it('resolves a relative config path against its own folder, and flags override it', () => {
    const d = dir({
      'topology.yaml': 'decode: 3\nconfig: epp.yaml\n',
      'epp.yaml': 'kind: EndpointPickerConfig\n',
    });
    const t = loadTopology({ file: join(d, 'topology.yaml'), decode: '1', port: '0' }, '/');
    expect(t.eppConfig!.path).toBe(join(d, 'epp.yaml'));
    expect(t.decode.replicas).toBe(1);
    expect(t.port).toBe(0);
  });

  it('accepts a bare count per role and an empty file', () => {
    expect(parseTopologyFile('decode: 2\nprefill: 1\n')).toEqual({ decode: 2, prefill: 1 });
    expect(parseTopologyFile('')).toEqual({});
  });

  it.each([
    ['decode: 0\n', /topology.yaml: decode: must be at least 1/],
    ['decode: { replicas: 2, gpus: 4 }\n', /topology.yaml: decode: Unrecognized key\(s\) in object: 'gpus'/],
    ['routing: fastest\n', /topology.yaml: routing: Invalid enum value/],
    ['prefil: 1\n', /topology.yaml: \(top\): Unrecognized key\(s\) in object: 'prefil'/],
    ['decode: [1\n', /topology.yaml: not valid YAML/],
    ['port: 1\nport: 2\n', /topology.yaml: not valid YAML/],
  ])('refuses %j', (text, message) => {
    expect(() => parseTopologyFile(text, 'topology.yaml')).toThrow(ConfigError);
    expect(() => parseTopologyFile(text, 'topology.yaml')).toThrow(message);
  });

  it('names a file that cannot be read', () => {
    expect(() => loadTopology({ file: '/nonexistent/topology.yaml' })).toThrow(/-f \/nonexistent/);
  });
});
