/**
 * How many tokens a simulated response has, as llm-d-inference-sim decides it
 * (pkg/dataset/dataset.go and histogram_helper.go).
 *
 * With `max_tokens`: a histogram over [min, max] with probabilities 20/30/20/5/10/15 %. The last bucket
 * is max itself (so 15 % of responses end with `length`); the other five split [min, max − 1], equally
 * while the range is at most 101 tokens wide, otherwise 20 tokens each except the fourth, which takes
 * the rest. Without `max_tokens`: a Gaussian (mean 40, sd 20) rejected outside [min, room left in the
 * context], or uniform when that room is under 20 tokens. `ignore_eos` always gives the maximum.
 */
import type { Rng } from '../../core/rng.js';

export const BUCKET_PROBABILITIES: readonly number[] = [0.2, 0.3, 0.2, 0.05, 0.1, 0.15];
const CUMULATIVE: readonly number[] = BUCKET_PROBABILITIES.map((_, i) =>
  BUCKET_PROBABILITIES.slice(0, i + 1).reduce((a, b) => a + b, 0),
);
const NUM_BUCKETS = BUCKET_PROBABILITIES.length;
const FLEX_BUCKET = 3;
const FIXED_BUCKET_SIZE = 20;
/** Widest [min, max] range that is still split into equal buckets. */
export const MAX_EQUAL_BUCKETS_RANGE = FIXED_BUCKET_SIZE * (NUM_BUCKETS - 1) + 1;

export const RESPONSE_LEN_MEAN = 40;
export const RESPONSE_LEN_SD = 20;
/** Rejection sampling gives up after this many draws (the upstream loop would spin when min ≫ mean). */
const MAX_GAUSSIAN_DRAWS = 64;

export interface LengthRequest {
  /** `max_tokens` / `max_completion_tokens`, when the request gave one. */
  readonly maxTokens?: number | undefined;
  readonly minTokens?: number | undefined;
  readonly ignoreEos?: boolean | undefined;
  /** Tokens left in the context window (max_model_len − prompt length). */
  readonly room: number;
}

/** The number of tokens to generate; 0 only when there is no room at all. */
export function sampleResponseLength(rng: Rng, req: LengthRequest): number {
  const hasMax = req.maxTokens !== undefined;
  const max = Math.max(0, Math.floor(hasMax ? Math.min(req.maxTokens as number, req.room) : req.room));
  if (max === 0) return 0;
  const min = Math.min(Math.max(1, Math.floor(req.minTokens ?? 1)), max);
  if (req.ignoreEos) return max;
  if (hasMax) return histogramLength(rng, min, max);
  return randomLength(rng, min, max);
}

/** A length from the 6-bucket histogram over [min, max]. */
export function histogramLength(rng: Rng, min: number, max: number): number {
  if (max <= min) return max;
  if (max - min + 1 <= NUM_BUCKETS) return rng.int(min, max);
  const r = rng.next();
  if (r > (CUMULATIVE[NUM_BUCKETS - 2] as number)) return max;
  let bucket = NUM_BUCKETS - 1;
  for (let i = 0; i < NUM_BUCKETS; i++) {
    if (r <= (CUMULATIVE[i] as number)) {
      bucket = i;
      break;
    }
  }
  const start = bucketStart(min, max, bucket);
  return rng.int(start, Math.max(start, bucketEnd(min, max, bucket)));
}

/** First length of a histogram bucket (buckets 0..4; bucket 5 is max alone). */
export function bucketStart(min: number, max: number, bucket: number): number {
  const range = max - min + 1;
  if (range <= MAX_EQUAL_BUCKETS_RANGE) {
    return min + Math.floor(((max - min) / (NUM_BUCKETS - 1)) * bucket);
  }
  if (bucket <= FLEX_BUCKET) return min + FIXED_BUCKET_SIZE * bucket;
  return min + FIXED_BUCKET_SIZE * (bucket - 1) + flexBucketSize(range);
}

/** Last length of a histogram bucket (buckets 0..4), never max itself. */
export function bucketEnd(min: number, max: number, bucket: number): number {
  const range = max - min + 1;
  let end: number;
  if (range <= MAX_EQUAL_BUCKETS_RANGE) {
    end = min + Math.floor(((max - min) / (NUM_BUCKETS - 1)) * (bucket + 1)) - 1;
  } else if (bucket < FLEX_BUCKET) {
    end = min + FIXED_BUCKET_SIZE * (bucket + 1) - 1;
  } else {
    end = min + FIXED_BUCKET_SIZE * bucket + flexBucketSize(range) - 1;
  }
  return end >= max ? max - 1 : end;
}

function flexBucketSize(range: number): number {
  return range - FIXED_BUCKET_SIZE * (NUM_BUCKETS - 2);
}

/** A length when the request set no maximum: Gaussian around 40, uniform in a small window. */
export function randomLength(rng: Rng, min: number, max: number): number {
  if (min >= max) return max;
  if (max < RESPONSE_LEN_MEAN - RESPONSE_LEN_SD) return rng.int(min, max);
  let value = 0;
  for (let i = 0; i < MAX_GAUSSIAN_DRAWS; i++) {
    value = rng.normal(RESPONSE_LEN_MEAN, RESPONSE_LEN_SD);
    if (value >= min && value <= max) return Math.round(value);
  }
  return Math.min(max, Math.max(min, Math.round(value)));
}
