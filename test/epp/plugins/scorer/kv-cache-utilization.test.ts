import { describe, expect, it } from 'vitest';
import {
  KvCacheUtilizationScorer,
  TYPE,
  definition,
} from '../../../../src/epp/plugins/scorer/kv-cache-utilization.js';
import { create, makeEndpoints, makeRequest } from '../../helpers.js';

describe('kv-cache-utilization-scorer', () => {
  it('scores 1 − kvCacheUsagePercent', () => {
    const usage = [0, 0.25, 0.8, 1];
    const eps = makeEndpoints(usage.length, (i) => ({ metrics: { kvCacheUsagePercent: usage[i]! } }));
    const out = new Float64Array(eps.length);
    create<KvCacheUtilizationScorer>(definition).score(makeRequest(), eps, out);
    expect([...out]).toEqual([1, 0.75, 1 - 0.8, 0]);
  });

  it('leaves never-scraped endpoints at 0', () => {
    const eps = makeEndpoints(2, (i) => ({ metrics: { kvCacheUsagePercent: 0, updateTime: i } }));
    const out = new Float64Array(2);
    create<KvCacheUtilizationScorer>(definition).score(makeRequest(), eps, out);
    expect([...out]).toEqual([0, 1]);
  });

  it('is a distribution scorer and takes no parameters', () => {
    const s = create<KvCacheUtilizationScorer>(definition);
    expect(s.typedName.type).toBe(TYPE);
    expect(s.category).toBe('distribution');
    expect(() => create(definition, { threshold: 0.5 })).toThrow();
  });
});
