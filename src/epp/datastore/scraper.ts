/**
 * The data-layer polling loop. One base tick (`--refresh-metrics-interval`, default and minimum
 * 50 ms) drives every (endpoint, data source) pair; a source whose interval is longer is polled every
 * `ceil(interval / tick)` ticks, its endpoints staggered by slot so they do not all fire on one tick.
 * A pair never has two polls in flight; a poll that outlives its hang timeout is aborted and counted,
 * and nothing a source does (reject, throw, hang) stops the loop.
 */
import { ConfigError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { DataSource, Extractor } from '../framework/datalayer.js';
import type { Endpoint } from '../framework/endpoint.js';
import { DatastoreEndpoint, type Datastore, type EndpointChange } from './datastore.js';

export const MIN_TICK_MS = 50;
/** `--metrics-staleness-threshold`. */
export const DEFAULT_STALENESS_MS = 2000;

export type PollFailure = 'failed' | 'threw' | 'timeout';

/** Where failures are counted (the EPP's `datalayer_poll_errors_total` / `_extract_errors_total`). */
export interface ScrapeObserver {
  pollError(endpoint: Endpoint, source: DataSource, reason: PollFailure): void;
  extractError(endpoint: Endpoint, source: DataSource, extractor: Extractor, message: string): void;
}

export type ExtractErrorListener = (endpoint: Endpoint, extractor: Extractor, message: string) => void;

/**
 * A data source whose poll can succeed while one of its extractors fails (a metric missing from the
 * page): `poll` only says whether the poll worked, so such failures come through this listener.
 */
export interface ReportsExtractErrors {
  setExtractErrorListener(listener: ExtractErrorListener | null): void;
}

export function reportsExtractErrors(source: DataSource): source is DataSource & ReportsExtractErrors {
  return typeof (source as Partial<ReportsExtractErrors>).setExtractErrorListener === 'function';
}

/** A data source and the extractors it feeds (`dataLayer.sources[].extractors`). */
export interface ScrapeBinding {
  readonly source: DataSource;
  readonly extractors: readonly Extractor[];
}

export interface ScraperOptions {
  readonly datastore: Datastore;
  readonly bindings: readonly ScrapeBinding[];
  /** Base tick; default and minimum 50 ms. */
  readonly tickMs?: number;
  /** An endpoint with no successful poll for longer than this is stale. Default 2 s. */
  readonly stalenessMs?: number;
  /** A poll pending this long is aborted and counted as a timeout. Default max(5 s, 2 × interval). */
  readonly hangTimeoutMs?: number;
  /** Monotonic milliseconds. */
  readonly clock?: () => number;
  readonly logger?: Logger;
  readonly observer?: ScrapeObserver;
  /** At most one debug line per endpoint and source per period. Default 10 s. */
  readonly logIntervalMs?: number;
}

/** Poll state of one (endpoint, source) pair. */
interface Task {
  readonly endpoint: DatastoreEndpoint;
  controller: AbortController | null;
  /** `endpoint.generation` when the poll in flight started. */
  generation: number;
  startedAt: number;
  lastStartTick: number;
  timedOut: boolean;
  failing: boolean;
  lastLogAt: number;
  suppressed: number;
}

interface Lane {
  readonly source: DataSource;
  readonly extractors: readonly Extractor[];
  readonly everyTicks: number;
  readonly hangMs: number;
  /** Indexed by endpoint slot. */
  readonly tasks: (Task | undefined)[];
}

export class Scraper {
  readonly tickMs: number;
  readonly stalenessMs: number;
  private readonly datastore: Datastore;
  private readonly lanes: Lane[];
  private readonly clock: () => number;
  private readonly logger: Logger;
  private readonly observer: ScrapeObserver | null;
  private readonly logIntervalMs: number;
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private ticks = 0;
  private pending = 0;

  constructor(opts: ScraperOptions) {
    const tickMs = opts.tickMs ?? MIN_TICK_MS;
    if (!Number.isFinite(tickMs) || tickMs < MIN_TICK_MS) {
      throw new ConfigError(
        `--refresh-metrics-interval must be at least ${MIN_TICK_MS}ms, got ${tickMs}ms`,
        '--refresh-metrics-interval',
      );
    }
    this.tickMs = tickMs;
    this.stalenessMs = opts.stalenessMs ?? DEFAULT_STALENESS_MS;
    this.datastore = opts.datastore;
    this.clock = opts.clock ?? (() => performance.now());
    this.logger = opts.logger ?? silentLogger();
    this.observer = opts.observer ?? null;
    this.logIntervalMs = opts.logIntervalMs ?? 10_000;
    this.lanes = opts.bindings.map((b) => {
      const { source } = b;
      const interval = source.intervalMs;
      if (!Number.isFinite(interval) || interval <= 0) {
        throw new ConfigError(`data source ${source.typedName.name}: interval must be positive`, 'interval');
      }
      for (const ex of b.extractors) {
        if (ex.sourceKind !== source.kind) {
          throw new ConfigError(
            `extractor ${ex.typedName.name} (${ex.typedName.type}) reads ${ex.sourceKind} data, but data source ` +
              `${source.typedName.name} (${source.typedName.type}) provides ${source.kind}`,
            'extractors',
          );
        }
      }
      return {
        source,
        extractors: Object.freeze([...b.extractors]),
        everyTicks: ticksFor(interval, tickMs),
        hangMs: opts.hangTimeoutMs ?? Math.max(5000, 2 * interval),
        tasks: [],
      };
    });
  }

  start(): void {
    if (this.timer !== null) return;
    this.unsubscribe = this.datastore.onChange((c) => this.onChange(c));
    for (const lane of this.lanes) {
      const { source } = lane;
      if (reportsExtractErrors(source)) {
        source.setExtractErrorListener((ep, ex, msg) => this.extractFailed(lane, ep, ex, msg));
      }
    }
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
    this.tick();
  }

  /** Stops the loop and aborts every poll in flight. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const lane of this.lanes) {
      if (reportsExtractErrors(lane.source)) lane.source.setExtractErrorListener(null);
      for (const t of lane.tasks) if (t !== undefined) this.void(t);
    }
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** Polls started and not yet settled (a hung poll counts until it settles). */
  inFlight(): number {
    return this.pending;
  }

  /** True when `endpoint` has not been polled successfully within the staleness threshold. */
  isStale(endpoint: Endpoint, now: number = this.clock()): boolean {
    const e = endpoint instanceof DatastoreEndpoint ? endpoint : this.datastore.get(endpoint.meta.id);
    if (e === undefined || e.lastPollOk === 0) return true;
    return now - e.lastPollOk > this.stalenessMs;
  }

  /** How many endpoints are stale now. */
  staleCount(now: number = this.clock()): number {
    let n = 0;
    for (const e of this.datastore.list()) if (this.isStale(e, now)) n++;
    return n;
  }

  /** One base tick; `start()` runs it on a timer. */
  tick(): void {
    try {
      const tick = ++this.ticks;
      const now = this.clock();
      const endpoints = this.datastore.list();
      for (const lane of this.lanes) {
        for (const ep of endpoints) this.visit(lane, ep, tick, now);
      }
    } catch (err) {
      this.logger.error({ err }, 'datalayer tick failed');
    }
  }

  private visit(lane: Lane, ep: DatastoreEndpoint, tick: number, now: number): void {
    let t = lane.tasks[ep.slot];
    if (t === undefined || t.endpoint !== ep) {
      if (t !== undefined) this.void(t);
      t = newTask(ep, tick - lane.everyTicks + (ep.slot % lane.everyTicks));
      lane.tasks[ep.slot] = t;
    }
    if (t.controller !== null) {
      if (!t.timedOut && now - t.startedAt > lane.hangMs) {
        // Keep the controller: the pair stays busy until the poll settles, so two never overlap.
        t.timedOut = true;
        t.controller.abort(new Error('poll timed out'));
        this.failed(lane, t, 'timeout', now, null);
      }
      return;
    }
    if (tick - t.lastStartTick < lane.everyTicks) return;
    this.startPoll(lane, t, tick, now);
  }

  private startPoll(lane: Lane, t: Task, tick: number, now: number): void {
    const controller = new AbortController();
    t.controller = controller;
    t.generation = t.endpoint.generation;
    t.startedAt = now;
    t.lastStartTick = tick;
    t.timedOut = false;
    this.pending++;
    let p: Promise<boolean>;
    try {
      p = Promise.resolve(lane.source.poll(t.endpoint, lane.extractors, controller.signal));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (ok) => this.settle(lane, t, controller, ok === true ? null : 'failed', null),
      (err: unknown) => this.settle(lane, t, controller, 'threw', err),
    );
  }

  private settle(
    lane: Lane,
    t: Task,
    controller: AbortController,
    failure: PollFailure | null,
    err: unknown,
  ): void {
    this.pending--;
    // Voided (stopped, endpoint removed or pointed elsewhere) or already counted as a timeout.
    if (t.controller !== controller) return;
    t.controller = null;
    if (t.timedOut) return;
    const ep = t.endpoint;
    if (ep.generation !== t.generation) return;
    const now = this.clock();
    if (failure === null) {
      ep.lastPollOk = now;
      ep.consecutiveFailures = 0;
      if (t.failing) {
        t.failing = false;
        this.logger.debug(
          { endpoint: ep.meta.id, source: lane.source.typedName.name },
          'datalayer poll recovered',
        );
      }
      return;
    }
    this.failed(lane, t, failure, now, err);
  }

  private failed(lane: Lane, t: Task, reason: PollFailure, now: number, err: unknown): void {
    const ep = t.endpoint;
    ep.consecutiveFailures++;
    t.failing = true;
    if (this.observer !== null) {
      try {
        this.observer.pollError(ep, lane.source, reason);
      } catch (e) {
        this.logger.error({ err: e }, 'scrape observer threw');
      }
    }
    if (!this.logger.isLevelEnabled('debug')) return;
    if (now - t.lastLogAt < this.logIntervalMs) {
      t.suppressed++;
      return;
    }
    this.logger.debug(
      {
        endpoint: ep.meta.id,
        source: lane.source.typedName.name,
        reason,
        failures: ep.consecutiveFailures,
        suppressed: t.suppressed,
        err: err instanceof Error ? err.message : err === null ? undefined : String(err),
      },
      'datalayer poll failed',
    );
    t.lastLogAt = now;
    t.suppressed = 0;
  }

  private extractFailed(lane: Lane, ep: Endpoint, ex: Extractor, message: string): void {
    if (this.observer !== null) {
      try {
        this.observer.extractError(ep, lane.source, ex, message);
      } catch (e) {
        this.logger.error({ err: e }, 'scrape observer threw');
      }
    }
    if (!this.logger.isLevelEnabled('debug')) return;
    const t = lane.tasks[ep.slot];
    const now = this.clock();
    if (t !== undefined && t.endpoint === ep) {
      if (now - t.lastLogAt < this.logIntervalMs) {
        t.suppressed++;
        return;
      }
      t.lastLogAt = now;
      t.suppressed = 0;
    }
    this.logger.debug(
      {
        endpoint: ep.meta.id,
        source: lane.source.typedName.name,
        extractor: ex.typedName.name,
        err: message,
      },
      'datalayer extract failed',
    );
  }

  private onChange(c: EndpointChange): void {
    if (c.kind === 'add' || (c.kind === 'update' && !c.serverChanged)) return;
    const ep = c.endpoint;
    for (const lane of this.lanes) {
      const t = lane.tasks[ep.slot];
      if (t === undefined || t.endpoint !== ep) continue;
      this.void(t);
      if (c.kind === 'remove') lane.tasks[ep.slot] = undefined;
      else t.lastStartTick = this.ticks - lane.everyTicks;
    }
  }

  /** Aborts the poll in flight, if any, and forgets it: its result will not be recorded. */
  private void(t: Task): void {
    const c = t.controller;
    if (c === null) return;
    t.controller = null;
    c.abort(new Error('poll cancelled'));
  }
}

/** Ticks between polls: the interval rounded up to the base tick. */
export function ticksFor(intervalMs: number, tickMs: number): number {
  return Math.max(1, Math.ceil(intervalMs / tickMs - 1e-9));
}

function newTask(endpoint: DatastoreEndpoint, lastStartTick: number): Task {
  return {
    endpoint,
    controller: null,
    generation: endpoint.generation,
    startedAt: 0,
    lastStartTick,
    timedOut: false,
    failing: false,
    lastLogAt: -Infinity,
    suppressed: 0,
  };
}
