/**
 * The bytes a simulated KV block carries between servers. A block's content is derived from the tokens
 * it holds and the ones before it (a chained XXH64 over the prompt), never from `PYTHONHASHSEED` or
 * block ids, so a prefiller and a decoder that were given the same prompt agree on every block without
 * sharing anything else — and a decoder can check each block it received, byte for byte.
 *
 * A payload is the block's 8-byte seed (big-endian) followed by a 64-byte pattern derived from the seed,
 * repeated: filling and comparing it are native memory operations, so generating and verifying cost
 * far less than moving the bytes.
 */
import { xxh64 } from '@node-rs/xxhash';

/** The smallest payload: the seed, and room for a little pattern. */
export const MIN_BLOCK_BYTES = 16;

/**
 * One seed per block of `promptTokenIds` (the last, partial block included), chained: block i's seed
 * hashes its token ids (uint32 little-endian) with block i−1's seed.
 */
export function blockSeeds(model: string, promptTokenIds: readonly number[], blockSize: number): bigint[] {
  const n = Math.ceil(promptTokenIds.length / blockSize);
  const seeds: bigint[] = new Array<bigint>(n);
  let prev = xxh64(Buffer.from(model, 'utf8'));
  const buf = Buffer.allocUnsafe(blockSize * 4 + 8);
  for (let b = 0; b < n; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, promptTokenIds.length);
    buf.writeBigUInt64LE(prev, 0);
    let off = 8;
    for (let i = start; i < end; i++, off += 4) buf.writeUInt32LE(promptTokenIds[i]! >>> 0, off);
    prev = xxh64(buf.subarray(0, off));
    seeds[b] = prev;
  }
  return seeds;
}

/** The 64-byte pattern of a seed (splitmix64 steps). */
function pattern(seed: bigint, out: Buffer): void {
  let x = seed;
  for (let i = 0; i < 8; i++) {
    x = (x + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    out.writeBigUInt64LE(z ^ (z >> 31n), i * 8);
  }
}

/**
 * Writes the payload of a block with this seed into `out` (its length is the block's byte size): the
 * definition the side channel's template writing and streaming verification must agree with.
 */
export function fillPayload(seed: bigint, out: Buffer, scratch: Buffer = Buffer.allocUnsafe(64)): void {
  out.writeBigUInt64BE(seed, 0);
  pattern(seed, scratch);
  out.fill(scratch, 8);
}

/** The pattern repeated to this length: a template a payload is written from. A multiple of 64. */
export const TEMPLATE_BYTES = 64 * 1024;

/**
 * The pattern of `seed` repeated over `TEMPLATE_BYTES`. A payload of any length is the 8-byte seed
 * followed by templates back to back (the last one cut): the pattern's phase carries over because the
 * template length is a multiple of the pattern's.
 */
export function patternTemplate(seed: bigint, out: Buffer = Buffer.allocUnsafe(TEMPLATE_BYTES)): Buffer {
  const p = Buffer.allocUnsafe(64);
  pattern(seed, p);
  out.fill(p);
  return out;
}

/**
 * Checks a payload as it arrives, piece by piece, without assembling it: each piece is compared with
 * the template at the right offset. One instance checks one block at a time.
 */
export class StreamingVerifier {
  private readonly template = Buffer.allocUnsafe(TEMPLATE_BYTES);
  private readonly seedBytes = Buffer.allocUnsafe(8);
  private offset = 0;
  private length = 0;
  private ok = true;

  begin(seed: bigint, length: number): void {
    patternTemplate(seed, this.template);
    this.seedBytes.writeBigUInt64BE(seed, 0);
    this.offset = 0;
    this.length = length;
    this.ok = length >= MIN_BLOCK_BYTES;
  }

  feed(piece: Buffer): void {
    if (!this.ok) return;
    let i = 0;
    // The seed first.
    while (this.offset < 8 && i < piece.length) {
      if (piece[i] !== this.seedBytes[this.offset]) {
        this.ok = false;
        return;
      }
      i++;
      this.offset++;
    }
    while (i < piece.length) {
      const at = (this.offset - 8) % TEMPLATE_BYTES;
      const n = Math.min(piece.length - i, TEMPLATE_BYTES - at);
      if (piece.compare(this.template, at, at + n, i, i + n) !== 0) {
        this.ok = false;
        return;
      }
      i += n;
      this.offset += n;
    }
  }

  /** Whether every byte matched and exactly `length` arrived. */
  end(): boolean {
    return this.ok && this.offset === this.length;
  }
}
