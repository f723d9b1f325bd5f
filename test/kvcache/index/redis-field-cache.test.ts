import { describe, expect, it } from 'vitest';
import { FieldCache } from '../../../src/kvcache/index/redis-field-cache.js';

describe('FieldCache', () => {
  it('answers what was set, counts hits and misses, and drops invalidated keys', () => {
    const c = new FieldCache(10);
    expect(c.get('1')).toBeUndefined();
    c.set('1', ['a', 'b']);
    c.set('2', []);
    expect(c.get('1')).toEqual(['a', 'b']);
    expect(c.get('2')).toEqual([]);
    c.invalidate(['1', '3']);
    expect(c.get('1')).toBeUndefined();
    expect(c.has('2')).toBe(true);
    expect(c.stats()).toEqual({ size: 1, hits: 2, misses: 2, invalidations: 1, flushes: 0 });
  });

  it('forgets everything on a null invalidation (FLUSHALL) and on flush', () => {
    const c = new FieldCache(10);
    c.set('1', ['a']);
    c.invalidate(null);
    expect(c.size).toBe(0);
    c.set('2', ['a']);
    c.flush();
    expect(c.has('2')).toBe(false);
    expect(c.stats().flushes).toBe(2);
  });

  it('holds at most its capacity, dropping the oldest first, a key set again moving to the back', () => {
    const c = new FieldCache(3);
    c.set('1', []);
    c.set('2', []);
    c.set('3', []);
    c.set('1', ['x']);
    c.set('4', []);
    expect([...['1', '2', '3', '4']].filter((k) => c.has(k))).toEqual(['1', '3', '4']);
    expect(c.size).toBe(3);
  });

  it('caches nothing at capacity 0', () => {
    const c = new FieldCache(0);
    c.set('1', []);
    expect(c.size).toBe(0);
  });
});
