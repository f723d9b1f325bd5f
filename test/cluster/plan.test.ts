/** The processes `llmd up` starts: commands, ports, environment and stages, without starting any. */
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadTopology } from '../../src/cluster/command.js';
import {
  childLogLevel,
  freePorts,
  INDEXER_URL_PLACEHOLDER,
  plan,
  portsNeeded,
  substitute,
  type ComponentSpec,
} from '../../src/cluster/plan.js';

const PORTS = Array.from({ length: 64 }, (_, i) => 41000 + i);

function flag(c: ComponentSpec, name: string): string | undefined {
  const i = c.args.indexOf(name);
  return i < 0 ? undefined : c.args[i + 1];
}

function byName(components: readonly ComponentSpec[], name: string): ComponentSpec {
  return components.find((c) => c.name === name)!;
}

describe('plan', () => {
  it('starts 4 decode servers and the EPP with precise routing by default', () => {
    const t = loadTopology({});
    const p = plan(t, PORTS);
    expect(p.components.map((c) => c.name)).toEqual(['decode-0', 'decode-1', 'decode-2', 'decode-3', 'epp']);
    expect(p.precise).toBe(true);
    expect(p.zmqEndpoint).toBe('tcp://127.0.0.1:41000');
    const d0 = byName(p.components, 'decode-0');
    expect(d0.args.slice(0, 2)).toEqual(['serve', 'Qwen/Qwen3-8B']);
    expect(flag(d0, '--port')).toBe('41001');
    expect(flag(d0, '--host')).toBe('127.0.0.1');
    expect(d0.args).toContain('--enable-prompt-tokens-details');
    expect(JSON.parse(flag(d0, '--kv-events-config')!)).toEqual({
      enable_kv_cache_events: true,
      publisher: 'zmq',
      endpoint: 'tcp://127.0.0.1:41000',
      topic: 'kv@127.0.0.1:41001@Qwen/Qwen3-8B',
    });
    expect(flag(d0, '--kv-transfer-config')).toBeUndefined();
    const epp = byName(p.components, 'epp');
    expect(flag(epp, '--gateway-port')).toBe('8080');
    expect(flag(epp, '--metrics-port')).toBe('0');
    expect(epp.args.filter((a) => a.startsWith('name=decode-'))).toEqual([
      'name=decode-0,address=127.0.0.1,port=41001',
      'name=decode-1,address=127.0.0.1,port=41002',
      'name=decode-2,address=127.0.0.1,port=41003',
      'name=decode-3,address=127.0.0.1,port=41004',
    ]);
    const cfg = parseYaml(flag(epp, '--config-text')!) as {
      plugins: { type: string; parameters?: unknown }[];
    };
    expect(cfg.plugins.find((x) => x.type === 'precise-prefix-cache-producer')!.parameters).toMatchObject({
      kvEventsConfig: { zmqEndpoint: 'tcp://127.0.0.1:41000', discoverPods: false },
    });
    // The servers come up before the EPP that scrapes them.
    expect(d0.stage).toBeLessThan(epp.stage);
  });

  it('puts a sidecar before each decode server with P/D, and labels the roles', () => {
    const p = plan(loadTopology({ decode: '2', prefill: '1', port: '0' }), PORTS);
    expect(p.components.map((c) => c.name)).toEqual([
      'decode-0',
      'decode-0-sidecar',
      'decode-1',
      'decode-1-sidecar',
      'prefill-0',
      'epp',
    ]);
    const d0 = byName(p.components, 'decode-0');
    const s0 = byName(p.components, 'decode-0-sidecar');
    const p0 = byName(p.components, 'prefill-0');
    expect(JSON.parse(flag(d0, '--kv-transfer-config')!)).toEqual({
      kv_connector: 'NixlConnector',
      kv_role: 'kv_both',
    });
    expect(JSON.parse(flag(p0, '--kv-transfer-config')!)).toMatchObject({ kv_role: 'kv_producer' });
    expect(d0.env).toMatchObject({
      VLLM_NIXL_SIDE_CHANNEL_HOST: '127.0.0.1',
      VLLM_NIXL_SIDE_CHANNEL_PORT: '0',
    });
    expect(s0.args).toContain(`--model-server-port=${flag(d0, '--port')}`);
    expect(s0.stage).toBeGreaterThan(d0.stage);
    // The EPP knows the decoder by its sidecar; its KV events say so too.
    const sidecarPort = flag(s0, '--port')!;
    expect(JSON.parse(flag(d0, '--kv-events-config')!).topic).toBe(
      `kv@127.0.0.1:${sidecarPort}@Qwen/Qwen3-8B`,
    );
    const epp = byName(p.components, 'epp');
    expect(epp.args).toContain(
      `name=decode-0,address=127.0.0.1,port=${sidecarPort},labels=llm-d.ai/role=decode`,
    );
    expect(epp.args).toContain(
      `name=prefill-0,address=127.0.0.1,port=${flag(p0, '--port')},labels=llm-d.ai/role=prefill`,
    );
    expect(epp.port).toBeNull();
    expect(p.eppConfig).toContain('disagg-profile-handler');
    // Every port is used once.
    const used = p.components.map((c) => c.port).filter((x) => x !== null);
    expect(new Set([...used, 41000]).size).toBe(used.length + 1);
    expect(portsNeeded(loadTopology({ decode: '2', prefill: '1' }))).toBe(6);
  });

  it('runs a standalone indexer first and points the EPP at it', () => {
    const p = plan(
      loadTopology({ indexer: 'standalone', redis: 'redis://127.0.0.1:6390', decode: '1' }),
      PORTS,
    );
    const ix = byName(p.components, 'kv-indexer');
    expect(ix.stage).toBe(0);
    expect(flag(ix, '--zmq-endpoint')).toBe('tcp://127.0.0.1:41000');
    expect(flag(ix, '--redis')).toBe('redis://127.0.0.1:6390');
    expect(flag(ix, '--port')).toBe('0');
    const epp = byName(p.components, 'epp');
    expect(flag(epp, '--config-text')).toContain(`url: ${INDEXER_URL_PLACEHOLDER}`);
    const wired = substitute(epp.args, INDEXER_URL_PLACEHOLDER, 'http://127.0.0.1:5000');
    expect(wired.join(' ')).toContain('url: http://127.0.0.1:5000');
  });

  it('publishes no KV events without precise routing', () => {
    for (const flags of [{ indexer: 'off' }, { routing: 'random' }, { routing: 'load' }]) {
      const p = plan(loadTopology(flags), PORTS);
      expect(p.precise).toBe(false);
      expect(p.components.some((c) => c.args.includes('--kv-events-config'))).toBe(false);
    }
  });

  it('passes the log level and extra args through', () => {
    const p = plan(loadTopology({ logLevel: 'debug', hardware: 'B200', model: 'Qwen/Qwen3-0.6B' }), PORTS);
    const d0 = byName(p.components, 'decode-0');
    expect(flag(d0, '--log-level')).toBe('debug');
    expect(flag(d0, '--hardware')).toBe('B200');
    expect(d0.args[1]).toBe('Qwen/Qwen3-0.6B');
    expect(childLogLevel('warn')).toBe('info');
    expect(childLogLevel('silent')).toBe('info');
    expect(childLogLevel('trace')).toBe('trace');
  });

  it('refuses too few ports', () => {
    expect(() => plan(loadTopology({}), [1, 2])).toThrow(/needs 5 ports/);
  });
});

describe('freePorts', () => {
  it('returns distinct bindable ports', async () => {
    const ports = await freePorts(8);
    expect(new Set(ports).size).toBe(8);
    for (const p of ports) expect(p).toBeGreaterThan(0);
  });
});
