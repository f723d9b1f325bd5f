import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../../src/core/log.js';
import { INFLIGHT_LOAD, INFLIGHT_LOAD_ATTR } from '../../../../src/epp/framework/data-keys.js';
import type { Endpoint } from '../../../../src/epp/framework/endpoint.js';
import type { PluginHandle } from '../../../../src/epp/framework/plugin.js';
import { ActiveRequestScorer, TYPE, definition } from '../../../../src/epp/plugins/scorer/active-request.js';
import { create, makeEndpoints, makeRequest, testHandle } from '../../helpers.js';

function endpoints(counts: (number | undefined)[]): Endpoint[] {
  const eps = makeEndpoints(counts.length);
  counts.forEach((c, i) => {
    if (c !== undefined) eps[i]!.attributes.set(INFLIGHT_LOAD_ATTR, { requests: c, tokens: 1000 * c });
  });
  return eps;
}

function scores(params: unknown, counts: (number | undefined)[]): number[] {
  const eps = endpoints(counts);
  const out = new Float64Array(eps.length);
  create<ActiveRequestScorer>(definition, params).score(makeRequest(), eps, out);
  return [...out];
}

/** A handle whose logger keeps what it writes. */
function loggingHandle(): { handle: PluginHandle; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { handle: { ...testHandle(), logger: createLogger('warn', 'test', sink) }, lines };
}

describe('active-request-scorer', () => {
  const cases: [string, unknown, (number | undefined)[], number[]][] = [
    ['idle endpoints score 1, busy ones (max − c)/max', {}, [0, 2, 4], [1, 0.5, 0]],
    ['a missing in-flight record counts as 0', {}, [undefined, 3], [1, 0]],
    ['all idle', {}, [0, 0, undefined], [1, 1, 1]],
    ['all equally busy score 0', {}, [5, 5], [0, 0]],
    ['idleThreshold 2 makes ≤ 2 idle', { idleThreshold: 2 }, [0, 2, 3, 6], [1, 1, 0.5, 0]],
    ['maxBusyScore 0.5 caps busy endpoints', { maxBusyScore: 0.5 }, [0, 1, 4], [1, 0.375, 0]],
    ['maxBusyScore 0 leaves only idle endpoints scored', { maxBusyScore: 0 }, [0, 1], [1, 0]],
  ];

  it.each(cases)('%s', (_title, params, counts, want) => {
    const got = scores(params, counts);
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 12));
  });

  it('consumes in-flight load, so the loader adds inflight-load-producer', () => {
    const s = create<ActiveRequestScorer>(definition);
    expect(s.consumes).toEqual([INFLIGHT_LOAD]);
    expect(INFLIGHT_LOAD.defaultProducer).toBe('inflight-load-producer');
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('distribution');
  });

  it('accepts the deprecated requestTimeout, ignores it and warns', () => {
    const { handle, lines } = loggingHandle();
    create<ActiveRequestScorer>(definition, { requestTimeout: '2m' }, handle);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/requestTimeout is deprecated/);
    expect(scores({ requestTimeout: 120 }, [0, 1])).toEqual([1, 0]);
    const quiet = loggingHandle();
    create<ActiveRequestScorer>(definition, { inFlightLoadProducerName: 'inflight' }, quiet.handle);
    expect(quiet.lines).toHaveLength(0);
  });

  const bad: [string, unknown][] = [
    ['a negative idleThreshold', { idleThreshold: -1 }],
    ['a fractional idleThreshold', { idleThreshold: 0.5 }],
    ['maxBusyScore above 1', { maxBusyScore: 1.5 }],
    ['a negative maxBusyScore', { maxBusyScore: -0.1 }],
    ['an unknown field', { idle: 1 }],
  ];

  it.each(bad)('rejects %s', (_title, params) => {
    expect(() => create(definition, params)).toThrow();
  });
});
