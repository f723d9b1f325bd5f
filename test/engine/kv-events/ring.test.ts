import { describe, expect, it } from 'vitest';
import { Ring } from '../../../src/engine/kv-events/ring.js';

describe('the bounded ring', () => {
  it('is a FIFO that evicts its oldest entry when full', () => {
    const r = new Ring<number>(3);
    expect(r.shift()).toBeUndefined();
    expect([r.push(1), r.push(2), r.push(3)]).toEqual([undefined, undefined, undefined]);
    expect(r.full).toBe(true);
    expect(r.push(4)).toBe(1);
    expect(r.sliceFrom(() => true)).toEqual([2, 3, 4]);
    expect(r.sliceFrom((v) => v >= 3)).toEqual([3, 4]);
    expect(r.shift()).toBe(2);
    expect(r.size).toBe(2);
  });

  it('grows lazily past its first allocation and keeps order across wrap-around', () => {
    const r = new Ring<number>(1000);
    const model: number[] = [];
    for (let i = 0; i < 5000; i++) {
      r.push(i);
      model.push(i);
      if (model.length > 1000) model.shift();
      if (i % 3 === 0) {
        expect(r.shift()).toBe(model.shift());
      }
    }
    expect(r.sliceFrom(() => true)).toEqual(model);
    expect(() => new Ring(0)).toThrow(RangeError);
  });
});
