/**
 * `pd-profile-handler` (deprecated; use `disagg-profile-handler`): the P/D handler of earlier llm-d
 * releases. Same decision flow — decode first, prefill when the decider agrees — with the old flat
 * parameters. When no plugin named `deciderPluginName` is configured, a prefix-based decider is built
 * from the legacy `threshold` (characters of non-cached prompt, ≈ 4 per token; 0 = always
 * disaggregate). `primaryPort` sends the request to that port of the decode endpoint (the sidecar's)
 * instead of the pool's target port.
 */
import { z } from 'zod';
import { definePlugin, type PluginHandle } from '../../framework/plugin.js';
import type { InferenceRequest } from '../../framework/request.js';
import type { PdDecider, ProfileRunResult, SchedulingResult } from '../../framework/scheduling.js';
import { PrefixBasedPdDecider } from './decider/prefix-based.js';
import { DisaggProfileHandler, type DisaggSettings } from './disagg.js';

export const TYPE = 'pd-profile-handler';

const DEFAULT_DECIDER = 'prefix-based-pd-decider';

const Params = z
  .object({
    decodeProfile: z.string().min(1).default('decode'),
    prefillProfile: z.string().min(1).default('prefill'),
    deciderPluginName: z.string().min(1).default(DEFAULT_DECIDER),
    threshold: z.number().int().nonnegative().default(0),
    hashBlockSize: z.number().int().positive().optional(),
    prefixPluginType: z.string().optional(),
    prefixPluginName: z.string().optional(),
    primaryPort: z.number().int().min(0).max(65535).default(0),
  })
  .strict();

export const definition = definePlugin({
  type: TYPE,
  deprecated: 'use disagg-profile-handler with deciders.prefill',
  params: Params,
  create: (name, p, handle) => new PdProfileHandler(name, p, handle),
});

const ALWAYS: PdDecider = {
  typedName: { type: 'always-disagg-pd-decider', name: 'pd-profile-handler/always' },
  disaggregate: () => ({ yes: true, reason: 'threshold 0: always disaggregate' }),
};

export class PdProfileHandler extends DisaggProfileHandler {
  private readonly primaryPort: number;
  private readonly legacy: z.output<typeof Params>;

  constructor(name: string, p: z.output<typeof Params>, handle: PluginHandle) {
    const settings: DisaggSettings = {
      decode: p.decodeProfile,
      prefill: p.prefillProfile,
      encode: 'encode',
      prefillDecider: null,
      encodeDecider: null,
    };
    super(TYPE, name, settings, handle);
    this.primaryPort = p.primaryPort;
    this.legacy = p;
  }

  override init(): void {
    const named = this.handle.plugin(this.legacy.deciderPluginName);
    if (named !== undefined || this.legacy.deciderPluginName !== DEFAULT_DECIDER) {
      this.prefillDecider = this.resolveDecider(this.legacy.deciderPluginName, 'deciderPluginName');
      return;
    }
    if (this.legacy.threshold === 0) {
      this.prefillDecider = ALWAYS;
      return;
    }
    const decider = new PrefixBasedPdDecider(`${this.typedName.name}/decider`, {
      nonCachedTokens: Math.ceil(this.legacy.threshold / 4),
      promptTokens: 0,
    });
    this.prefillDecider = decider;
    this.consumes = decider.consumes;
  }

  override processResults(
    req: InferenceRequest,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): SchedulingResult {
    const r = super.processResults(req, results);
    return this.primaryPort > 0 ? { ...r, targetPort: this.primaryPort } : r;
  }
}
