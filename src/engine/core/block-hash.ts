/**
 * vLLM's prefix-cache block hashes (`vllm/v1/core/kv_cache_utils.py`, `hash_block_tokens`) for the two
 * cross-language algorithms: `sha256_cbor` and `xxhash_cbor`. A block's hash is H(canonical CBOR of
 * `[parent_hash_bytes, [token ids...], extra_keys | null]`), chained from `NONE_HASH` for the first block,
 * so an indexer (or a real vLLM with the same PYTHONHASHSEED) computes the same values.
 */
import { hash as nodeHash, randomBytes } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { CborWriter } from '../../core/cbor.js';
import type { PrefixHashAlgo } from './types.js';

/** One block's hash: the raw digest (32 bytes for sha256, 16 for xxh3-128) and a string form for maps. */
export interface BlockHash {
  readonly digest: Uint8Array;
  /** The digest as a latin1 string: a cheap, exact key for the cached-block map. */
  readonly key: string;
}

/** Extra keys of one block, in vLLM's order: LoRA name, then the cache salt (first block only). */
export type ExtraKeys = readonly string[] | null;

const writer = new CborWriter(1024);
const digest128 = new Uint8Array(16);
const digest128View = new DataView(digest128.buffer);
const MASK_64 = (1n << 64n) - 1n;

/** H(bytes) for one algorithm: a fresh digest. */
export function digestBytes(algo: PrefixHashAlgo, bytes: Uint8Array): Uint8Array {
  if (algo === 'sha256_cbor') return nodeHash('sha256', bytes, 'buffer');
  const h = xxh3.xxh128(bytes);
  // xxhash.xxh3_128_digest is the canonical (big-endian) form: high 64 bits first.
  digest128View.setBigUint64(0, (h >> 64n) & MASK_64);
  digest128View.setBigUint64(8, h & MASK_64);
  return digest128.slice();
}

/**
 * vLLM's `init_none_hash`: with PYTHONHASHSEED set, `NONE_HASH = H(seed)`, which for the CBOR algorithms is
 * H(CBOR text string of the seed); without it, 32 random bytes per process.
 */
export function computeNoneHash(algo: PrefixHashAlgo, hashSeed: string | undefined): Uint8Array {
  if (hashSeed === undefined) return new Uint8Array(randomBytes(32));
  writer.reset().textString(hashSeed);
  return digestBytes(algo, writer.bytes());
}

/**
 * vLLM's `generate_block_hash_extra_keys` for what llmd supports: the LoRA name, then the cache salt on the
 * block starting at token 0 when the salt is non-empty; null when there is neither.
 */
export function blockExtraKeys(
  blockIndex: number,
  loraName: string | undefined,
  cacheSalt: string | undefined,
): ExtraKeys {
  const salt = blockIndex === 0 && cacheSalt ? cacheSalt : undefined;
  if (loraName === undefined) return salt === undefined ? null : [salt];
  return salt === undefined ? [loraName] : [loraName, salt];
}

/**
 * `hash_block_tokens`: the hash of `tokenIds[start, end)` chained to `parent` (NONE_HASH when null or
 * empty, as vLLM treats any falsy parent).
 */
export function hashBlockTokens(
  algo: PrefixHashAlgo,
  noneHash: Uint8Array,
  parent: Uint8Array | null,
  tokenIds: ArrayLike<number>,
  start: number,
  end: number,
  extraKeys: ExtraKeys,
): Uint8Array {
  const w = writer.reset();
  w.arrayHeader(3);
  w.byteString(parent !== null && parent.length > 0 ? parent : noneHash);
  w.arrayHeader(end - start);
  for (let i = start; i < end; i++) w.uint(tokenIds[i] as number);
  if (extraKeys === null) {
    w.null();
  } else {
    w.arrayHeader(extraKeys.length);
    for (const k of extraKeys) w.textString(k);
  }
  return digestBytes(algo, w.bytes());
}

export function toBlockHash(digest: Uint8Array): BlockHash {
  return { digest, key: Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1') };
}

/**
 * The 64-bit form vLLM publishes in KV events (`maybe_convert_block_hash` with integer hashes):
 * the digest as a big-endian integer masked to 64 bits, i.e. its last 8 bytes.
 */
export function externalBlockHash(digest: Uint8Array): bigint {
  const n = digest.length;
  if (n >= 8) {
    const d = digest;
    const hi = ((d[n - 8]! << 24) | (d[n - 7]! << 16) | (d[n - 6]! << 8) | d[n - 5]!) >>> 0;
    const lo = ((d[n - 4]! << 24) | (d[n - 3]! << 16) | (d[n - 2]! << 8) | d[n - 1]!) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(digest[i] as number);
  return v;
}

/** What the hashes of one token sequence depend on besides its tokens. */
export interface BlockHashParams {
  readonly algo: PrefixHashAlgo;
  readonly noneHash: Uint8Array;
  readonly blockSize: number;
  readonly loraName?: string | undefined;
  readonly cacheSalt?: string | undefined;
}

/**
 * Appends to `hashes` the hashes of every full block of `tokenIds[0, numTokens)` not hashed yet, chaining
 * from the last one already there, as vLLM's request block hasher does when a request's tokens grow.
 */
export function appendBlockHashes(
  params: BlockHashParams,
  tokenIds: ArrayLike<number>,
  numTokens: number,
  hashes: BlockHash[],
): void {
  const bs = params.blockSize;
  let blockIndex = hashes.length;
  let start = blockIndex * bs;
  let parent = blockIndex > 0 ? (hashes[blockIndex - 1] as BlockHash).digest : null;
  while (start + bs <= numTokens) {
    const extra = blockExtraKeys(blockIndex, params.loraName, params.cacheSalt);
    const digest = hashBlockTokens(params.algo, params.noneHash, parent, tokenIds, start, start + bs, extra);
    hashes.push(toBlockHash(digest));
    parent = digest;
    start += bs;
    blockIndex++;
  }
}

/** The hashes of all full blocks of a token list. */
export function computeBlockHashes(params: BlockHashParams, tokenIds: ArrayLike<number>): BlockHash[] {
  const hashes: BlockHash[] = [];
  appendBlockHashes(params, tokenIds, tokenIds.length, hashes);
  return hashes;
}
