/**
 * The real-time driver of the engine core: it runs a step, sleeps until the step's end on the wall
 * clock, hands the step's tokens to the server, and starts the next step at once — the loop vLLM's
 * engine runs on a GPU. Steps are chained on the engine's own timeline (the next step starts at the
 * previous step's end, not when the timer happened to fire), so timer lateness and short host stalls
 * never accumulate: after a stall the overdue steps run back to back until the timeline is caught up,
 * as a GPU that kept computing through the stall would have delivered them.
 */
import type { StepResult } from './core/types.js';

/** The slice of the engine core the driver needs. */
export interface SteppableEngine {
  step(now: number): StepResult;
  hasUnfinishedRequests(): boolean;
}

export interface DriverSink {
  /**
   * Tokens of a step, delivered as soon as possible after `result.endTime` on the driver's clock.
   * `since` is when they became due to the client: the step's end, or the moment of this call if a
   * timer fired a little early — the origin of any delay the sink adds, which early delivery must
   * not hide.
   */
  onStep(result: StepResult, since: number): void;
}

/** The timer functions the driver uses; injectable so tests can run it on a virtual clock. */
export interface DriverTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setImmediate(fn: () => void): unknown;
}

const NODE_TIMERS: DriverTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setImmediate: (fn) => setImmediate(fn),
};

/**
 * How far the engine's timeline may trail the wall clock and still be caught up. A longer stall (the
 * process was suspended, or is overloaded for good) restarts the timeline from the present instead of
 * bursting out a backlog.
 */
export const MAX_CATCH_UP_S = 0.25;

export class RealtimeDriver {
  private active = false;
  private stopped = false;
  private lastEnd = -Infinity;
  private pending: StepResult | null = null;
  private timer: unknown = null;

  constructor(
    private readonly engine: SteppableEngine,
    /** Monotonic seconds. */
    readonly clock: () => number,
    private readonly sink: DriverSink,
    private readonly timers: DriverTimers = NODE_TIMERS,
  ) {}

  /** Sequences in the step now executing (0 between steps). */
  get inFlightSeqs(): number {
    return this.pending === null ? 0 : this.pending.numScheduledSeqs;
  }

  /** Called after a request is added: starts the loop if it was idle. */
  kick(): void {
    if (this.active || this.stopped) return;
    this.active = true;
    this.timers.setImmediate(this.runStep);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.active = false;
  }

  private readonly runStep = (): void => {
    if (this.stopped) return;
    const now = this.clock();
    let start = now - this.lastEnd < MAX_CATCH_UP_S ? this.lastEnd : now;
    let result = this.engine.step(start);
    // On a trailing timeline the only waiting requests may have arrived after `start`: they are due
    // now, so the step starts now.
    if (result.numScheduledSeqs === 0 && start < now && this.engine.hasUnfinishedRequests()) {
      start = now;
      result = this.engine.step(start);
    }
    if (result.numScheduledSeqs === 0 && result.outputs.length === 0) {
      // Nothing runnable: sleep until the next request arrives.
      this.active = false;
      return;
    }
    this.pending = result;
    const delayMs = (result.endTime - this.clock()) * 1000;
    if (delayMs <= 0) this.timers.setImmediate(this.endStep);
    else this.timer = this.timers.setTimeout(this.endStep, delayMs);
  };

  private readonly endStep = (): void => {
    this.timer = null;
    const result = this.pending;
    this.pending = null;
    if (!result || this.stopped) return;
    this.lastEnd = result.endTime;
    this.sink.onStep(result, Math.min(result.endTime, this.clock()));
    if (this.engine.hasUnfinishedRequests()) this.runStep();
    else this.active = false;
  };
}

/** Monotonic seconds since process start. */
export function monotonicSeconds(): number {
  return performance.now() / 1000;
}
