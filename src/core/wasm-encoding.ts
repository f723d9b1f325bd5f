/**
 * The WebAssembly binary encoding the project's small hand-assembled modules share (the request-key
 * hash in kvcache/keys.ts, the prefix hash of the approximate producer): LEB128 integers, local
 * get/set, constants and sections. Used once per module, at load, so clarity over speed.
 */

export type Code = number[];

export const W_I32 = 0x7f;
export const W_I64 = 0x7e;

export function uleb(n: number): Code {
  const out: Code = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 64-bit two's-complement value (an i32 constant's too). */
export function sleb(value: bigint): Code {
  let v = BigInt.asIntN(64, value);
  const out: Code = [];
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const signBit = (byte & 0x40) !== 0;
    if ((v === 0n && !signBit) || (v === -1n && signBit)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

export const get = (i: number): Code => [0x20, ...uleb(i)];
export const set = (i: number): Code => [0x21, ...uleb(i)];
export const i32c = (v: number): Code => [0x41, ...sleb(BigInt(v | 0))];
/** i64.const of hi·2^32 + lo (unsigned halves). */
export const i64c = (hi: number, lo: number): Code => [
  0x42,
  ...sleb((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)),
];

export function section(id: number, items: Code[]): Code {
  const content = [...uleb(items.length), ...items.flat()];
  return [id, ...uleb(content.length), ...content];
}
