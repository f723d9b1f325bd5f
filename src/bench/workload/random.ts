/**
 * Random prompts of a given input length (ISL) asking for a given output length (OSL), each request
 * independent: fixed lengths, `range_ratio` (vLLM's: uniform in [L(1−r), L(1+r)]), or inference-perf's
 * `input_distribution` / `output_distribution`. Request i's lengths and words come from a stream seeded
 * by i, so a run is the same whatever the timing.
 */
import { z } from 'zod';
import { Rng, seedFrom } from '../../core/rng.js';
import type { LlmdTokenizer } from '../../engine/tokenizer/tokenizer.js';
import {
  describeDistribution,
  DistributionSchema,
  fixed,
  sampleLength,
  type Distribution,
} from './distribution.js';
import type { Workload, WorkloadDescription, WorkloadRequest } from './workload.js';
import { WordPool } from './words.js';

export const RandomSchema = z
  .object({
    type: z.literal('random'),
    input_len: z.number().int().positive(),
    output_len: z.number().int().positive(),
    range_ratio: z.number().min(0).lt(1).default(0),
    input_distribution: DistributionSchema.optional(),
    output_distribution: DistributionSchema.optional(),
  })
  .strict();
export type RandomConfig = z.output<typeof RandomSchema>;

type Sampler = (rng: Rng) => number;

function sampler(len: number, ratio: number, dist: Distribution | undefined): Sampler {
  if (dist !== undefined) return (rng) => sampleLength(dist, rng);
  if (ratio === 0) return () => len;
  const lo = Math.max(1, Math.floor(len * (1 - ratio)));
  const hi = Math.max(lo, Math.ceil(len * (1 + ratio)));
  return (rng) => rng.int(lo, hi);
}

export class RandomWorkload implements Workload {
  readonly kind = 'random';
  readonly needsText = false;
  private readonly pool: WordPool;
  private readonly isl: Sampler;
  private readonly osl: Sampler;
  private verified = false;

  constructor(
    private readonly cfg: RandomConfig,
    tokenizer: LlmdTokenizer,
    private readonly seed: number,
  ) {
    this.pool = WordPool.of(tokenizer);
    this.isl = sampler(cfg.input_len, cfg.range_ratio, cfg.input_distribution);
    this.osl = sampler(cfg.output_len, cfg.range_ratio, cfg.output_distribution);
  }

  next(index: number): WorkloadRequest {
    const rng = new Rng(seedFrom(`random:${index}`, this.seed));
    const isl = this.isl(rng);
    const maxTokens = this.osl(rng);
    const prompt = this.pool.text(rng, isl);
    if (!this.verified) {
      this.verified = true;
      this.pool.verify(prompt, isl, 'a random prompt');
    }
    return {
      index,
      messages: [{ role: 'user', content: prompt }],
      promptTokens: isl,
      questionTokens: isl,
      maxTokens,
      group: null,
      session: null,
      turn: 0,
    };
  }

  onResponse(): void {}

  describe(): WorkloadDescription {
    const c = this.cfg;
    const desc = (len: number, dist: Distribution | undefined): WorkloadDescription['input_seq_len'] => {
      if (dist !== undefined) return describeDistribution(dist);
      if (c.range_ratio === 0) return describeDistribution(fixed(len));
      return {
        distribution: 'uniform',
        value: len,
        min: Math.max(1, Math.floor(len * (1 - c.range_ratio))),
        max: Math.ceil(len * (1 + c.range_ratio)),
      };
    };
    return {
      source: 'random',
      input_seq_len: desc(c.input_len, c.input_distribution),
      output_seq_len: desc(c.output_len, c.output_distribution),
      multi_turn: { enabled: false },
      parameters: { ...c },
    };
  }
}
