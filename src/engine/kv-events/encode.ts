/**
 * One KV-event batch as vLLM puts it on the wire (vllm/distributed/kv_events.py, msgspec msgpack): the
 * batch is the array `[ts, events, data_parallel_rank]`; each event is either a tagged positional array
 * (`array_like`, vLLM before the map layout: every field present, defaults included) or a map with the
 * tag under `type` and the defaulted fields equal to their default left out (`omit_defaults`).
 *
 * The bytes are written by hand rather than through a generic msgpack encoder: the schema is small and
 * fixed, `ts` must stay a float64 even when it happens to be integral, hashes are uint64 beyond 2^53, and
 * this runs once per engine step. Integers take the smallest msgpack width, as msgspec writes them, so
 * the output is byte-for-byte what msgspec writes for the same field values.
 */
import type { KvEvent } from '../core/types.js';

export interface KvEventEncodeOptions {
  /** The map layout of vLLM ≥ PR #42892 instead of positional arrays. */
  readonly mapFormat?: boolean;
  /** `data_parallel_rank` of the batch; vLLM's publisher fills in its rank (0 without DP). */
  readonly dataParallelRank?: number | null;
}

const UINT64_MAX = (1n << 64n) - 1n;
const UINT32_LIMIT = 0x1_0000_0000n;

/** Pre-encoded msgpack strings: tags and map keys are the same every step. */
function strBytes(s: string): Buffer {
  const body = Buffer.from(s, 'utf8');
  const n = body.length;
  if (n < 32) return Buffer.concat([Buffer.from([0xa0 | n]), body]);
  if (n < 256) return Buffer.concat([Buffer.from([0xd9, n]), body]);
  throw new RangeError('constant string too long');
}

const S = {
  BlockStored: strBytes('BlockStored'),
  BlockRemoved: strBytes('BlockRemoved'),
  AllBlocksCleared: strBytes('AllBlocksCleared'),
  type: strBytes('type'),
  block_hashes: strBytes('block_hashes'),
  parent_block_hash: strBytes('parent_block_hash'),
  token_ids: strBytes('token_ids'),
  block_size: strBytes('block_size'),
  lora_id: strBytes('lora_id'),
  medium: strBytes('medium'),
  lora_name: strBytes('lora_name'),
  group_idx: strBytes('group_idx'),
  extra_keys: strBytes('extra_keys'),
  GPU: strBytes('GPU'),
};

/**
 * Field counts of the last positional vLLM layout (after the tag). Fields the engine does not model
 * are sent as for one full-attention KV-cache group: `lora_id` nil (adapters are known by name only),
 * `group_idx` 0, no spec kind or window; `extra_keys` as vLLM sends them (one entry per block: the LoRA
 * name, and the cache salt on the first block) or nil when no block has any.
 */
const BLOCK_STORED_FIELDS = 11;
const BLOCK_REMOVED_FIELDS = 3;
const GROUP_IDX = 0;

const SLAB_BYTES = 64 * 1024;

/**
 * A reusable encoder. Batches are written one after the other into a slab and handed out as views of
 * it, as Node's own Buffer pool does: no allocation nor copy per batch (the copy alone cost about as
 * much as encoding a one-block step). A slab lives while any of its batches does (e.g. in the replay
 * buffer), and nothing is ever written over a batch once it is returned.
 */
export class KvEventEncoder {
  private buf = Buffer.allocUnsafe(SLAB_BYTES);
  // DataView's setters are intrinsics; Buffer's multi-byte writers are JS with range checks (~10× slower).
  private view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  /** Where the batch being written begins. */
  private start = 0;
  private pos = 0;
  private readonly mapFormat: boolean;
  private readonly rank: number | null;

  constructor(opts: KvEventEncodeOptions = {}) {
    this.mapFormat = opts.mapFormat === true;
    this.rank = opts.dataParallelRank ?? null;
  }

  /** The msgpack payload of one batch; `ts` in unix seconds. The caller may keep it as long as it likes. */
  encode(ts: number, events: readonly KvEvent[]): Buffer {
    this.pos = this.start;
    this.arrayHeader(3);
    this.float64(ts);
    this.arrayHeader(events.length);
    for (let i = 0; i < events.length; i++) this.event(events[i] as KvEvent);
    if (this.rank === null) this.byte(0xc0);
    else this.int(this.rank);
    const out = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    return out;
  }

  private event(e: KvEvent): void {
    switch (e.type) {
      case 'BlockStored':
        if (this.mapFormat) {
          this.mapHeader(e.extraKeys === null ? 9 : 10);
          this.raw(S.type);
          this.raw(S.BlockStored);
          this.raw(S.block_hashes);
          this.hashes(e.blockHashes);
          this.raw(S.parent_block_hash);
          this.optHash(e.parentBlockHash);
          this.raw(S.token_ids);
          this.ints(e.tokenIds);
          this.raw(S.block_size);
          this.int(e.blockSize);
          this.raw(S.lora_id);
          this.byte(0xc0);
          this.raw(S.medium);
          this.raw(S.GPU);
          this.raw(S.lora_name);
          this.optStr(e.loraName);
          // msgspec writes fields in declaration order: extra_keys precedes group_idx.
          if (e.extraKeys !== null) {
            this.raw(S.extra_keys);
            this.extraKeys(e.extraKeys);
          }
          this.raw(S.group_idx);
          this.int(GROUP_IDX);
        } else {
          this.arrayHeader(BLOCK_STORED_FIELDS + 1);
          this.raw(S.BlockStored);
          this.hashes(e.blockHashes);
          this.optHash(e.parentBlockHash);
          this.ints(e.tokenIds);
          this.int(e.blockSize);
          this.byte(0xc0); // lora_id
          this.raw(S.GPU);
          this.optStr(e.loraName);
          if (e.extraKeys === null) this.byte(0xc0);
          else this.extraKeys(e.extraKeys);
          this.int(GROUP_IDX);
          this.byte(0xc0); // kv_cache_spec_kind
          this.byte(0xc0); // kv_cache_spec_sliding_window
        }
        return;
      case 'BlockRemoved':
        if (this.mapFormat) {
          this.mapHeader(4);
          this.raw(S.type);
          this.raw(S.BlockRemoved);
          this.raw(S.block_hashes);
          this.hashes(e.blockHashes);
          this.raw(S.medium);
          this.raw(S.GPU);
          this.raw(S.group_idx);
          this.int(GROUP_IDX);
        } else {
          this.arrayHeader(BLOCK_REMOVED_FIELDS + 1);
          this.raw(S.BlockRemoved);
          this.hashes(e.blockHashes);
          this.raw(S.GPU);
          this.int(GROUP_IDX);
        }
        return;
      case 'AllBlocksCleared':
        if (this.mapFormat) {
          this.mapHeader(1);
          this.raw(S.type);
        } else {
          this.arrayHeader(1);
        }
        this.raw(S.AllBlocksCleared);
        return;
    }
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    // A new slab, carrying over what is written of the current batch; room for the next ones too.
    const written = this.pos - this.start;
    let size = SLAB_BYTES;
    while (size < 2 * (written + n)) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
    this.start = 0;
    this.pos = written;
  }

  private byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** The constants are a few bytes long: a loop beats `Buffer#copy`'s call overhead. */
  private raw(bytes: Buffer): void {
    const n = bytes.length;
    this.ensure(n);
    const b = this.buf;
    for (let i = 0; i < n; i++) b[this.pos + i] = bytes[i] as number;
    this.pos += n;
  }

  private arrayHeader(n: number): void {
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x90 | n;
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xdc;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xdd;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  private mapHeader(n: number): void {
    // Event maps have at most nine entries.
    this.byte(0x80 | n);
  }

  private float64(v: number): void {
    this.ensure(9);
    this.buf[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  /** A safe integer in the smallest msgpack width. */
  private int(v: number): void {
    this.ensure(9);
    const b = this.buf;
    const d = this.view;
    if (v >= 0) {
      if (v < 0x80) b[this.pos++] = v;
      else if (v < 0x100) {
        b[this.pos++] = 0xcc;
        b[this.pos++] = v;
      } else if (v < 0x10000) {
        b[this.pos++] = 0xcd;
        d.setUint16(this.pos, v);
        this.pos += 2;
      } else if (v < 0x1_0000_0000) {
        b[this.pos++] = 0xce;
        d.setUint32(this.pos, v);
        this.pos += 4;
      } else {
        b[this.pos++] = 0xcf;
        d.setBigUint64(this.pos, BigInt(v));
        this.pos += 8;
      }
    } else if (v >= -32) {
      b[this.pos++] = v & 0xff;
    } else if (v >= -0x80) {
      b[this.pos++] = 0xd0;
      d.setInt8(this.pos++, v);
    } else if (v >= -0x8000) {
      b[this.pos++] = 0xd1;
      d.setInt16(this.pos, v);
      this.pos += 2;
    } else if (v >= -0x8000_0000) {
      b[this.pos++] = 0xd2;
      d.setInt32(this.pos, v);
      this.pos += 4;
    } else {
      b[this.pos++] = 0xd3;
      d.setBigInt64(this.pos, BigInt(v));
      this.pos += 8;
    }
  }

  private ints(values: readonly number[]): void {
    this.arrayHeader(values.length);
    for (let i = 0; i < values.length; i++) this.int(values[i] as number);
  }

  /** An unsigned 64-bit hash: real hashes are almost always ≥ 2^32 and take the uint64 form. */
  private hash(h: bigint): void {
    if (h >= UINT32_LIMIT) {
      if (h > UINT64_MAX) throw new RangeError(`block hash ${h} exceeds 64 bits`);
      this.ensure(9);
      this.buf[this.pos++] = 0xcf;
      this.view.setBigUint64(this.pos, h);
      this.pos += 8;
    } else {
      if (h < 0n) throw new RangeError(`block hash ${h} is negative`);
      this.int(Number(h));
    }
  }

  private hashes(values: readonly bigint[]): void {
    this.arrayHeader(values.length);
    for (let i = 0; i < values.length; i++) this.hash(values[i] as bigint);
  }

  private optHash(h: bigint | null): void {
    if (h === null) this.byte(0xc0);
    else this.hash(h);
  }

  /** One entry per stored block: nil, or the block's keys as an array of strings. */
  private extraKeys(keys: readonly (readonly string[] | null)[]): void {
    this.arrayHeader(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k === null || k === undefined) {
        this.byte(0xc0);
        continue;
      }
      this.arrayHeader(k.length);
      for (let j = 0; j < k.length; j++) this.optStr(k[j]!);
    }
  }

  private optStr(s: string | null): void {
    if (s === null) {
      this.byte(0xc0);
      return;
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.ensure(n + 5);
    const b = this.buf;
    if (n < 32) b[this.pos++] = 0xa0 | n;
    else if (n < 0x100) {
      b[this.pos++] = 0xd9;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos++] = 0xda;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      b[this.pos++] = 0xdb;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
    this.pos += b.write(s, this.pos, 'utf8');
  }
}

/** One-off encoding, for tests and tools; the publisher keeps one `KvEventEncoder`. */
export function encodeKvEventBatch(
  ts: number,
  events: readonly KvEvent[],
  opts: KvEventEncodeOptions = {},
): Buffer {
  return new KvEventEncoder(opts).encode(ts, events);
}
