import { describe, expect, it } from 'vitest';
import { ConfigError, SchedulingFailedError } from '../../../../src/core/errors.js';
import { silentLogger } from '../../../../src/core/log.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { PdDecider, Picker, SchedulerProfile } from '../../../../src/epp/framework/scheduling.js';
import {
  DisaggProfileHandler,
  ENCODERS_HEADER,
  PREFILLER_HEADER,
  definition,
} from '../../../../src/epp/plugins/profile/disagg.js';
import { Scheduler } from '../../../../src/epp/scheduler/scheduler.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

const first: Picker = { typedName: { type: 'first', name: 'first' }, pick: (_r, s) => [s.endpoints[0]!] };

function roleProfile(name: string, role: string): SchedulerProfile {
  return {
    name,
    filters: [
      {
        typedName: { type: 'role', name: `${role}-filter` },
        filter: (_r, eps) => eps.filter((e) => e.meta.labels['llm-d.ai/role'] === role),
      },
    ],
    scorers: [],
    picker: first,
  };
}

function decider(name: string, answer: (decode: Endpoint) => boolean): PdDecider & { calls: number } {
  const d = {
    calls: 0,
    typedName: { type: 'test-decider', name },
    disaggregate(_req: unknown, decode: Endpoint) {
      d.calls++;
      return { yes: answer(decode), reason: answer(decode) ? 'long prompt' : 'short prompt' };
    },
  };
  return d;
}

function setup(params: Record<string, unknown>, deciders: PdDecider[], profileNames = ['decode', 'prefill']) {
  const eps = makeEndpoints(4, (i) => ({
    labels: { 'llm-d.ai/role': i < 2 ? 'prefill' : i < 3 ? 'decode' : 'encode' },
  }));
  const handle = testHandle(eps);
  for (const d of deciders) handle.register(d);
  const handler = create<DisaggProfileHandler>(definition, params, handle);
  handler.init();
  const roles: Record<string, string> = {
    decode: 'decode',
    prefill: 'prefill',
    encode: 'encode',
    d2: 'decode',
  };
  const profiles = new Map(profileNames.map((n) => [n, roleProfile(n, roles[n]!)]));
  handler.checkProfiles(profiles);
  const scheduler = new Scheduler({ handler, profiles, logger: silentLogger() });
  return { eps, handler, scheduler };
}

describe('disagg-profile-handler', () => {
  it('runs decode, then prefill when the decider agrees, and sets x-prefiller-host-port', () => {
    const d = decider('pd', () => true);
    const { eps, handler, scheduler } = setup({ deciders: { prefill: 'pd' } }, [d]);
    const req = makeRequest({ headers: { [PREFILLER_HEADER]: '6.6.6.6:1', [ENCODERS_HEADER]: 'evil:1' } });
    const { result } = scheduler.schedule(req, eps);
    expect(result.primaryProfileName).toBe('decode');
    expect(result.profileResults.get('decode')!.targetEndpoints).toEqual([eps[2]]);
    expect(result.profileResults.get('prefill')!.targetEndpoints).toEqual([eps[0]]);
    expect(result.pd).toEqual({ decision: 'prefill-decode', reason: 'long prompt' });
    handler.preRequest(req, result);
    // What the client sent under these names never reaches the sidecar.
    expect(req.headers[PREFILLER_HEADER]).toBe(eps[0]!.meta.hostPort);
    expect(req.headers[ENCODERS_HEADER]).toBeUndefined();
    expect(d.calls).toBe(1);
  });

  it('stays decode-only when the decider says no, and without a decider', () => {
    for (const [params, deciders] of [
      [{ deciders: { prefill: 'pd' } }, [decider('pd', () => false)]],
      [{}, []],
    ] as const) {
      const { eps, handler, scheduler } = setup(params, [...deciders]);
      const req = makeRequest({ headers: { [PREFILLER_HEADER]: '6.6.6.6:1' } });
      const { result } = scheduler.schedule(req, eps);
      expect(result.profileResults.has('prefill')).toBe(false);
      expect(result.pd!.decision).toBe('decode-only');
      handler.preRequest(req, result);
      expect(req.headers[PREFILLER_HEADER]).toBeUndefined();
    }
  });

  it('gives the decider the chosen decode endpoint', () => {
    let seen: Endpoint | null = null;
    const d = decider('pd', (e) => {
      seen = e;
      return false;
    });
    const { eps, scheduler } = setup({ deciders: { prefill: 'pd' } }, [d]);
    scheduler.schedule(makeRequest(), eps);
    expect(seen).toBe(eps[2]);
  });

  it('fails with 429 semantics when no decode endpoint is left', () => {
    const { eps, scheduler } = setup({ deciders: { prefill: 'pd' } }, [decider('pd', () => true)]);
    const prefillOnly = eps.slice(0, 2);
    expect(() => scheduler.schedule(makeRequest(), prefillOnly)).toThrow(SchedulingFailedError);
    try {
      scheduler.schedule(makeRequest(), prefillOnly);
    } catch (e) {
      expect((e as SchedulingFailedError).status).toBe(429);
      expect((e as SchedulingFailedError).droppedReason).toBe('rejected-saturated');
    }
  });

  it('reports decode-only with a reason when prefill was wanted but nothing could prefill', () => {
    const { eps, scheduler } = setup({ deciders: { prefill: 'pd' } }, [decider('pd', () => true)]);
    const { result } = scheduler.schedule(makeRequest(), eps.slice(2));
    expect(result.pd!.decision).toBe('decode-only');
    expect(result.pd!.reason).toMatch(/no prefill endpoint/);
  });

  it('runs the encode stage and lists every encoder', () => {
    const { eps, handler, scheduler } = setup(
      { deciders: { prefill: 'pd', encode: 'enc' } },
      [decider('pd', () => true), decider('enc', () => true)],
      ['decode', 'prefill', 'encode'],
    );
    const req = makeRequest();
    const { result } = scheduler.schedule(req, eps);
    expect(result.pd!.decision).toBe('encode-prefill-decode');
    handler.preRequest(req, result);
    expect(req.headers[ENCODERS_HEADER]).toBe(eps[3]!.meta.hostPort);
  });

  it('accepts custom profile names, nested and in the legacy flat form', () => {
    for (const params of [
      { profiles: { decode: 'd2' }, deciders: { prefill: 'pd' } },
      { decodeProfile: 'd2', deciderPluginName: 'pd' },
    ]) {
      const { eps, scheduler } = setup(params, [decider('pd', () => true)], ['d2', 'prefill']);
      const { result } = scheduler.schedule(makeRequest(), eps);
      expect(result.primaryProfileName).toBe('d2');
      expect(result.pd!.decision).toBe('prefill-decode');
    }
  });

  it('rejects bad configurations with messages naming the field', () => {
    expect(() => definition.params.parse({ decodeProfile: 'x', profiles: { decode: 'y' } })).toThrow(
      /cannot mix/,
    );
    expect(() => definition.params.parse({ deciders: { prefil: 'x' } })).toThrow();
    expect(() => setup({ deciders: { prefill: 'missing' } }, [])).toThrow(
      /deciders.prefill names plugin "missing"/,
    );
    const handle = testHandle();
    handle.register({ typedName: { type: 'queue-scorer', name: 'q' } });
    const h = create<DisaggProfileHandler>(definition, { deciders: { prefill: 'q' } }, handle);
    expect(() => h.init()).toThrow(/not a P\/D decider/);
    expect(() => setup({}, [], ['prefill'])).toThrow(ConfigError);
    expect(() => setup({ deciders: { prefill: 'pd' } }, [decider('pd', () => true)], ['decode'])).toThrow(
      /no scheduling profile named "prefill"/,
    );
  });
});
