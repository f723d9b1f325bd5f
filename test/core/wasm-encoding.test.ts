import { describe, expect, it } from 'vitest';
import { i32c, i64c, sleb, uleb } from '../../src/core/wasm-encoding.js';

describe('WebAssembly LEB128', () => {
  it('encodes unsigned and signed values as the spec examples do', () => {
    expect(uleb(0)).toEqual([0]);
    expect(uleb(624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(sleb(-123456n)).toEqual([0xc0, 0xbb, 0x78]);
    expect(sleb(63n)).toEqual([0x3f]);
    expect(sleb(64n)).toEqual([0xc0, 0x00]);
    expect(sleb(-1n)).toEqual([0x7f]);
  });

  it('writes i32 and i64 constants as two’s complement', () => {
    expect(i32c(-1)).toEqual([0x41, 0x7f]);
    expect(i32c(0xffffffff)).toEqual([0x41, 0x7f]);
    // 0x100000001b3 (FNV-64's prime) and all ones (−1).
    expect(i64c(0x100, 0x1b3)).toEqual([0x42, ...sleb(0x100000001b3n)]);
    expect(i64c(0xffffffff, 0xffffffff)).toEqual([0x42, 0x7f]);
  });
});
