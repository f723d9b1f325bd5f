import { describe, expect, it } from 'vitest';
import {
  AlwaysDisaggPdDecider,
  definition,
  params,
  TYPE,
} from '../../../../../src/epp/plugins/profile/decider/always-disagg.js';
import { create, makeEndpoint, makeRequest } from '../../../helpers.js';

describe('always-disagg-pd-decider', () => {
  it('always disaggregates', () => {
    expect(TYPE).toBe('always-disagg-pd-decider');
    const d = create<AlwaysDisaggPdDecider>(definition);
    expect(d.disaggregate(makeRequest(), makeEndpoint())).toEqual({ yes: true, reason: 'always' });
    expect(d.typedName).toEqual({ type: TYPE, name: TYPE });
  });

  it('takes no parameters', () => {
    expect(params.parse({})).toEqual({});
    expect(() => params.parse({ anything: 1 })).toThrow();
  });
});
