/**
 * What `llmd up` starts: flags and `-f topology.yaml`, validated with zod at the edge and resolved into
 * one `Topology`. Flags given on the command line override the file; everything has a default, so no
 * arguments at all give a useful stack (4 decode servers, precise prefix routing, embedded indexer).
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { LOG_LEVELS, type LogLevel } from '../core/log.js';

export const ROUTINGS = ['random', 'load', 'approx', 'precise'] as const;
export type Routing = (typeof ROUTINGS)[number];

export const INDEXER_MODES = ['embedded', 'standalone', 'off'] as const;
export type IndexerMode = (typeof INDEXER_MODES)[number];

export const DEFAULT_MODEL = 'Qwen/Qwen3-8B';
export const DEFAULT_DECODE = 4;
export const MAX_REPLICAS = 64;

/** One role's servers: how many, and extra `llmd serve` flags for each. */
export interface RoleSpec {
  readonly replicas: number;
  readonly hardware: string;
  readonly args: readonly string[];
}

export interface Topology {
  readonly model: string;
  /** Where the gateway listens; port 0 picks a free one. */
  readonly host: string;
  readonly port: number;
  readonly decode: RoleSpec;
  readonly prefill: RoleSpec;
  readonly routing: Routing;
  /** The user's own EndpointPickerConfig (YAML or JSON text), replacing the routing preset. */
  readonly eppConfig: { readonly path: string; readonly text: string } | null;
  readonly indexer: IndexerMode;
  readonly redis: string | null;
  /** Level of the children's logs shown in the terminal. */
  readonly logLevel: LogLevel;
  readonly startTimeoutMs: number;
  readonly eppArgs: readonly string[];
  readonly sidecarArgs: readonly string[];
  readonly indexerArgs: readonly string[];
}

const port = z.coerce
  .number({ invalid_type_error: 'must be a port number' })
  .int('must be an integer')
  .min(0, 'must be a port in 0..65535')
  .max(65535, 'must be a port in 0..65535');
const replicas = (min: number) =>
  z.coerce
    .number({ invalid_type_error: 'must be a number' })
    .int('must be an integer')
    .min(min, `must be at least ${min}`)
    .max(MAX_REPLICAS, `must be at most ${MAX_REPLICAS}`);
const name = z.string().trim().min(1, 'must not be empty');
const args = z.array(z.string()).default([]);
const redisUrl = z
  .string()
  .regex(
    /^(rediss?|valkeys?|unix):\/\/\S+$|^[^\s/:]+:\d+$/,
    'must be redis://host:port[/db], host:port or unix://path',
  );
const timeoutMs = z.coerce.number().int().positive('must be positive');

/** The flags of `llmd up`, as commander hands them over (strings; unset ones absent). */
export const UpFlagsSchema = z
  .object({
    file: z.string().optional(),
    port: port.optional(),
    host: name.optional(),
    decode: replicas(1).optional(),
    prefill: replicas(0).optional(),
    model: name.optional(),
    hardware: name.optional(),
    routing: z.enum(ROUTINGS).optional(),
    config: z.string().min(1).optional(),
    indexer: z.enum(INDEXER_MODES).optional(),
    redis: redisUrl.optional(),
    logLevel: z.enum(LOG_LEVELS).optional(),
    startTimeout: timeoutMs.optional(),
  })
  .strict();
export type UpFlags = z.input<typeof UpFlagsSchema>;

const roleFile = (min: number) =>
  z.union([
    replicas(min),
    z.object({ replicas: replicas(min).optional(), hardware: name.optional(), args }).strict(),
  ]);

/** `llmd up -f topology.yaml`. Field names are the flags' (camelCase); `config` is a path relative to the file. */
export const TopologyFileSchema = z
  .object({
    model: name.optional(),
    hardware: name.optional(),
    host: name.optional(),
    port: port.optional(),
    decode: roleFile(1).optional(),
    prefill: roleFile(0).optional(),
    routing: z.enum(ROUTINGS).optional(),
    config: z.string().min(1).optional(),
    indexer: z.enum(INDEXER_MODES).optional(),
    redis: redisUrl.optional(),
    logLevel: z.enum(LOG_LEVELS).optional(),
    startTimeoutMs: timeoutMs.optional(),
    epp: z.object({ args }).strict().optional(),
    sidecar: z.object({ args }).strict().optional(),
    kvIndexer: z.object({ args }).strict().optional(),
  })
  .strict();
export type TopologyFile = z.output<typeof TopologyFileSchema>;

/** `a.b[2].c: message; …`, naming where the input came from. */
function issues(err: z.ZodError, where: (path: (string | number)[]) => string): string {
  return err.issues
    .map((i) => {
      const at = where(i.path);
      return at === '' ? i.message : `${at}: ${i.message}`;
    })
    .join('; ');
}

const FLAG_NAMES: Record<string, string> = { logLevel: '--log-level', startTimeout: '--start-timeout' };

function flagName(key: string | number | undefined): string {
  if (key === undefined) return '';
  return FLAG_NAMES[String(key)] ?? `--${String(key)}`;
}

export function parseFlags(raw: Record<string, unknown>): z.output<typeof UpFlagsSchema> {
  const defined = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  const r = UpFlagsSchema.safeParse(defined);
  if (!r.success) {
    const unknown = r.error.issues.find((i) => i.code === z.ZodIssueCode.unrecognized_keys);
    if (unknown !== undefined) throw new ConfigError(`llmd up: ${unknown.message}`);
    throw new ConfigError(issues(r.error, (p) => flagName(p[0])));
  }
  return r.data;
}

export function parseTopologyFile(text: string, path = 'topology'): TopologyFile {
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) raw = {};
  const r = TopologyFileSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(issues(r.error, (p) => `${path}: ${p.join('.') || '(top)'}`));
  return r.data;
}

function role(v: z.output<ReturnType<typeof roleFile>> | undefined): Partial<RoleSpec> {
  if (v === undefined) return {};
  if (typeof v === 'number') return { replicas: v };
  return { replicas: v.replicas, hardware: v.hardware, args: v.args };
}

export interface ResolveInput {
  readonly flags: z.output<typeof UpFlagsSchema>;
  readonly file?: { readonly path: string; readonly doc: TopologyFile };
  /** Reads the EPP config named by `--config` / `config:` (resolved against the file's folder). */
  readonly readText: (path: string) => string;
  readonly resolvePath: (path: string, relativeTo: string | null) => string;
}

/** Flags over file over defaults, then the combinations that make no sense are refused. */
export function resolveTopology(input: ResolveInput): Topology {
  const f = input.flags;
  const doc: TopologyFile = input.file?.doc ?? {};
  const fileDir = input.file === undefined ? null : input.file.path;
  const hardware = f.hardware ?? doc.hardware ?? 'H100';
  const decodeFile = role(doc.decode);
  const prefillFile = role(doc.prefill);
  const decode: RoleSpec = {
    replicas: f.decode ?? decodeFile.replicas ?? DEFAULT_DECODE,
    hardware: decodeFile.hardware ?? hardware,
    args: decodeFile.args ?? [],
  };
  const prefill: RoleSpec = {
    replicas: f.prefill ?? prefillFile.replicas ?? 0,
    hardware: prefillFile.hardware ?? hardware,
    args: prefillFile.args ?? [],
  };
  const indexer = f.indexer ?? doc.indexer ?? 'embedded';
  const explicitRouting = f.routing ?? doc.routing;
  const routing: Routing = explicitRouting ?? (indexer === 'off' ? 'approx' : 'precise');
  const redis = f.redis ?? doc.redis ?? null;
  const configPath =
    f.config !== undefined
      ? input.resolvePath(f.config, null)
      : doc.config !== undefined
        ? input.resolvePath(doc.config, fileDir)
        : null;

  if (configPath !== null && explicitRouting !== undefined) {
    throw new ConfigError('--config and --routing exclude each other: the config file sets the routing');
  }
  if (configPath === null && routing === 'precise' && indexer === 'off') {
    throw new ConfigError(
      '--routing precise needs the KV-cache indexer: use --indexer embedded or standalone',
    );
  }
  if (configPath === null && routing !== 'precise' && indexer === 'standalone') {
    throw new ConfigError(`--indexer standalone serves precise routing only, not --routing ${routing}`);
  }
  if (redis !== null && (indexer === 'off' || (configPath === null && routing !== 'precise'))) {
    throw new ConfigError('--redis holds the KV-cache index: it needs precise routing and an indexer');
  }
  let eppConfig: Topology['eppConfig'] = null;
  if (configPath !== null) {
    let text: string;
    try {
      text = input.readText(configPath);
    } catch (err) {
      throw new ConfigError(`--config ${configPath}: ${(err as Error).message}`);
    }
    eppConfig = { path: configPath, text };
  }
  return {
    model: f.model ?? doc.model ?? DEFAULT_MODEL,
    host: f.host ?? doc.host ?? '127.0.0.1',
    port: f.port ?? doc.port ?? 8080,
    decode,
    prefill,
    routing,
    eppConfig,
    indexer,
    redis,
    logLevel: f.logLevel ?? doc.logLevel ?? 'warn',
    startTimeoutMs: f.startTimeout ?? doc.startTimeoutMs ?? 60_000,
    eppArgs: doc.epp?.args ?? [],
    sidecarArgs: doc.sidecar?.args ?? [],
    indexerArgs: doc.kvIndexer?.args ?? [],
  };
}

/** P/D is on when there is at least one prefill server. */
export function isPd(t: Topology): boolean {
  return t.prefill.replicas > 0;
}
