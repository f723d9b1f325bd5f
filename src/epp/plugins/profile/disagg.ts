/**
 * `disagg-profile-handler`: prefill/decode (and encode) disaggregation. The decode profile runs first;
 * when it found an endpoint, the encode and prefill stages run if their deciders agree for that decode
 * endpoint. The decode result is primary. As a PreRequest it tells the decode pod's sidecar where to
 * prefill: `x-prefiller-host-port` (first prefill endpoint) and `x-encoder-hosts-ports` (every encode
 * endpoint) — after deleting whatever the client sent under those names.
 */
import { z } from 'zod';
import { ConfigError, SchedulingFailedError } from '../../../core/errors.js';
import { DataKey } from '../../framework/cycle-state.js';
import type { Plugin, PluginHandle, TypedName } from '../../framework/plugin.js';
import { definePlugin } from '../../framework/plugin.js';
import type { DataConsumer, PreRequest } from '../../framework/requestcontrol.js';
import type { InferenceRequest } from '../../framework/request.js';
import {
  isPdDecider,
  type PdDecider,
  type PdDecision,
  type ProfileHandler,
  type ProfileRunResult,
  type SchedulerProfile,
  type SchedulingResult,
} from '../../framework/scheduling.js';

export const TYPE = 'disagg-profile-handler';

export const PREFILLER_HEADER = 'x-prefiller-host-port';
export const ENCODERS_HEADER = 'x-encoder-hosts-ports';

const Params = z
  .object({
    profiles: z
      .object({
        decode: z.string().min(1).default('decode'),
        prefill: z.string().min(1).default('prefill'),
        encode: z.string().min(1).default('encode'),
      })
      .strict()
      .optional(),
    deciders: z
      .object({ prefill: z.string().min(1).optional(), encode: z.string().min(1).optional() })
      .strict()
      .optional(),
    // The flat form of earlier releases.
    decodeProfile: z.string().min(1).optional(),
    prefillProfile: z.string().min(1).optional(),
    encodeProfile: z.string().min(1).optional(),
    prefillDeciderPluginName: z.string().min(1).optional(),
    encodeDeciderPluginName: z.string().min(1).optional(),
    deciderPluginName: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const nested = p.profiles !== undefined || p.deciders !== undefined;
    const flat = [
      'decodeProfile',
      'prefillProfile',
      'encodeProfile',
      'prefillDeciderPluginName',
      'encodeDeciderPluginName',
      'deciderPluginName',
    ].filter((k) => p[k as keyof typeof p] !== undefined);
    if (nested && flat.length > 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: [flat[0]!],
        message: 'cannot mix the legacy flat parameters with profiles/deciders',
      });
    }
  });

export interface DisaggSettings {
  decode: string;
  prefill: string;
  encode: string;
  prefillDecider: string | null;
  encodeDecider: string | null;
}

export function settingsOf(p: z.output<typeof Params>): DisaggSettings {
  return {
    decode: p.profiles?.decode ?? p.decodeProfile ?? 'decode',
    prefill: p.profiles?.prefill ?? p.prefillProfile ?? 'prefill',
    encode: p.profiles?.encode ?? p.encodeProfile ?? 'encode',
    prefillDecider: p.deciders?.prefill ?? p.prefillDeciderPluginName ?? p.deciderPluginName ?? null,
    encodeDecider: p.deciders?.encode ?? p.encodeDeciderPluginName ?? null,
  };
}

export const definition = definePlugin({
  type: TYPE,
  params: Params,
  create: (name, params, handle) => new DisaggProfileHandler(TYPE, name, settingsOf(params), handle),
});

/** What the handler decided for one request, kept so each decider runs once. */
interface StageState {
  encode: 'pending' | 'yes' | 'no';
  prefill: 'pending' | 'yes' | 'no';
  prefillReason: string;
  encodeReason: string;
}
const STAGES = new DataKey<StageState>('disagg-profile-handler/stages');

const NONE: readonly SchedulerProfile[] = [];

export class DisaggProfileHandler implements ProfileHandler, PreRequest, DataConsumer {
  readonly typedName: TypedName;
  consumes: DataConsumer['consumes'] = [];
  protected prefillDecider: PdDecider | null = null;
  protected encodeDecider: PdDecider | null = null;
  private decodeProfile: SchedulerProfile[] = [];
  private prefillProfile: SchedulerProfile[] | null = null;
  private encodeProfile: SchedulerProfile[] | null = null;

  constructor(
    type: string,
    name: string,
    protected readonly settings: DisaggSettings,
    protected readonly handle: PluginHandle,
  ) {
    this.typedName = { type, name };
  }

  init(): void {
    this.prefillDecider = this.resolveDecider(this.settings.prefillDecider, 'deciders.prefill');
    this.encodeDecider = this.resolveDecider(this.settings.encodeDecider, 'deciders.encode');
  }

  protected resolveDecider(name: string | null, field: string): PdDecider | null {
    if (name === null) return null;
    const p: Plugin | undefined = this.handle.plugin(name);
    if (p === undefined) {
      throw new ConfigError(
        `plugin ${this.typedName.name} (${this.typedName.type}): ${field} names plugin "${name}", which is not defined`,
        field,
      );
    }
    if (!isPdDecider(p)) {
      throw new ConfigError(
        `plugin ${this.typedName.name} (${this.typedName.type}): ${field} names plugin "${name}" of type ${p.typedName.type}, which is not a P/D decider`,
        field,
      );
    }
    return p;
  }

  checkProfiles(profiles: ReadonlyMap<string, SchedulerProfile>): void {
    const s = this.settings;
    const decode = profiles.get(s.decode);
    if (decode === undefined) {
      throw new ConfigError(
        `plugin ${this.typedName.name} (${this.typedName.type}) needs a scheduling profile named "${s.decode}"`,
        'schedulingProfiles',
      );
    }
    this.decodeProfile = [decode];
    const prefill = profiles.get(s.prefill);
    this.prefillProfile = prefill ? [prefill] : null;
    const encode = profiles.get(s.encode);
    this.encodeProfile = encode ? [encode] : null;
    if (this.prefillDecider !== null && prefill === undefined) {
      throw new ConfigError(
        `plugin ${this.typedName.name} (${this.typedName.type}) has a prefill decider but no scheduling profile named "${s.prefill}"`,
        'schedulingProfiles',
      );
    }
  }

  pick(
    req: InferenceRequest,
    _profiles: ReadonlyMap<string, SchedulerProfile>,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): readonly SchedulerProfile[] {
    const s = this.settings;
    if (!results.has(s.decode)) return this.decodeProfile;
    const decode = results.get(s.decode);
    if (decode === null || decode === undefined) return NONE;
    const target = decode.targetEndpoints[0]!;
    let st = req.state.read(STAGES);
    if (st === undefined) {
      st = { encode: 'pending', prefill: 'pending', prefillReason: '', encodeReason: '' };
      req.state.write(STAGES, st);
    }
    if (st.encode === 'pending') {
      st.encode = 'no';
      if (this.encodeProfile !== null && this.encodeDecider !== null) {
        const d = this.encodeDecider.disaggregate(req, target);
        st.encodeReason = d.reason;
        if (d.yes) {
          st.encode = 'yes';
          return this.encodeProfile;
        }
      }
    }
    if (st.prefill === 'pending') {
      st.prefill = 'no';
      if (this.prefillProfile !== null && this.prefillDecider !== null) {
        const d = this.prefillDecider.disaggregate(req, target);
        st.prefillReason = d.reason;
        if (d.yes) {
          st.prefill = 'yes';
          return this.prefillProfile;
        }
      } else {
        st.prefillReason = this.prefillProfile === null ? 'no prefill profile' : 'no prefill decider';
      }
    }
    return NONE;
  }

  processResults(
    req: InferenceRequest,
    results: ReadonlyMap<string, ProfileRunResult | null>,
  ): SchedulingResult {
    const s = this.settings;
    const decode = results.get(s.decode);
    if (decode === null || decode === undefined) {
      throw new SchedulingFailedError('failed to find available decode workers');
    }
    return { profileResults: results, primaryProfileName: s.decode, pd: this.decision(req, results) };
  }

  private decision(req: InferenceRequest, results: ReadonlyMap<string, ProfileRunResult | null>): PdDecision {
    const s = this.settings;
    const st = req.state.read(STAGES);
    const prefill = results.get(s.prefill);
    const encode = results.get(s.encode);
    const hasPrefill = prefill !== null && prefill !== undefined && prefill.targetEndpoints.length > 0;
    const hasEncode = encode !== null && encode !== undefined && encode.targetEndpoints.length > 0;
    const decision = hasEncode
      ? hasPrefill
        ? 'encode-prefill-decode'
        : 'encode-decode'
      : hasPrefill
        ? 'prefill-decode'
        : 'decode-only';
    let reason = st?.prefillReason ?? '';
    if (st?.prefill === 'yes' && !hasPrefill) reason = `${reason}; but no prefill endpoint was available`;
    if (hasEncode && st?.encodeReason) reason = `encode: ${st.encodeReason}; prefill: ${reason}`;
    return { decision, reason };
  }

  preRequest(req: InferenceRequest, result: SchedulingResult): void {
    const h = req.headers;
    delete h[PREFILLER_HEADER];
    delete h[ENCODERS_HEADER];
    const prefill = result.profileResults.get(this.settings.prefill);
    if (prefill && prefill.targetEndpoints.length > 0) {
      h[PREFILLER_HEADER] = prefill.targetEndpoints[0]!.meta.hostPort;
    }
    const encode = result.profileResults.get(this.settings.encode);
    if (encode && encode.targetEndpoints.length > 0) {
      h[ENCODERS_HEADER] = encode.targetEndpoints.map((e) => e.meta.hostPort).join(',');
    }
  }
}
