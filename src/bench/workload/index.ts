/** The workload catalog: one schema per type, discriminated by `type`, and the factory. */
import { z } from 'zod';
import type { LlmdTokenizer } from '../../engine/tokenizer/tokenizer.js';
import { ChatSchema, ChatWorkload } from './chat.js';
import { RandomSchema, RandomWorkload } from './random.js';
import { SharedPrefixSchema, SharedPrefixWorkload } from './shared-prefix.js';
import type { Workload } from './workload.js';

export const WorkloadSchema = z.discriminatedUnion('type', [SharedPrefixSchema, RandomSchema, ChatSchema]);
export type WorkloadConfig = z.output<typeof WorkloadSchema>;

export function createWorkload(cfg: WorkloadConfig, tokenizer: LlmdTokenizer, seed: number): Workload {
  switch (cfg.type) {
    case 'shared-prefix':
    case 'shared_prefix':
      return new SharedPrefixWorkload(cfg, tokenizer, seed);
    case 'random':
      return new RandomWorkload(cfg, tokenizer, seed);
    case 'chat':
      return new ChatWorkload(cfg, tokenizer, seed);
  }
}
