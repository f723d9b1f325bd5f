/**
 * `llmd sidecar`'s command line, read the way llm-d's Go binaries read theirs, so their manifests and
 * scripts work unchanged: `-flag` or `--flag`, a value as `-flag=value` or `-flag value`, booleans bare
 * (`-flag`) or with `=true|false` (and Go's other spellings: 1, t, T, TRUE, ...), lists repeatable or
 * comma-separated. Deprecated upstream names are accepted as aliases. Environment variables llm-d reads
 * (`INFERENCE_POOL`, `ENABLE_PREFILLER_SAMPLING`, ...) apply when the flag is not given.
 */
import { ConfigError } from '../core/errors.js';
import { parseDurationMs } from '../core/duration.js';
import { LOG_LEVELS } from '../core/log.js';
import type { SidecarOptionsInput, TlsStage } from './options.js';

type Kind = 'bool' | 'string' | 'int' | 'number' | 'duration' | 'list';

interface FlagSpec {
  readonly name: string;
  readonly aliases?: readonly string[];
  readonly kind: Kind;
  readonly value?: string;
  readonly help: string;
  /** Shown as `(default …)`. */
  readonly def?: string;
  readonly env?: string;
  /** Applies a parsed value to the options being built. */
  readonly apply: (o: Building, v: FlagValue) => void;
}

type FlagValue = boolean | string | number | string[];

/** Options under construction, plus what only the combination of several flags decides. */
interface Building {
  input: Record<string, unknown>;
  tls: Map<TlsStage, boolean>;
  skipVerify: Map<TlsStage, boolean>;
  poolNamespace?: string;
  poolName?: string;
  warnings: string[];
}

const set =
  (field: keyof SidecarOptionsInput) =>
  (o: Building, v: FlagValue): void => {
    // `-flag=` is Go's way of leaving a string flag at its zero value: unset.
    if (v === '') delete o.input[field];
    else o.input[field] = v;
  };

const stageFlag =
  (which: 'tls' | 'skipVerify', stage: TlsStage) =>
  (o: Building, v: FlagValue): void => {
    o[which].set(stage, v === true);
  };

const stageList =
  (which: 'tls' | 'skipVerify') =>
  (o: Building, v: FlagValue): void => {
    for (const s of v as string[]) {
      if (s !== 'prefiller' && s !== 'decoder' && s !== 'encoder') {
        throw new ConfigError(
          `${which === 'tls' ? '--enable-tls' : '--tls-insecure-skip-verify'}: unknown stage ${JSON.stringify(s)} (prefiller, decoder, encoder)`,
          which === 'tls' ? 'enableTls' : 'tlsInsecureSkipVerify',
        );
      }
      o[which].set(s, true);
    }
  };

export const SIDECAR_FLAGS: readonly FlagSpec[] = [
  {
    name: 'port',
    kind: 'int',
    value: 'port',
    def: '8000',
    help: 'port to listen on (0 picks a free one)',
    apply: set('port'),
  },
  {
    name: 'host',
    kind: 'string',
    value: 'addr',
    def: '0.0.0.0',
    help: 'address to listen on',
    apply: set('host'),
  },
  {
    name: 'model-server-port',
    aliases: ['vllm-port'],
    kind: 'int',
    value: 'port',
    def: '8200',
    help: "the local model server's port (llm-d's router sidecar default; older sidecars used 8001)",
    apply: set('modelServerPort'),
  },
  {
    name: 'model-server-host',
    kind: 'string',
    value: 'addr',
    def: '127.0.0.1',
    help: 'address of the local model server',
    apply: set('modelServerHost'),
  },
  {
    name: 'kv-connector',
    aliases: ['connector'],
    kind: 'string',
    value: 'name',
    def: 'nixlv2',
    help: 'P/D protocol: nixlv2 | nixl (v1, deprecated) | shared-storage (alias lmcache) | sglang',
    apply: set('connector'),
  },
  {
    name: 'enable-ssrf-protection',
    kind: 'bool',
    def: 'false',
    help: 'only contact prefillers in the allowlist (403 otherwise)',
    apply: set('enableSsrfProtection'),
  },
  {
    name: 'allowed-prefill-hosts',
    kind: 'list',
    value: 'hosts',
    help: 'the SSRF allowlist: comma-separated IPs and host names (any port on them is allowed)',
    apply: (o, v) => {
      const prev = (o.input.allowedPrefillHosts as string[] | undefined) ?? [];
      o.input.allowedPrefillHosts = [...prev, ...(v as string[])];
    },
  },
  {
    name: 'inference-pool',
    kind: 'string',
    value: 'ns/name',
    env: 'INFERENCE_POOL',
    help: 'with --enable-ssrf-protection: the InferencePool whose pods are the allowlist (namespace/name or name)',
    apply: set('inferencePool'),
  },
  {
    name: 'pool-group',
    kind: 'string',
    value: 'group',
    def: 'inference.networking.k8s.io',
    help: 'the InferencePool API group: inference.networking.k8s.io (v1) or inference.networking.x-k8s.io (v1alpha2)',
    apply: set('poolGroup'),
  },
  {
    name: 'kubeconfig',
    kind: 'string',
    value: 'path',
    help: 'kubeconfig for the InferencePool watch (default: KUBECONFIG, ~/.kube/config or in-cluster)',
    apply: set('kubeconfig'),
  },
  {
    name: 'inference-pool-namespace',
    kind: 'string',
    value: 'ns',
    env: 'INFERENCE_POOL_NAMESPACE',
    help: 'deprecated: use --inference-pool',
    apply: (o, v) => {
      o.poolNamespace = v as string;
    },
  },
  {
    name: 'inference-pool-name',
    kind: 'string',
    value: 'name',
    env: 'INFERENCE_POOL_NAME',
    help: 'deprecated: use --inference-pool',
    apply: (o, v) => {
      o.poolName = v as string;
    },
  },
  {
    name: 'secure-proxy',
    kind: 'bool',
    def: 'false',
    help:
      'serve HTTPS (with --cert-path, else a self-signed certificate). llm-d defaults ' +
      'this to true but its manifests turn it off; here it is off so that plain-HTTP clients such as ' +
      '`llmd epp` and `llmd up` reach the sidecar out of the box',
    apply: set('secureProxy'),
  },
  {
    name: 'cert-path',
    kind: 'string',
    value: 'dir',
    help: 'directory holding tls.crt and tls.key for --secure-proxy',
    apply: set('certPath'),
  },
  {
    name: 'enable-tls',
    kind: 'list',
    value: 'stages',
    help: 'stages reached over HTTPS: prefiller, decoder (repeatable or comma-separated)',
    apply: stageList('tls'),
  },
  {
    name: 'tls-insecure-skip-verify',
    kind: 'list',
    value: 'stages',
    help: 'stages whose certificate is not verified: prefiller, decoder',
    apply: stageList('skipVerify'),
  },
  {
    name: 'prefiller-use-tls',
    kind: 'bool',
    help: 'deprecated: --enable-tls=prefiller',
    apply: stageFlag('tls', 'prefiller'),
  },
  {
    name: 'decoder-use-tls',
    kind: 'bool',
    help: 'deprecated: --enable-tls=decoder',
    apply: stageFlag('tls', 'decoder'),
  },
  {
    name: 'prefiller-tls-insecure-skip-verify',
    kind: 'bool',
    help: 'deprecated: --tls-insecure-skip-verify=prefiller',
    apply: stageFlag('skipVerify', 'prefiller'),
  },
  {
    name: 'decoder-tls-insecure-skip-verify',
    kind: 'bool',
    help: 'deprecated: --tls-insecure-skip-verify=decoder',
    apply: stageFlag('skipVerify', 'decoder'),
  },
  {
    name: 'enable-prefiller-sampling',
    kind: 'bool',
    def: 'false',
    env: 'ENABLE_PREFILLER_SAMPLING',
    help: 'pick a random prefiller from the header list instead of the first',
    apply: set('enablePrefillerSampling'),
  },
  {
    name: 'data-parallel-size',
    kind: 'int',
    value: 'n',
    def: '1',
    help: 'listen on port..port+n-1, listener i serving model-server-port+i',
    apply: set('dataParallelSize'),
  },
  {
    name: 'prefill-max-retries',
    kind: 'int',
    value: 'n',
    def: '0',
    help: 'retries of a prefill answered 502/503/504 or unreachable',
    apply: set('prefillMaxRetries'),
  },
  {
    name: 'prefill-retry-backoff',
    kind: 'duration',
    value: 'duration',
    def: '200ms',
    help: 'pause between prefill retries',
    apply: set('prefillRetryBackoffMs'),
  },
  {
    name: 'prefill-timeout',
    kind: 'duration',
    value: 'duration',
    def: '60s',
    help: 'bound on the whole prefill stage, retries included',
    apply: set('prefillTimeoutMs'),
  },
  {
    name: 'prefill-failure-policy',
    kind: 'string',
    value: 'policy',
    def: 'fallback',
    help:
      'when the prefiller is unreachable, too slow or answers 5xx: fallback = decode locally with the ' +
      "client's body; fail = relay the error (4xx answers are always relayed)",
    apply: set('prefillFailurePolicy'),
  },
  {
    name: 'sglang-bootstrap-port',
    kind: 'int',
    value: 'port',
    def: '8998',
    env: 'SGLANG_BOOTSTRAP_PORT',
    help: "the prefillers' SGLang bootstrap port (sglang connector)",
    apply: set('sglangBootstrapPort'),
  },
  {
    name: 'seed',
    kind: 'int',
    value: 'n',
    def: '0',
    help: 'seed of the prefiller sampling',
    apply: set('seed'),
  },
  {
    name: 'max-request-body-size-mb',
    kind: 'number',
    value: 'mb',
    def: '64',
    help: 'largest accepted request body',
    apply: (o, v) => {
      o.input.maxRequestBodyBytes = Math.floor((v as number) * 1024 * 1024);
    },
  },
  {
    name: 'log-level',
    aliases: ['zap-log-level'],
    kind: 'string',
    value: 'level',
    def: 'info',
    help: `log level: ${LOG_LEVELS.join(', ')}`,
    apply: set('logLevel'),
  },
  {
    name: 'v',
    kind: 'int',
    value: 'n',
    help: 'klog verbosity, as the old sidecar took it: 4 = debug, 5 and up = trace',
    apply: (o, v) => {
      const n = v as number;
      if (n >= 4) o.input.logLevel = n >= 5 ? 'trace' : 'debug';
    },
  },
];

/** Upstream flags that were renamed; using one logs a warning once. */
const DEPRECATED = new Set([
  'vllm-port',
  'connector',
  'inference-pool-namespace',
  'inference-pool-name',
  'prefiller-use-tls',
  'decoder-use-tls',
  'prefiller-tls-insecure-skip-verify',
  'decoder-tls-insecure-skip-verify',
]);

const BY_NAME = new Map<string, FlagSpec>();
for (const f of SIDECAR_FLAGS) {
  BY_NAME.set(f.name, f);
  for (const a of f.aliases ?? []) BY_NAME.set(a, f);
}

export type SidecarArgs =
  | { readonly help: true }
  | { readonly help: false; readonly input: SidecarOptionsInput; readonly warnings: readonly string[] };

/** Go's `strconv.ParseBool`. */
function parseBool(text: string): boolean | null {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return null;
}

function convert(flag: string, spec: FlagSpec, text: string): FlagValue {
  const bad = (what: string): never => {
    throw new ConfigError(`${flag}: ${JSON.stringify(text)} is not ${what}`, spec.name);
  };
  switch (spec.kind) {
    case 'bool':
      return parseBool(text) ?? bad('a boolean (true or false)');
    case 'int': {
      // Go reads integer flags with base prefixes (0x…), and so do we; decimal otherwise.
      const m = /^([+-]?)(0x[0-9a-f]+|\d+)$/i.exec(text.trim());
      const v = m === null ? NaN : Number(m[2]) * (m[1] === '-' ? -1 : 1);
      return Number.isSafeInteger(v) ? v : bad('an integer');
    }
    case 'number': {
      const n = Number(text);
      return text.trim() !== '' && Number.isFinite(n) ? n : bad('a number');
    }
    case 'duration':
      return parseDurationMs(text) ?? bad('a duration (e.g. 200ms, 2s, 1m)');
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'string':
      return text;
  }
}

/**
 * Reads `args` (the words after `llmd sidecar`) and `env` into options input. Throws ConfigError for
 * an unknown flag, a missing or malformed value, or a stray positional argument.
 */
export function parseSidecarArgs(args: readonly string[], env: NodeJS.ProcessEnv = {}): SidecarArgs {
  const o: Building = { input: {}, tls: new Map(), skipVerify: new Map(), warnings: [] };
  const given = new Set<FlagSpec>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      if (i + 1 < args.length) throw new ConfigError(`unexpected argument ${JSON.stringify(args[i + 1])}`);
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (flags start with - or --)`);
    }
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === 'help' || name === 'h') return { help: true };
    let spec = BY_NAME.get(name);
    let negated = false;
    // `--no-<bool>`, as commander spells it for the other llmd commands.
    if (spec === undefined && name.startsWith('no-')) {
      const pos = BY_NAME.get(name.slice(3));
      if (pos?.kind === 'bool' && eq < 0) {
        spec = pos;
        negated = true;
      }
    }
    if (spec === undefined) throw new ConfigError(`flag provided but not defined: -${name}`, name);
    const flag = `--${name}`;
    let value: FlagValue;
    if (negated) value = false;
    else if (eq >= 0) value = convert(flag, spec, body.slice(eq + 1));
    else if (spec.kind === 'bool') {
      // `-flag true` reads as Go's `-flag=true`; Go itself would stop parsing at `true` and silently
      // ignore the flags after it.
      const next = args[i + 1];
      const b = next === undefined ? null : parseBool(next);
      if (b !== null) i++;
      value = b ?? true;
    } else {
      const next = args[i + 1];
      if (next === undefined) throw new ConfigError(`flag needs an argument: ${flag}`, spec.name);
      i++;
      value = convert(flag, spec, next);
    }
    if (DEPRECATED.has(name)) o.warnings.push(`${flag} is deprecated; use ${deprecatedFor(name)}`);
    given.add(spec);
    spec.apply(o, value);
  }
  for (const spec of SIDECAR_FLAGS) {
    if (spec.env === undefined || given.has(spec)) continue;
    const text = env[spec.env];
    if (text === undefined || text === '') continue;
    spec.apply(o, convert(spec.env, spec, text));
  }
  if (o.input.inferencePool === undefined && o.poolName !== undefined) {
    o.input.inferencePool = o.poolNamespace !== undefined ? `${o.poolNamespace}/${o.poolName}` : o.poolName;
  }
  const stages = (m: Map<TlsStage, boolean>): TlsStage[] | undefined =>
    m.size === 0 ? undefined : [...m].filter(([, on]) => on).map(([s]) => s);
  const enableTls = stages(o.tls);
  const skip = stages(o.skipVerify);
  if (enableTls !== undefined) o.input.enableTls = enableTls;
  if (skip !== undefined) o.input.tlsInsecureSkipVerify = skip;
  return { help: false, input: o.input as SidecarOptionsInput, warnings: o.warnings };
}

function deprecatedFor(name: string): string {
  switch (name) {
    case 'vllm-port':
      return '--model-server-port';
    case 'connector':
      return '--kv-connector';
    case 'inference-pool-namespace':
    case 'inference-pool-name':
      return '--inference-pool';
    case 'prefiller-use-tls':
    case 'decoder-use-tls':
      return '--enable-tls';
    default:
      return '--tls-insecure-skip-verify';
  }
}

/** The `llmd sidecar --help` text. */
export function sidecarHelp(): string {
  const lines = [
    'Usage: llmd sidecar [flags]',
    '',
    'The P/D routing sidecar beside a decode model server. A request with x-prefiller-host-port is',
    'prefilled there first, then decoded by the local model server with the KV-transfer parameters the',
    'prefiller returned; every other request is proxied to the local model server as is.',
    '',
    'Flags take one or two dashes; values as -flag=value or -flag value (Go style, as llm-d).',
    '',
  ];
  for (const f of SIDECAR_FLAGS) {
    const names = [f.name, ...(f.aliases ?? [])].map((n) => `--${n}`).join(', ');
    const head = `  ${names}${f.value !== undefined ? ` <${f.value}>` : ''}`;
    let tail = f.help;
    if (f.def !== undefined) tail += ` (default ${f.def})`;
    if (f.env !== undefined) tail += ` [env ${f.env}]`;
    lines.push(head, `      ${tail}`);
  }
  lines.push('  -h, --help', '      show this help');
  return lines.join('\n') + '\n';
}
