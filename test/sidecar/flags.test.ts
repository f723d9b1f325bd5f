import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { parseSidecarArgs, sidecarHelp, SIDECAR_FLAGS } from '../../src/sidecar/flags.js';
import { parseSidecarOptions, type SidecarOptionsInput } from '../../src/sidecar/options.js';

function input(args: string[], env: NodeJS.ProcessEnv = {}): SidecarOptionsInput {
  const r = parseSidecarArgs(args, env);
  if (r.help) throw new Error('unexpected help');
  return r.input;
}

function options(args: string[], env: NodeJS.ProcessEnv = {}) {
  return parseSidecarOptions(input(args, env));
}

describe('llmd sidecar flags', () => {
  it("reads the seed's Go-style line verbatim", () => {
    const o = options('-port=8000 -vllm-port=8001 -connector=nixlv2 -enable-ssrf-protection=true'.split(' '));
    expect(o.port).toBe(8000);
    expect(o.modelServerPort).toBe(8001);
    expect(o.connector).toBe('nixlv2');
    expect(o.enableSsrfProtection).toBe(true);
    const r = parseSidecarArgs('-port=8000 -vllm-port=8001 -connector=nixlv2'.split(' '));
    expect(!r.help && r.warnings).toEqual([
      '--vllm-port is deprecated; use --model-server-port',
      '--connector is deprecated; use --kv-connector',
    ]);
  });

  it("has llm-d's defaults", () => {
    const o = options([]);
    expect(o).toMatchObject({
      port: 8000,
      modelServerPort: 8200,
      connector: 'nixlv2',
      enableSsrfProtection: false,
      secureProxy: false,
      enableTls: [],
      tlsInsecureSkipVerify: [],
      enablePrefillerSampling: false,
      dataParallelSize: 1,
      prefillMaxRetries: 0,
      prefillRetryBackoffMs: 200,
      prefillTimeoutMs: 60_000,
      prefillFailurePolicy: 'fallback',
      sglangBootstrapPort: 8998,
      logLevel: 'info',
    });
  });

  it('takes one or two dashes, = or a separate value', () => {
    for (const args of [['--port', '9000'], ['-port', '9000'], ['--port=9000'], ['-port=9000']]) {
      expect(options(args).port, args.join(' ')).toBe(9000);
    }
    expect(options(['--model-server-port', '8300']).modelServerPort).toBe(8300);
    expect(options(['-vllm-port', '8300']).modelServerPort).toBe(8300);
    expect(options(['--port', '0x1f40']).port).toBe(8000);
  });

  it("reads booleans as Go does: bare, =value in Go's spellings, and a following true/false", () => {
    expect(options(['-enable-ssrf-protection']).enableSsrfProtection).toBe(true);
    for (const v of ['1', 't', 'T', 'TRUE', 'true', 'True'])
      expect(options([`--secure-proxy=${v}`]).secureProxy).toBe(true);
    for (const v of ['0', 'f', 'F', 'FALSE', 'false', 'False'])
      expect(options([`-secure-proxy=${v}`]).secureProxy).toBe(false);
    expect(options(['--enable-prefiller-sampling', 'false', '--port', '1']).enablePrefillerSampling).toBe(
      false,
    );
    expect(options(['--enable-prefiller-sampling', '--port', '1']).enablePrefillerSampling).toBe(true);
    expect(options(['--no-secure-proxy']).secureProxy).toBe(false);
    expect(() => options(['--secure-proxy=maybe'])).toThrow(/--secure-proxy: "maybe" is not a boolean/);
  });

  it('accepts connectors by their names and aliases', () => {
    expect(options(['--kv-connector=shared-storage']).connector).toBe('shared-storage');
    expect(options(['--connector', 'lmcache']).connector).toBe('shared-storage');
    expect(options(['--kv-connector', 'sglang']).connector).toBe('sglang');
    expect(options(['-connector=nixl']).connector).toBe('nixl');
    expect(() => options(['--kv-connector=mooncake'])).toThrow(/--kv-connector/);
  });

  it('reads stage lists repeated or comma-separated, and the deprecated booleans into them', () => {
    expect(options(['--enable-tls=prefiller,decoder']).enableTls).toEqual(['prefiller', 'decoder']);
    expect(options(['--enable-tls', 'prefiller', '--enable-tls', 'decoder']).enableTls).toEqual([
      'prefiller',
      'decoder',
    ]);
    expect(options(['-prefiller-use-tls', '-decoder-tls-insecure-skip-verify=true'])).toMatchObject({
      enableTls: ['prefiller'],
      tlsInsecureSkipVerify: ['decoder'],
    });
    expect(() => options(['--enable-tls=router'])).toThrow(/unknown stage "router"/);
  });

  it('reads durations the Go way', () => {
    expect(options(['--prefill-retry-backoff=1.5s', '--prefill-timeout', '250ms'])).toMatchObject({
      prefillRetryBackoffMs: 1500,
      prefillTimeoutMs: 250,
    });
    expect(() => options(['--prefill-timeout=200'])).toThrow(/not a duration/);
    expect(() => options(['--prefill-timeout=0s'])).toThrow(/--prefill-timeout/);
  });

  it('reads the allowlist and the pool, from flags or the environment', () => {
    expect(
      options(['--allowed-prefill-hosts=10.0.0.1, p1.ns.svc', '--allowed-prefill-hosts', '[::1]'])
        .allowedPrefillHosts,
    ).toEqual(['10.0.0.1', 'p1.ns.svc', '[::1]']);
    expect(options([], { INFERENCE_POOL: 'ns/pool' }).inferencePool).toBe('ns/pool');
    expect(options(['--inference-pool=mine'], { INFERENCE_POOL: 'ns/pool' }).inferencePool).toBe('mine');
    expect(options([], { INFERENCE_POOL_NAMESPACE: 'ns', INFERENCE_POOL_NAME: 'p' }).inferencePool).toBe(
      'ns/p',
    );
    expect(options([], { ENABLE_PREFILLER_SAMPLING: 'true' }).enablePrefillerSampling).toBe(true);
    expect(
      options(['--enable-prefiller-sampling=false'], { ENABLE_PREFILLER_SAMPLING: 'true' })
        .enablePrefillerSampling,
    ).toBe(false);
    expect(options([], { SGLANG_BOOTSTRAP_PORT: '9001' }).sglangBootstrapPort).toBe(9001);
    expect(() => options([], { SGLANG_BOOTSTRAP_PORT: 'x' })).toThrow(/SGLANG_BOOTSTRAP_PORT/);
    expect(options(['--cert-path='])).not.toHaveProperty('certPath');
  });

  it('maps the other logging flags onto the log level', () => {
    expect(options(['--zap-log-level=debug']).logLevel).toBe('debug');
    expect(options(['-v=4']).logLevel).toBe('debug');
    expect(options(['-v', '6']).logLevel).toBe('trace');
    expect(() => options(['--log-level=loud'])).toThrow(/--log-level/);
  });

  it('rejects unknown flags, missing values, stray arguments and bad values, naming the flag', () => {
    const cases: [string[], RegExp][] = [
      [['--bogus'], /flag provided but not defined: -bogus/],
      [['--port'], /flag needs an argument: --port/],
      [['--port', 'x'], /--port: "x" is not an integer/],
      [['--port', '70000'], /--port:/],
      [['serve'], /unexpected argument "serve"/],
      [['--', 'x'], /unexpected argument "x"/],
      [['--data-parallel-size=0'], /--data-parallel-size/],
      [['--port=65535', '--data-parallel-size=2'], /--port: port range/],
      [['--prefill-max-retries=2', '--prefill-retry-backoff=0'], /--prefill-retry-backoff: must be positive/],
      [['--prefill-failure-policy=maybe'], /--prefill-failure-policy/],
      [['--max-request-body-size-mb=x'], /not a number/],
    ];
    for (const [args, re] of cases) {
      let err: unknown;
      try {
        options(args);
      } catch (e) {
        err = e;
      }
      expect(err, args.join(' ')).toBeInstanceOf(ConfigError);
      expect((err as Error).message, args.join(' ')).toMatch(re);
    }
  });

  it('answers -h, -help and --help with a help text that lists every flag', () => {
    for (const h of ['-h', '--help', '-help']) expect(parseSidecarArgs(['--port=1', h]).help).toBe(true);
    const text = sidecarHelp();
    for (const f of SIDECAR_FLAGS) expect(text).toContain(`--${f.name}`);
    expect(text).toMatch(/secure-proxy[\s\S]*llmd epp/);
  });
});
