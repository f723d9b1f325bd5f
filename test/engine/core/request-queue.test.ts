import { describe, expect, it } from 'vitest';
import { RequestQueue } from '../../../src/engine/core/request-queue.js';

describe('RequestQueue', () => {
  it('pops in FIFO order and puts pushed-front items first', () => {
    const q = new RequestQueue<number>(2);
    for (let i = 0; i < 20; i++) q.pushBack(i);
    expect(q.popFront()).toBe(0);
    q.pushFront(-1);
    q.pushFront(-2);
    expect(q.size).toBe(21);
    expect(q.toArray().slice(0, 4)).toEqual([-2, -1, 1, 2]);
    expect(q.peekFront()).toBe(-2);
  });

  it('keeps its order across wrap-around and growth', () => {
    const q = new RequestQueue<number>(8);
    const model: number[] = [];
    let next = 0;
    for (let round = 0; round < 200; round++) {
      if (round % 3 === 0) {
        q.pushFront(next);
        model.unshift(next++);
      } else {
        q.pushBack(next);
        model.push(next++);
      }
      if (round % 4 === 0) expect(q.popFront()).toBe(model.shift());
    }
    expect(q.toArray()).toEqual(model);
  });

  it('removes an item from the middle', () => {
    const q = new RequestQueue<string>();
    for (const s of ['a', 'b', 'c', 'd']) q.pushBack(s);
    expect(q.remove('c')).toBe(true);
    expect(q.remove('x')).toBe(false);
    expect(q.toArray()).toEqual(['a', 'b', 'd']);
    expect(q.popFront()).toBe('a');
    expect(q.popFront()).toBe('b');
    expect(q.popFront()).toBe('d');
    expect(q.popFront()).toBeUndefined();
  });
});
