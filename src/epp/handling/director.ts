/**
 * The request pipeline between the data plane (the standalone gateway, or Envoy over ext_proc) and the
 * scheduler (upstream `requestcontrol/director.go`): build the request from headers and body, find the
 * candidates, admit, run the data producers, schedule, apply the `Prefer: if-available` gate, run the
 * PreRequest plugins, and name the destination. On the way back it runs the response hooks. Transport
 * code only moves bytes; every routing decision happens here.
 */
import { randomUUID } from 'node:crypto';
import { NoEndpointsError, PreconditionFailedError, SheddedError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { EppConfig } from '../config/loader.js';
import { CycleState } from '../framework/cycle-state.js';
import { PREFIX_CACHE_MATCH_INFO, matchBlocksOf } from '../framework/data-keys.js';
import { joinHostPort, type Endpoint, type EndpointSource } from '../framework/endpoint.js';
import type { DataProducer, ResponseInfo } from '../framework/requestcontrol.js';
import type { InferenceRequest } from '../framework/request.js';
import type { SchedulingResult } from '../framework/scheduling.js';
import type { EppMetrics, RequestSeries } from '../metrics.js';
import type { DecisionRecord } from '../scheduler/decision.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { parseRequestBody, withModel } from './parser.js';

/** Control headers, newest name first then the deprecated alias (upstream `metadata/consts.go`). */
export const HEADERS = {
  objective: ['x-llm-d-inference-objective', 'x-gateway-inference-objective'],
  modelRewrite: ['x-llm-d-model-name-rewrite', 'x-gateway-model-name-rewrite'],
  fairnessId: ['x-llm-d-inference-fairness-id', 'x-gateway-inference-fairness-id'],
  sloTtft: ['x-llm-d-slo-ttft-ms', 'x-slo-ttft-ms'],
  sloTpot: ['x-llm-d-slo-tpot-ms', 'x-slo-tpot-ms'],
} as const;

/** Ask for the decision record of one request; it comes back in `x-llm-d-decision`. */
export const DECISION_REQUEST_HEADER = 'x-llm-d-decision-record';
export const DECISION_RESPONSE_HEADER = 'x-llm-d-decision';
export const DROPPED_REASON_HEADER = 'x-llm-d-request-dropped-reason';

/** Headers the EPP owns: never echoed to the model server as if the client had set them. */
export const SYSTEM_OWNED_HEADERS: ReadonlySet<string> = new Set([
  ...Object.values(HEADERS).flat(),
  'x-gateway-destination-endpoint-subset',
  'x-gateway-destination-endpoint',
  'x-gateway-destination-endpoint-served',
  DROPPED_REASON_HEADER,
  'content-length',
]);

const DEFAULT_PRODUCE_TIMEOUT_MS = 400;

export interface SaturationDetector {
  /** Pool saturation: ≥ 1 means saturated. */
  saturation(endpoints: readonly Endpoint[]): number;
}

export interface DirectorOptions {
  readonly config: EppConfig;
  readonly endpoints: EndpointSource;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly clock: () => number;
  readonly saturation?: SaturationDetector | null;
  /** InferenceObjective name → priority (from Kubernetes when available). */
  readonly objectives?: ReadonlyMap<string, number>;
  /** Keep a decision record for every request (debugging). */
  readonly recordAll?: boolean;
  /** Endpoints the data plane could not reach recently are left out while others remain. */
  readonly isUnreachable?: (e: Endpoint) => boolean;
}

export interface IncomingRequest {
  readonly path: string;
  /** Lower-cased names; multi-valued headers joined with `, `. The director may add to it. */
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

export interface ScheduleOptions {
  /** The proxy's subset hint: only endpoints with these IPs are candidates (ext_proc). */
  readonly subset?: ReadonlySet<string> | null;
  /** Left out of the candidates (endpoints that just failed for this request). */
  readonly exclude?: ReadonlySet<Endpoint> | null;
}

export interface Scheduled {
  readonly req: InferenceRequest;
  readonly result: SchedulingResult;
  /** The primary profile's endpoints, in picker order. */
  readonly targets: readonly Endpoint[];
  /** `ip:port` for each target (the handler may override the port). */
  readonly destinations: readonly string[];
  /** The body to send: the original bytes unless the model was rewritten. */
  readonly body: Buffer;
  readonly record: DecisionRecord | null;
}

export class Director {
  readonly scheduler: Scheduler;
  private readonly o: DirectorOptions;
  private readonly producers: readonly DataProducer[];
  private readonly recent: DecisionRecord[] = [];
  private cycles = 0;

  constructor(opts: DirectorOptions) {
    this.o = opts;
    this.producers = opts.config.producers;
    this.scheduler = new Scheduler({
      handler: opts.config.profileHandler,
      profiles: opts.config.profiles,
      logger: opts.logger,
      observer: opts.metrics,
    });
  }

  /** Builds the request: parses the body (400 on a bad one), resolves ids, models and priority. */
  buildRequest(incoming: IncomingRequest): InferenceRequest {
    const h = incoming.headers;
    let requestId = h['x-request-id'];
    if (requestId === undefined || requestId === '' || requestId.length > 256) {
      requestId = randomUUID();
      h['x-request-id'] = requestId;
    }
    const body = parseRequestBody(incoming.path, incoming.body);
    const rewrite = header(h, HEADERS.modelRewrite);
    const objective = header(h, HEADERS.objective);
    const priority = objective !== undefined ? (this.o.objectives?.get(objective) ?? 0) : 0;
    const q = incoming.path.indexOf('?');
    return {
      requestId,
      path: q >= 0 ? incoming.path.slice(0, q) : incoming.path,
      incomingModel: body.model,
      targetModel: rewrite !== undefined && rewrite !== '' ? rewrite : body.model,
      headers: h,
      body,
      fairnessId: header(h, HEADERS.fairnessId) || 'default-flow',
      priority,
      requestSizeBytes: incoming.body.length,
      state: new CycleState(),
      receivedAt: this.o.clock(),
      recordDecision:
        this.o.recordAll === true ||
        h[DECISION_REQUEST_HEADER] === 'true' ||
        this.o.logger.isLevelEnabled('debug'),
    };
  }

  labels(req: InferenceRequest): RequestSeries {
    return this.o.metrics.labels(req.incomingModel, req.targetModel, req.fairnessId, req.priority);
  }

  /** The whole request side. Throws an `LlmdError` (with `droppedReason`) when the request cannot go. */
  async schedule(req: InferenceRequest, opts: ScheduleOptions = {}): Promise<Scheduled> {
    const o = this.o;
    const candidates = this.candidates(opts);
    if (candidates.length === 0) throw new NoEndpointsError();

    if (req.priority < 0 && o.saturation && o.saturation.saturation(candidates) >= 1) {
      throw new SheddedError();
    }

    const timed = this.cycles++ % 10 === 0;
    for (const p of this.producers) {
      const t0 = timed ? performance.now() : 0;
      try {
        const r = p.produce(req, candidates);
        if (r !== undefined) await withTimeout(r, p.produceTimeoutMs ?? DEFAULT_PRODUCE_TIMEOUT_MS);
      } catch (err) {
        o.logger.warn({ err, plugin: p.typedName.name, request_id: req.requestId }, 'data producer failed');
      }
      if (timed) {
        const d = (performance.now() - t0) / 1000;
        o.metrics.pluginDuration('DataProducer', p.typedName.type, p.typedName.name, d);
      }
    }

    const t0 = performance.now();
    let out;
    try {
      out = this.scheduler.schedule(req, candidates);
    } catch (err) {
      o.metrics.schedulerAttempt('failure', req.targetModel, null);
      throw err;
    } finally {
      o.metrics.schedulerLatency((performance.now() - t0) / 1000);
    }
    const { result, record } = out;
    const primary = result.profileResults.get(result.primaryProfileName);
    const targets = primary?.targetEndpoints ?? [];
    o.metrics.schedulerAttempt('success', req.targetModel, targets[0] ?? null);
    if (result.pd) {
      const h = o.config.profileHandler.typedName;
      o.metrics.disaggDecision(h, req.targetModel, result.pd.decision);
    }

    if (preferIfAvailable(req.headers['prefer'])) {
      const info = req.state.read(PREFIX_CACHE_MATCH_INFO);
      if (targets[0] !== undefined && (info === undefined || matchBlocksOf(info, targets[0].slot) === 0)) {
        throw new PreconditionFailedError(
          'Prefer: if-available, and the chosen endpoint holds none of the prompt.',
        );
      }
    }

    for (const p of o.config.preRequest) {
      try {
        p.preRequest(req, result);
      } catch (err) {
        o.logger.warn(
          { err, plugin: p.typedName.name, request_id: req.requestId },
          'pre-request plugin failed',
        );
      }
    }

    const port = result.targetPort;
    const destinations = targets.map((e) =>
      port !== undefined && port > 0 ? joinHostPort(e.meta.address, port) : e.meta.hostPort,
    );
    if (record) {
      record.destination = destinations.slice();
      this.remember(record);
      o.logger.debug({ request_id: req.requestId, decision: record }, 'scheduling decision');
    }
    const body = req.targetModel !== req.incomingModel ? withModel(req.body, req.targetModel) : req.body.raw;
    return { req, result, targets, destinations, body, record };
  }

  private candidates(opts: ScheduleOptions): readonly Endpoint[] {
    let eps = this.o.endpoints.list();
    const subset = opts.subset;
    if (subset) eps = eps.filter((e) => subset.has(e.meta.address));
    const exclude = opts.exclude;
    if (exclude && exclude.size > 0) eps = eps.filter((e) => !exclude.has(e));
    const down = this.o.isUnreachable;
    if (down && eps.length > 1) {
      const up = eps.filter((e) => !down(e));
      if (up.length > 0) eps = up;
    }
    return eps;
  }

  responseReceived(req: InferenceRequest, resp: ResponseInfo): void {
    for (const p of this.o.config.responseReceived) {
      try {
        p.responseReceived(req, resp);
      } catch (err) {
        this.o.logger.warn({ err, plugin: p.typedName.name }, 'response plugin failed');
      }
    }
  }

  responseStreaming(req: InferenceRequest, resp: ResponseInfo, chunk: Buffer): void {
    const ps = this.o.config.responseStreaming;
    for (let i = 0; i < ps.length; i++) {
      try {
        ps[i]!.responseStreaming(req, resp, chunk);
      } catch (err) {
        this.o.logger.warn({ err, plugin: ps[i]!.typedName.name }, 'response plugin failed');
      }
    }
  }

  responseComplete(req: InferenceRequest, resp: ResponseInfo): void {
    for (const p of this.o.config.responseComplete) {
      try {
        p.responseComplete(req, resp);
      } catch (err) {
        this.o.logger.warn({ err, plugin: p.typedName.name }, 'response plugin failed');
      }
    }
  }

  /** The most recent recorded decisions, newest last. */
  recentDecisions(limit = 100): readonly DecisionRecord[] {
    return this.recent.slice(-limit);
  }

  private remember(r: DecisionRecord): void {
    this.recent.push(r);
    if (this.recent.length > 256) this.recent.splice(0, this.recent.length - 256);
  }
}

function header(h: Record<string, string>, names: readonly string[]): string | undefined {
  for (const n of names) {
    const v = h[n];
    if (v !== undefined) return v;
  }
  return undefined;
}

/** RFC 7240 `Prefer: if-available` (tokens are comma-separated, case-insensitive). */
function preferIfAvailable(v: string | undefined): boolean {
  if (v === undefined) return false;
  for (const part of v.split(',')) if (part.trim().toLowerCase() === 'if-available') return true;
  return false;
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
