import { describe, expect, it } from 'vitest';
import { MAX_CATCH_UP_S, RealtimeDriver, type DriverTimers } from '../../src/engine/driver.js';
import type { StepResult } from '../../src/engine/core/types.js';
import { STEP_SECONDS, makeEngine, request, tokens } from './core/engine-fixtures.js';

/**
 * A virtual wall clock with Node's timer semantics: a timeout fires at the first loop turn at or after
 * its due time, plus whatever lateness the test injects; immediates run before the next timeout.
 */
class VirtualLoop implements DriverTimers {
  now = 0;
  /** Added to every timeout (not to immediates), as a busy event loop would. */
  lateness = 0;
  private seq = 0;
  private readonly queue: { at: number; seq: number; fn: () => void }[] = [];

  readonly clock = (): number => this.now;

  setTimeout(fn: () => void, ms: number): unknown {
    return this.enqueue(this.now + ms / 1000 + this.lateness, fn);
  }

  clearTimeout(handle: unknown): void {
    const i = this.queue.indexOf(handle as (typeof this.queue)[number]);
    if (i >= 0) this.queue.splice(i, 1);
  }

  setImmediate(fn: () => void): unknown {
    return this.enqueue(this.now, fn);
  }

  private enqueue(at: number, fn: () => void): unknown {
    const entry = { at, seq: this.seq++, fn };
    this.queue.push(entry);
    return entry;
  }

  /** Blocks the loop: nothing runs for `seconds`. */
  stall(seconds: number): void {
    this.now += seconds;
  }

  /** Runs callbacks in due order until none is left or `until` passes. */
  run(until = Infinity): void {
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.queue[0];
      if (next === undefined || next.at > until) return;
      this.queue.shift();
      this.now = Math.max(this.now, next.at);
      next.fn();
    }
  }
}

interface Delivery {
  result: StepResult;
  deliveredAt: number;
  since: number;
}

function setup(): {
  loop: VirtualLoop;
  engine: ReturnType<typeof makeEngine>;
  driver: RealtimeDriver;
  got: Delivery[];
} {
  const loop = new VirtualLoop();
  const engine = makeEngine();
  const got: Delivery[] = [];
  const driver = new RealtimeDriver(
    engine,
    loop.clock,
    { onStep: (result, since) => got.push({ result, deliveredAt: loop.now, since }) },
    loop,
  );
  return { loop, engine, driver, got };
}

describe('RealtimeDriver', () => {
  it('chains steps on the engine timeline so that late timers never accumulate', () => {
    const { loop, engine, driver, got } = setup();
    loop.lateness = 0.003;
    engine.addRequest(request('a', tokens(1, 8), tokens(2, 20)));
    driver.kick();
    loop.run();
    expect(got).toHaveLength(20);
    for (let k = 0; k < got.length; k++) {
      expect(got[k]!.result.startTime).toBeCloseTo(k * STEP_SECONDS, 9);
      // Each delivery is late by the timer's lateness only, not by k times it.
      expect(got[k]!.deliveredAt - got[k]!.result.endTime).toBeLessThanOrEqual(0.003 + 1e-9);
    }
  });

  it('dates a late step from its end, and one whose timer fired early from the hand-over', () => {
    const late = setup();
    late.loop.lateness = 0.003;
    late.engine.addRequest(request('a', tokens(1, 8), tokens(2, 5)));
    late.driver.kick();
    late.loop.run();
    for (const d of late.got) expect(d.since).toBeCloseTo(d.result.endTime, 9);

    const early = setup();
    early.loop.lateness = -0.0007;
    early.engine.addRequest(request('a', tokens(1, 8), tokens(2, 5)));
    early.driver.kick();
    early.loop.run();
    expect(early.got).toHaveLength(5);
    for (const d of early.got) {
      expect(d.deliveredAt).toBeLessThan(d.result.endTime);
      // Counting from the later step end would make the sink's own delay look 0.7 ms shorter.
      expect(d.since).toBe(d.deliveredAt);
    }
  });

  it('catches up after a short stall and then delivers on schedule again', () => {
    const { loop, engine, driver, got } = setup();
    engine.addRequest(request('a', tokens(1, 8), tokens(2, 30)));
    driver.kick();
    loop.run(0.1);
    loop.stall(0.05);
    loop.run();
    expect(got).toHaveLength(30);
    const starts = got.map((d) => d.result.startTime);
    for (let k = 0; k < starts.length; k++) expect(starts[k]).toBeCloseTo(k * STEP_SECONDS, 9);
    // The steps due during the stall are delivered at once when it ends; the rest are on time.
    const late = got.filter((d) => d.deliveredAt - d.result.endTime > 1e-9);
    expect(late.length).toBeGreaterThan(0);
    expect(late.length).toBeLessThanOrEqual(6);
    expect(got[got.length - 1]!.deliveredAt).toBeCloseTo(got[got.length - 1]!.result.endTime, 9);
  });

  it('restarts the timeline from the present after a stall longer than it may catch up', () => {
    const { loop, engine, driver, got } = setup();
    engine.addRequest(request('a', tokens(1, 8), tokens(2, 30)));
    driver.kick();
    loop.run(0.1);
    const before = got.length;
    loop.stall(MAX_CATCH_UP_S + 0.1);
    const resumedAt = loop.now;
    loop.run();
    expect(got).toHaveLength(30);
    // At most the one step in flight during the stall is delivered late; the next starts from now.
    const after = got.slice(before + 1);
    expect(after[0]!.result.startTime).toBeGreaterThanOrEqual(resumedAt);
    for (const d of after) expect(d.deliveredAt).toBeCloseTo(d.result.endTime, 9);
  });

  it('starts a request that arrives at an idle engine at its arrival, not on the old timeline', () => {
    const { loop, engine, driver, got } = setup();
    engine.addRequest(request('a', tokens(1, 8), tokens(2, 3)));
    driver.kick();
    loop.run();
    expect(got).toHaveLength(3);
    // Shortly after the engine went idle, well inside the catch-up window.
    loop.now += 0.004;
    const arrival = loop.now;
    engine.addRequest(request('b', tokens(3, 8), tokens(4, 3), { arrivalTime: arrival }));
    driver.kick();
    loop.run();
    expect(got).toHaveLength(6);
    expect(got[3]!.result.startTime).toBeCloseTo(arrival, 9);
    expect(got[5]!.result.outputs[0]!.finishReason).toBe('length');
  });

  it("counts a step's sequences as in flight until the step ends, finishing ones included", () => {
    const { loop, engine, driver, got } = setup();
    engine.addRequest(request('a', tokens(1, 8), [5]));
    engine.addRequest(request('b', tokens(2, 8), [6]));
    expect(driver.inFlightSeqs).toBe(0);
    driver.kick();
    // The first step is planned (both requests finish in it, as far as the core knows) but not over.
    loop.run(STEP_SECONDS / 10);
    expect(engine.stats().numRunning).toBe(0);
    expect(driver.inFlightSeqs).toBe(2);
    loop.run();
    expect(got).toHaveLength(1);
    expect(driver.inFlightSeqs).toBe(0);
  });

  it('runs nothing after stop', () => {
    const { loop, engine, driver, got } = setup();
    engine.addRequest(request('a', tokens(1, 8), tokens(2, 30)));
    driver.kick();
    loop.run(0.05);
    driver.stop();
    const n = got.length;
    loop.run();
    expect(got.length).toBe(n);
    driver.kick();
    loop.run();
    expect(got.length).toBe(n);
  });
});
