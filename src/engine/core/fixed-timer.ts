/**
 * A timer whose every step takes the same time, whatever the batch: llm-d-inference-sim's constant
 * latency model. Used to measure llmd's own overhead against an exact expected schedule.
 */
import type { StepShape, StepTimer } from './types.js';

export class FixedStepTimer implements StepTimer {
  constructor(private readonly seconds: number) {}

  stepDuration(_shape: StepShape): number {
    return this.seconds;
  }
}
