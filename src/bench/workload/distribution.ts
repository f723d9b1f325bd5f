/**
 * Token-length distributions as inference-perf gives them (`{min, max, mean, std_dev}`): a normal
 * sample rounded and clamped to [min, max]; a fixed length when the deviation is 0.
 */
import { z } from 'zod';
import type { Rng } from '../../core/rng.js';

export const DistributionSchema = z
  .object({
    mean: z.number().int().positive(),
    std_dev: z.number().min(0).default(0),
    min: z.number().int().positive().optional(),
    max: z.number().int().positive().optional(),
  })
  .strict()
  .refine((d) => d.min === undefined || d.max === undefined || d.min <= d.max, {
    message: 'min must not exceed max',
  });
export type Distribution = z.output<typeof DistributionSchema>;

/** A distribution's bounds: given ones, else mean ± 3 standard deviations (at least 1). */
export function bounds(d: Distribution): { min: number; max: number } {
  const min = d.min ?? Math.max(1, Math.round(d.mean - 3 * d.std_dev));
  const max = d.max ?? Math.max(min, Math.round(d.mean + 3 * d.std_dev));
  return { min, max };
}

export function sampleLength(d: Distribution, rng: Rng): number {
  const { min, max } = bounds(d);
  const v = d.std_dev === 0 ? d.mean : Math.round(rng.normal(d.mean, d.std_dev));
  return Math.min(max, Math.max(min, v));
}

export function fixed(mean: number): Distribution {
  return { mean, std_dev: 0 };
}

/** For the report: `fixed` or `gaussian`, with the parameters. */
export function describeDistribution(d: Distribution): {
  distribution: string;
  value: number;
  std_dev?: number;
  min?: number;
  max?: number;
} {
  if (d.std_dev === 0) return { distribution: 'fixed', value: d.mean };
  const { min, max } = bounds(d);
  return { distribution: 'gaussian', value: d.mean, std_dev: d.std_dev, min, max };
}

/** A length description shifted by a fixed number of tokens (a system prompt before a question). */
export function plus(
  tokens: number,
  d: ReturnType<typeof describeDistribution>,
): ReturnType<typeof describeDistribution> {
  const out = { ...d, value: d.value + tokens };
  if (d.min !== undefined) out.min = d.min + tokens;
  if (d.max !== undefined) out.max = d.max + tokens;
  return out;
}
