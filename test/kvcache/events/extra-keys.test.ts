import { describe, expect, it } from 'vitest';
import { eventExtras, realignExtras, requestExtras } from '../../../src/kvcache/events/extra-keys.js';

describe('extra keys', () => {
  it('reads strings, and tuples by their first string; other values and the LoRA name are dropped', () => {
    expect(eventExtras([['lora', 'img', ['vid', 3], 7, null], null, [1n]], 'lora', 3)).toEqual([
      ['img', 'vid'],
      null,
      null,
    ]);
    // No block with a usable string: null, so the key encodes `extra` as null.
    expect(eventExtras([['lora'], null], 'lora', 2)).toBeNull();
    expect(eventExtras(null, null, 2)).toBeNull();
  });

  it('realigns engine blocks to indexer blocks: replicated when larger, merged once when smaller', () => {
    expect(realignExtras([['a'], null], 4)).toEqual([['a'], ['a'], null, null]);
    expect(realignExtras([['a'], ['a', 'b'], null, ['c']], 2)).toEqual([['a', 'b'], ['c']]);
    expect(realignExtras([['a']], 0)).toBeNull();
  });

  it('folds a cache salt into block 0, after the other keys, only where a sequence starts', () => {
    expect(eventExtras([['img'], null], null, 2, 'salt', true)).toEqual([['img', 'salt'], null]);
    expect(eventExtras(null, null, 2, 'salt', false)).toBeNull();
    expect(requestExtras('salt', 2)).toEqual([['salt'], null]);
    expect(requestExtras('', 2)).toBeNull();
    expect(requestExtras('salt', 2, [['img'], ['img']])).toEqual([['img', 'salt'], ['img']]);
    expect(() => requestExtras(null, 3, [null])).toThrow(RangeError);
  });
});
