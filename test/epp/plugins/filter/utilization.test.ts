import { describe, expect, it } from 'vitest';
import { INFLIGHT_LOAD, INFLIGHT_LOAD_ATTR } from '../../../../src/epp/framework/data-keys.js';
import type { Endpoint, EndpointMetrics } from '../../../../src/epp/framework/endpoint.js';
import { UtilizationFilter, definition } from '../../../../src/epp/plugins/filter/utilization.js';
import { create, makeEndpoint, makeRequest } from '../../helpers.js';

function endpoint(metrics: Partial<EndpointMetrics>, inflightRequests?: number): Endpoint {
  const e = makeEndpoint({ metrics });
  if (inflightRequests !== undefined)
    e.attributes.set(INFLIGHT_LOAD_ATTR, { requests: inflightRequests, tokens: 0 });
  return e;
}

describe('utilization-filter', () => {
  const cases: [string, number, Endpoint, boolean][] = [
    ['waiting-queue below the max', 5, endpoint({ waitingQueueSize: 4 }), true],
    ['waiting-queue at the max', 5, endpoint({ waitingQueueSize: 5 }), true],
    ['waiting-queue above the max', 5, endpoint({ waitingQueueSize: 6 }), false],
    ['running-requests at the max', 8, endpoint({ runningRequestsSize: 8 }), true],
    ['running-requests above the max', 8, endpoint({ runningRequestsSize: 9 }), false],
    ['kv-cache-utilization at the max', 0.9, endpoint({ kvCacheUsagePercent: 0.9 }), true],
    ['kv-cache-utilization above the max', 0.9, endpoint({ kvCacheUsagePercent: 0.95 }), false],
    ['active-requests at the max', 3, endpoint({}, 3), true],
    ['active-requests above the max', 3, endpoint({}, 4), false],
    ['active-requests with no in-flight record (0)', 0, endpoint({}), true],
  ];

  it.each(cases)('%s: kept = %s', (title, maxValue, e, kept) => {
    const metric = title.split(' ')[0];
    const f = create<UtilizationFilter>(definition, { conditions: [{ metric, maxValue }] });
    expect(f.filter(makeRequest(), [e]).length).toBe(kept ? 1 : 0);
  });

  it('drops an endpoint that exceeds any one of several conditions', () => {
    const f = create<UtilizationFilter>(definition, {
      conditions: [
        { metric: 'waiting-queue', maxValue: 10 },
        { metric: 'kv-cache-utilization', maxValue: 0.8 },
      ],
    });
    const ok = endpoint({ waitingQueueSize: 10, kvCacheUsagePercent: 0.8 });
    const queued = endpoint({ waitingQueueSize: 11, kvCacheUsagePercent: 0.1 });
    const full = endpoint({ waitingQueueSize: 0, kvCacheUsagePercent: 0.81 });
    expect(f.filter(makeRequest(), [queued, ok, full])).toEqual([ok]);
  });

  it('returns the input array itself when nothing is dropped', () => {
    const f = create<UtilizationFilter>(definition, {
      conditions: [{ metric: 'waiting-queue', maxValue: 1 }],
    });
    const eps = [endpoint({}), endpoint({ waitingQueueSize: 1 })];
    expect(f.filter(makeRequest(), eps)).toBe(eps);
  });

  it('returns nothing when every endpoint is dropped, unless fallbackOnEmpty', () => {
    const eps = [endpoint({ waitingQueueSize: 3 }), endpoint({ waitingQueueSize: 4 })];
    const conditions = [{ metric: 'waiting-queue', maxValue: 2 }];
    expect(create<UtilizationFilter>(definition, { conditions }).filter(makeRequest(), eps)).toEqual([]);
    const fallback = create<UtilizationFilter>(definition, { conditions, fallbackOnEmpty: true });
    expect(fallback.filter(makeRequest(), eps)).toBe(eps);
    // Only a fully emptied set falls back.
    const some = [endpoint({ waitingQueueSize: 3 }), endpoint({ waitingQueueSize: 1 })];
    expect(fallback.filter(makeRequest(), some)).toEqual([some[1]]);
  });

  it('consumes in-flight load only when an active-requests condition needs it', () => {
    const scraped = create<UtilizationFilter>(definition, {
      conditions: [{ metric: 'running-requests', maxValue: 1 }],
    });
    expect(scraped.consumes).toEqual([]);
    const active = create<UtilizationFilter>(definition, {
      conditions: [
        { metric: 'running-requests', maxValue: 1 },
        { metric: 'active-requests', maxValue: 1 },
      ],
      inFlightLoadProducerName: 'inflight',
    });
    expect(active.consumes).toEqual([INFLIGHT_LOAD]);
  });

  const bad: [string, unknown][] = [
    ['no conditions', {}],
    ['an empty condition list', { conditions: [] }],
    ['an unknown metric', { conditions: [{ metric: 'gpu-temperature', maxValue: 1 }] }],
    ['a negative maxValue', { conditions: [{ metric: 'waiting-queue', maxValue: -1 }] }],
    ['a missing maxValue', { conditions: [{ metric: 'waiting-queue' }] }],
    ['an unknown condition field', { conditions: [{ metric: 'waiting-queue', maxValue: 1, min: 0 }] }],
    ['an unknown field', { conditions: [{ metric: 'waiting-queue', maxValue: 1 }], fallback: true }],
    [
      'a non-boolean fallbackOnEmpty',
      { conditions: [{ metric: 'waiting-queue', maxValue: 1 }], fallbackOnEmpty: 1 },
    ],
  ];

  it.each(bad)('rejects %s', (_title, params) => {
    expect(() => create(definition, params)).toThrow();
  });
});
