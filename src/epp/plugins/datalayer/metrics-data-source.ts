/**
 * `metrics-data-source`: GETs `scheme://address:port/path` from each endpoint, parses the Prometheus
 * text for the names its extractors want, and hands the page to them.
 *
 * One keep-alive undici Agent serves every endpoint, one socket each. Timeout: the response head must
 * arrive, and the body may not stall, within `timeoutMs` = max(1 s, 0.9 × interval). A bit under the
 * interval, so a slow server is given up on before its turn comes again; never under a second, so a
 * busy server on a 50 ms tick is not timed out on every poll. These are undici's coarse timers (they
 * may fire up to half a second late), so a poll costs no timer of its own; a server that trickles
 * bytes forever is cut off by the scraper's hang timeout. Bodies over `maxBodyBytes` are abandoned.
 * `poll` never rejects.
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { z } from 'zod';
import { ConfigError } from '../../../core/errors.js';
import { silentLogger, type Logger } from '../../../core/log.js';
import { parseDurationMs as parseDuration } from '../../../core/duration.js';
import { MetricNames, parsePrometheusText, type ParseLimits } from '../../datastore/prometheus-text.js';
import type { ExtractErrorListener, ReportsExtractErrors } from '../../datastore/scraper.js';
import type { DataSource, Extractor, MutableEndpoint } from '../../framework/datalayer.js';
import { definePlugin, type TypedName } from '../../framework/plugin.js';
import { isMetricsExtractor, METRICS_KIND, type MetricsExtractor } from './metrics-extractor.js';

export const TYPE = 'metrics-data-source';
export const DEFAULT_INTERVAL_MS = 50;
export const MIN_POLL_TIMEOUT_MS = 1000;
/** A vLLM page is a few hundred KB; a page of 8 MiB is a server gone wrong. */
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null || ms <= 0) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `${JSON.stringify(v)} is not a positive duration (e.g. 50ms, 1s, or a number of ms)`,
    });
    return z.NEVER;
  }
  return ms;
});

export const paramsSchema = z
  .object({
    scheme: z.enum(['http', 'https']).default('http'),
    path: z.string().startsWith('/', { message: 'must start with /' }).default('/metrics'),
    insecureSkipVerify: z.boolean().default(true),
    caCertPath: z.string().min(1).optional(),
    clientCertPath: z.string().min(1).optional(),
    clientKeyPath: z.string().min(1).optional(),
    interval: duration.default(DEFAULT_INTERVAL_MS),
  })
  .strict()
  .superRefine((p, ctx) => {
    if ((p.clientCertPath === undefined) !== (p.clientKeyPath === undefined)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: [p.clientCertPath === undefined ? 'clientCertPath' : 'clientKeyPath'],
        message: 'clientCertPath and clientKeyPath go together',
      });
    }
  });

export type MetricsDataSourceParams = z.output<typeof paramsSchema>;

export interface MetricsDataSourceOptions {
  logger?: Logger;
  maxBodyBytes?: number;
  parseLimits?: Partial<ParseLimits>;
}

const HEADERS = {
  accept: 'text/plain;version=0.0.4;q=1,*/*;q=0.1',
  'accept-encoding': 'identity',
};

interface Wanted {
  readonly extractors: readonly Extractor[];
  readonly metrics: readonly MetricsExtractor[];
  readonly names: MetricNames;
}

export class MetricsDataSource implements DataSource, ReportsExtractErrors {
  readonly kind = METRICS_KIND;
  readonly typedName: TypedName;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly scheme: 'http' | 'https';
  readonly path: string;
  private readonly agent: Agent;
  private readonly maxBodyBytes: number;
  private readonly parseLimits: Partial<ParseLimits>;
  private readonly logger: Logger;
  private wanted: Wanted | null = null;
  private listener: ExtractErrorListener | null = null;

  constructor(name: string, params: MetricsDataSourceParams, opts: MetricsDataSourceOptions = {}) {
    this.typedName = { type: TYPE, name };
    this.intervalMs = params.interval;
    this.timeoutMs = Math.max(MIN_POLL_TIMEOUT_MS, Math.round(0.9 * params.interval));
    this.scheme = params.scheme;
    this.path = params.path;
    this.maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.parseLimits = { maxBytes: this.maxBodyBytes, ...opts.parseLimits };
    this.logger = opts.logger ?? silentLogger();
    const tls =
      params.scheme === 'https'
        ? {
            rejectUnauthorized: !params.insecureSkipVerify,
            ca: readPem(name, 'caCertPath', params.caCertPath),
            cert: readPem(name, 'clientCertPath', params.clientCertPath),
            key: readPem(name, 'clientKeyPath', params.clientKeyPath),
          }
        : {};
    this.agent = new Agent({
      // The scraper never overlaps polls of one endpoint: one socket each is enough, and without the
      // cap the pool may open a second one while the first is still being handed back.
      connections: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connect: { timeout: this.timeoutMs, ...tls },
    });
  }

  setExtractErrorListener(listener: ExtractErrorListener | null): void {
    this.listener = listener;
  }

  /** The URL polled for `endpoint`. */
  url(endpoint: MutableEndpoint): string {
    return `${this.scheme}://${endpoint.meta.hostPort}${this.path}`;
  }

  async poll(
    endpoint: MutableEndpoint,
    extractors: readonly Extractor[],
    signal: AbortSignal,
  ): Promise<boolean> {
    if (signal.aborted) return false;
    const wanted = this.wantedFor(extractors);
    const body = await this.fetch(endpoint, signal);
    // Aborted means the endpoint changed or the loop stopped: what was read belongs to nobody.
    if (body === null || signal.aborted) return false;
    const page = parsePrometheusText(body, wanted.names, this.parseLimits);
    if (page.sampleCount === 0 && (page.badLines > 0 || page.lines === 0)) return false;
    for (const ex of wanted.metrics) {
      let problem: string | null;
      try {
        problem = ex.extract(page, endpoint);
      } catch (err) {
        problem = `extractor threw: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (problem !== null && this.listener !== null) {
        try {
          this.listener(endpoint, ex, problem);
        } catch (err) {
          this.logger.error({ err }, 'extract error listener threw');
        }
      }
    }
    return true;
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  /** The body of a 200 response within the size cap, or null. */
  private async fetch(endpoint: MutableEndpoint, signal: AbortSignal): Promise<Buffer | null> {
    try {
      const res = await this.agent.request({
        origin: `${this.scheme}://${endpoint.meta.hostPort}`,
        path: this.path,
        method: 'GET',
        headers: HEADERS,
        signal,
      });
      const { body } = res;
      if (res.statusCode !== 200) {
        body.dump().catch(() => {});
        return null;
      }
      const declared = Number(res.headers['content-length']);
      if (declared > this.maxBodyBytes) {
        body.destroy();
        return null;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of body) {
        const b = chunk as Buffer;
        size += b.length;
        if (size > this.maxBodyBytes) {
          body.destroy();
          return null;
        }
        chunks.push(b);
      }
      return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    } catch {
      return null;
    }
  }

  /** The extractors' names, compiled once for the list the scraper passes (the same array each time). */
  private wantedFor(extractors: readonly Extractor[]): Wanted {
    const w = this.wanted;
    if (w !== null && w.extractors === extractors) return w;
    const metrics = extractors.filter(isMetricsExtractor);
    const names = new Set<string>();
    for (const m of metrics) for (const n of m.metricNames) names.add(n);
    const next = { extractors, metrics, names: new MetricNames(names) };
    this.wanted = next;
    return next;
  }
}

function readPem(plugin: string, field: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    const code = err !== null && typeof err === 'object' && 'code' in err ? String(err.code) : 'error';
    throw new ConfigError(`${TYPE} ${plugin}: ${field} ${path} cannot be read (${code})`, field);
  }
}

export const definition = definePlugin({
  type: TYPE,
  params: paramsSchema,
  create: (name, params, handle) => new MetricsDataSource(name, params, { logger: handle.logger }),
});
