/**
 * Endpoints from a file, in upstream's `file-discovery` format (YAML or JSON):
 *
 *   endpoints:
 *     - {name: pod-a, namespace: default, address: 10.0.0.1, port: "8000", labels: {llm-d.ai/role: decode}}
 *
 * When watching, the file's directory is watched rather than the file, because editors and Kubernetes
 * ConfigMap mounts replace a file by renaming another over it (a watch on the old inode would go
 * quiet). Events are debounced, a slow stat poll backs up file systems that drop events, and a file
 * that turns invalid keeps the last good set: the error is logged, nothing is thrown.
 */
import { watch, readFileSync, statSync, type FSWatcher } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../../../core/errors.js';
import { silentLogger, type Logger } from '../../../core/log.js';
import type { DiscoverySink, EndpointSpec } from '../../framework/datalayer.js';
import { endpointId } from '../datastore.js';
import { defaultEndpointName } from './flags.js';
import { isValidEndpointName, labelKeyProblem } from './validate.js';

/** Far above any real pool (a thousand endpoints is ~150 KB), far below trouble. */
export const MAX_FILE_BYTES = 8 * 1024 * 1024;

// Upstream writes the port as a string; a number is accepted too.
const port = z.unknown().transform((v, ctx) => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d{1,5}\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    const message =
      v === undefined || v === null ? 'Required' : `${JSON.stringify(v)} is not a port in 1..65535`;
    ctx.addIssue({ code: z.ZodIssueCode.custom, message });
    return z.NEVER;
  }
  return n;
});

const address = z.string().transform((v, ctx) => {
  const a = v.trim().replace(/^\[(.*)\]$/, '$1');
  if (isIP(a) === 0) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `${JSON.stringify(v)} is not an IPv4 or IPv6 address`,
    });
    return z.NEVER;
  }
  return a;
});

const name = z.string().refine(isValidEndpointName, { message: "must be non-empty, without '/' or spaces" });

// YAML reads `version: 2` as a number; a label is a string whatever it looks like.
const labelValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const labels = z.record(labelValue).superRefine((rec, ctx) => {
  for (const k of Object.keys(rec)) {
    const problem = labelKeyProblem(k);
    if (problem !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem, path: [k] });
  }
});

const entry = z
  .object({
    name: name.optional(),
    namespace: name.optional(),
    address,
    port,
    labels: labels.nullish(),
    rank: z.number().int().nonnegative().optional(),
  })
  .strict();

const fileSchema = z.object(
  { endpoints: z.array(entry).nullish() },
  {
    invalid_type_error: 'expected a mapping with an `endpoints` list',
    required_error: 'expected a mapping with an `endpoints` list',
  },
);

/** Parses the file's text; throws a `ConfigError` naming the file, the entry and the field. */
export function parseEndpointsFile(text: string, source: string): EndpointSpec[] {
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new ConfigError(`endpoints file ${source}: not valid YAML or JSON: ${why}`, 'endpoints');
  }
  const r = fileSchema.safeParse(raw);
  if (!r.success) {
    // A few issues at once: a misspelt key shows up as both "unrecognized" and "required".
    const issues = r.error.issues.slice(0, 3).map((i) => `${where(raw, i.path)}${i.message}`);
    throw new ConfigError(`endpoints file ${source}: ${issues.join('; ')}`, 'endpoints');
  }
  const out: EndpointSpec[] = [];
  const seen = new Map<string, number>();
  (r.data.endpoints ?? []).forEach((e, i) => {
    const spec: EndpointSpec = {
      name: e.name ?? defaultEndpointName(e.address, e.port),
      namespace: e.namespace ?? 'default',
      address: e.address,
      port: e.port,
      labels: e.labels ?? {},
      rank: e.rank ?? 0,
    };
    const id = endpointId(spec.namespace, spec.name, spec.rank);
    const prev = seen.get(id);
    if (prev !== undefined) {
      throw new ConfigError(
        `endpoints file ${source}: endpoints[${prev}] and endpoints[${i}] are both ${id}`,
        'endpoints',
      );
    }
    seen.set(id, i);
    out.push(spec);
  });
  return out;
}

/** `endpoints[2] (pod-c).port: ` from a zod path, with the entry's name when it has one. */
function where(raw: unknown, path: readonly (string | number)[]): string {
  if (path.length === 0) return '';
  let s = String(path[0]);
  if (path[0] === 'endpoints' && typeof path[1] === 'number') {
    s = `endpoints[${path[1]}]`;
    const list = (raw as { endpoints?: unknown }).endpoints;
    const item: unknown = Array.isArray(list) ? list[path[1]] : undefined;
    const n = item !== null && typeof item === 'object' ? (item as { name?: unknown }).name : undefined;
    if (typeof n === 'string') s += ` (${n})`;
    for (const p of path.slice(2)) s += typeof p === 'number' ? `[${p}]` : `.${p}`;
  } else {
    for (const p of path.slice(1)) s += typeof p === 'number' ? `[${p}]` : `.${p}`;
  }
  return `${s}: `;
}

export interface FileDiscoveryOptions {
  path: string;
  /** Reload when the file changes. Default true. */
  watch?: boolean;
  logger?: Logger;
  /** Quiet time after the last file event before reloading. Default 100 ms. */
  debounceMs?: number;
  /** Stat poll for file systems whose events get lost; 0 disables it. Default 2 s. */
  pollIntervalMs?: number;
}

export interface ReloadResult {
  readonly ok: boolean;
  /** The set was replaced (the file's content differed from the last good load). */
  readonly changed: boolean;
  readonly endpoints: number;
  readonly error?: string;
}

export class FileDiscovery {
  readonly path: string;
  private readonly watchFile: boolean;
  private readonly logger: Logger;
  private readonly debounceMs: number;
  private readonly pollIntervalMs: number;
  private sink: DiscoverySink | null = null;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private poller: NodeJS.Timeout | null = null;
  private lastGoodText: string | null = null;
  private lastGoodCount = 0;
  private lastStat = '';
  private stopped = false;
  private readonly listeners: ((r: ReloadResult) => void)[] = [];

  constructor(opts: FileDiscoveryOptions) {
    this.path = resolve(opts.path);
    this.watchFile = opts.watch ?? true;
    this.logger = opts.logger ?? silentLogger();
    this.debounceMs = opts.debounceMs ?? 100;
    this.pollIntervalMs = opts.pollIntervalMs ?? 2000;
  }

  /** Reads and parses the file now; throws a `ConfigError`. */
  load(): EndpointSpec[] {
    return parseEndpointsFile(this.read(), this.path);
  }

  /** Delivers the file's endpoints; a missing or invalid file at start-up rejects with a `ConfigError`. */
  async start(sink: DiscoverySink): Promise<void> {
    this.stopped = false;
    this.sink = sink;
    const text = this.read();
    const specs = parseEndpointsFile(text, this.path);
    sink.replace(specs);
    this.lastGoodText = text;
    this.lastGoodCount = specs.length;
    this.lastStat = this.statKey();
    if (this.watchFile) {
      this.startWatcher();
      if (this.pollIntervalMs > 0) {
        this.poller = setInterval(() => this.pollStat(), this.pollIntervalMs);
        this.poller.unref();
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce !== null) clearTimeout(this.debounce);
    if (this.poller !== null) clearInterval(this.poller);
    this.debounce = null;
    this.poller = null;
  }

  /** Called after every reload attempt, successful or not. Returns a function that unsubscribes. */
  onReload(listener: (r: ReloadResult) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Re-reads the file now. Never throws: a bad file is logged and the last good set stays. */
  reload(): ReloadResult {
    let result: ReloadResult;
    try {
      const text = this.read();
      if (text === this.lastGoodText) {
        result = { ok: true, changed: false, endpoints: this.lastGoodCount };
      } else {
        const specs = parseEndpointsFile(text, this.path);
        this.sink?.replace(specs);
        this.lastGoodText = text;
        this.lastGoodCount = specs.length;
        result = { ok: true, changed: true, endpoints: specs.length };
        this.logger.info({ path: this.path, endpoints: specs.length }, 'endpoints file reloaded');
      }
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      result = { ok: false, changed: false, endpoints: this.lastGoodCount, error };
      this.logger.error(
        { path: this.path, err: error, endpoints: this.lastGoodCount },
        'endpoints file not reloaded; keeping the last good set',
      );
    }
    for (const l of this.listeners) {
      try {
        l(result);
      } catch (err) {
        this.logger.error({ err }, 'endpoints file reload listener threw');
      }
    }
    return result;
  }

  private read(): string {
    let size: number;
    try {
      size = statSync(this.path).size;
    } catch (err) {
      throw new ConfigError(`endpoints file ${this.path}: cannot be read (${codeOf(err)})`, 'path');
    }
    if (size > MAX_FILE_BYTES) {
      throw new ConfigError(
        `endpoints file ${this.path}: ${size} bytes is over the ${MAX_FILE_BYTES}-byte limit`,
        'path',
      );
    }
    try {
      return readFileSync(this.path, 'utf8');
    } catch (err) {
      throw new ConfigError(`endpoints file ${this.path}: cannot be read (${codeOf(err)})`, 'path');
    }
  }

  private startWatcher(): void {
    try {
      // Any event in the directory may be ours: ConfigMap updates rename `..data`, not the file.
      const w = watch(dirname(this.path), { persistent: false }, () => this.schedule());
      w.on('error', (err) => {
        this.logger.warn({ path: this.path, err: codeOf(err) }, 'endpoints file watch failed; polling');
        w.close();
        if (this.watcher === w) this.watcher = null;
      });
      this.watcher = w;
    } catch (err) {
      this.logger.warn({ path: this.path, err: codeOf(err) }, 'cannot watch endpoints file; polling');
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      if (!this.stopped) {
        this.lastStat = this.statKey();
        this.reload();
      }
    }, this.debounceMs);
    this.debounce.unref();
  }

  private pollStat(): void {
    if (this.stopped) return;
    if (this.watcher === null) this.startWatcher();
    const key = this.statKey();
    if (key !== this.lastStat) {
      this.lastStat = key;
      this.schedule();
    }
  }

  private statKey(): string {
    try {
      const s = statSync(this.path);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }
}

function codeOf(err: unknown): string {
  if (err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string')
    return err.code;
  return err instanceof Error ? err.message : String(err);
}
