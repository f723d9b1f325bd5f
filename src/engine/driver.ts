/**
 * The real-time driver of the engine core: it runs a step, sleeps until the step's end on the wall
 * clock, hands the step's tokens to the server, and starts the next step at once — the loop vLLM's
 * engine runs on a GPU. Steps are chained on the engine's own timeline (the next step starts at the
 * previous step's end, not when the timer happened to fire), so timer lateness never accumulates.
 */
import type { StepResult } from './core/types.js';

/** The slice of the engine core the driver needs. */
export interface SteppableEngine {
  step(now: number): StepResult;
  hasUnfinishedRequests(): boolean;
}

export interface DriverSink {
  /** Tokens of a step, delivered `lag` seconds after the step's end. */
  onStep(result: StepResult, lag: number): void;
}

/** If the process falls further behind than this, the timeline resynchronises with the wall clock. */
const MAX_CATCH_UP_S = 0.01;

export class RealtimeDriver {
  private active = false;
  private stopped = false;
  private lastEnd = 0;
  private pending: StepResult | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly engine: SteppableEngine,
    /** Monotonic seconds. */
    readonly clock: () => number,
    private readonly sink: DriverSink,
  ) {}

  /** Called after a request is added: starts the loop if it was idle. */
  kick(): void {
    if (this.active || this.stopped) return;
    this.active = true;
    setImmediate(this.runStep);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.active = false;
  }

  private readonly runStep = (): void => {
    if (this.stopped) return;
    const now = this.clock();
    const start = now - this.lastEnd < MAX_CATCH_UP_S ? Math.max(now, this.lastEnd) : now;
    const result = this.engine.step(start);
    if (result.numScheduledSeqs === 0 && result.outputs.length === 0) {
      // Nothing runnable: sleep until the next request arrives.
      this.active = false;
      this.lastEnd = start;
      return;
    }
    this.pending = result;
    const delayMs = (result.endTime - this.clock()) * 1000;
    if (delayMs <= 0) setImmediate(this.endStep);
    else this.timer = setTimeout(this.endStep, delayMs);
  };

  private readonly endStep = (): void => {
    this.timer = null;
    const result = this.pending;
    this.pending = null;
    if (!result || this.stopped) return;
    this.lastEnd = result.endTime;
    this.sink.onStep(result, Math.max(0, this.clock() - result.endTime));
    if (this.engine.hasUnfinishedRequests()) this.runStep();
    else this.active = false;
  };
}

/** Monotonic seconds since process start. */
export function monotonicSeconds(): number {
  return performance.now() / 1000;
}
