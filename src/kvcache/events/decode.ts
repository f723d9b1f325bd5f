/**
 * The consumer side of vLLM's (and SGLang's) KV events: one ZMQ message of three frames
 * `[topic, seq (8 bytes big-endian), msgpack batch]` into typed events.
 *
 * Tolerance follows llm-d's adapters (spec/kvcache.md §2): both event encodings (tagged positional
 * arrays, and `type`-tagged maps), a map-encoded batch, positional arrays shorter (older engines) or
 * longer (newer) than ours, unknown map keys ignored, hashes as uint64, int64 (two's complement) or
 * bytes (the last 8, big-endian). Unlike llm-d, one bad event does not cost its batch (spec §9): an
 * event with an unknown tag or a wrong type in a field it uses is skipped and reported with its reason
 * in `skipped`, and the events around it are kept. A payload that is not one well-formed msgpack value,
 * goes over a limit, or is not a batch fails as a whole; every failure is a `KvEventDecodeError`.
 *
 * Two outputs from one parser: the packed form the write path consumes (hashes as [hi, lo] pairs of
 * 32-bit halves, tokens in a Uint32Array: no bigint, one allocation per field), and the bigint form of
 * `decodeKvEventBatch` for tests and tools. The parser reads the bytes directly, without building a
 * generic msgpack tree: each event is first walked to find its fields and its end (a broken structure
 * fails the batch there), then its fields are read by type (a bad one fails only that event).
 */
import { keysToBigInts, type KeyList } from '../keys.js';
import {
  MsgExt,
  MsgMap,
  MsgpackError,
  MsgpackReader,
  FIXED_TAIL,
  checkContainer,
  skipMsgpack,
  type MsgValue,
  type ReaderLimits,
} from './msgpack.js';

/** Which engine's layout the positional events follow. */
export type KvEventDialect = 'vllm' | 'sglang';

/** One entry of a block's `extra_keys` tuple (LoRA name, multimodal identifiers, cache salt, …). */
export type ExtraKey = string | number | bigint | boolean | null | Uint8Array | readonly ExtraKey[];

export interface DecodedBlockStored {
  readonly type: 'BlockStored';
  readonly blockHashes: readonly bigint[];
  readonly parentBlockHash: bigint | null;
  readonly tokenIds: readonly number[];
  readonly blockSize: number;
  readonly loraId: number | null;
  readonly medium: string | null;
  readonly loraName: string | null;
  /** Per block, or null when the engine sent none. */
  readonly extraKeys: readonly (readonly ExtraKey[] | null)[] | null;
  readonly groupIdx: number | null;
  readonly kvCacheSpecKind: string | null;
  readonly kvCacheSpecSlidingWindow: number | null;
  /** SGLang's `metadata.cache_salt`. */
  readonly cacheSalt: string | null;
}

export interface DecodedBlockRemoved {
  readonly type: 'BlockRemoved';
  readonly blockHashes: readonly bigint[];
  readonly medium: string | null;
  readonly groupIdx: number | null;
}

export interface DecodedAllBlocksCleared {
  readonly type: 'AllBlocksCleared';
}

export type DecodedKvEvent = DecodedBlockStored | DecodedBlockRemoved | DecodedAllBlocksCleared;

/** An event of a batch that was left out, and why. */
export interface SkippedKvEvent {
  /** Its position in the batch's `events`. */
  readonly index: number;
  readonly reason: KvEventDecodeReason;
  readonly message: string;
}

export interface DecodedKvEventBatch {
  /** Unix seconds. */
  readonly ts: number;
  readonly events: readonly DecodedKvEvent[];
  readonly dataParallelRank: number | null;
  /** Events left out of `events` (malformed or of an unknown type); usually empty. */
  readonly skipped: readonly SkippedKvEvent[];
}

export interface DecodedKvEventMessage {
  readonly topic: string;
  readonly seq: bigint;
  readonly batch: DecodedKvEventBatch;
}

/** `BlockStored` with hashes as [hi, lo] pairs: what the write path consumes. */
export interface PackedBlockStored {
  readonly type: 'BlockStored';
  readonly blockHashes: KeyList;
  readonly parentBlockHash: readonly [number, number] | null;
  readonly tokenIds: Uint32Array;
  readonly blockSize: number;
  readonly loraId: number | null;
  readonly medium: string | null;
  readonly loraName: string | null;
  readonly extraKeys: readonly (readonly ExtraKey[] | null)[] | null;
  readonly groupIdx: number | null;
  readonly kvCacheSpecKind: string | null;
  readonly kvCacheSpecSlidingWindow: number | null;
  readonly cacheSalt: string | null;
}

export interface PackedBlockRemoved {
  readonly type: 'BlockRemoved';
  readonly blockHashes: KeyList;
  readonly medium: string | null;
  readonly groupIdx: number | null;
}

export type PackedKvEvent = PackedBlockStored | PackedBlockRemoved | DecodedAllBlocksCleared;

export interface PackedKvEventBatch {
  readonly ts: number;
  readonly events: readonly PackedKvEvent[];
  readonly dataParallelRank: number | null;
  readonly skipped: readonly SkippedKvEvent[];
}

export type KvEventDecodeReason =
  | 'frames' // not three frames, or a sequence frame that is not 8 bytes
  | 'too-large' // payload over the byte limit, or a container over the entry or depth limit
  | 'msgpack' // not one well-formed msgpack value (for one event: a string that is not UTF-8)
  | 'schema' // a field missing or of the wrong type
  | 'unknown-tag'; // an event type this decoder does not know

export class KvEventDecodeError extends Error {
  constructor(
    readonly reason: KvEventDecodeReason,
    message: string,
  ) {
    super(message);
    this.name = 'KvEventDecodeError';
  }
}

export interface KvEventDecodeOptions {
  readonly dialect?: KvEventDialect;
  /** Largest payload accepted, in bytes. */
  readonly maxPayloadBytes?: number;
  /** Most entries in any one array or map (a long prompt's `token_ids` is the largest). */
  readonly maxItems?: number;
  /** Deepest nesting of arrays and maps; real batches nest six deep at most. */
  readonly maxDepth?: number;
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_ITEMS = 1 << 21;
export const DEFAULT_MAX_DEPTH = 16;

const textDecoder = new TextDecoder('utf-8');
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes one ZMQ message; throws only `KvEventDecodeError`. */
export function decodeKvEventMessage(
  frames: readonly Uint8Array[],
  opts: KvEventDecodeOptions = {},
): DecodedKvEventMessage {
  if (!Array.isArray(frames) || frames.length !== 3) {
    throw new KvEventDecodeError(
      'frames',
      `expected 3 frames, got ${Array.isArray(frames) ? frames.length : 0}`,
    );
  }
  const [topicFrame, seqFrame, payload] = frames as [Uint8Array, Uint8Array, Uint8Array];
  if (!(seqFrame instanceof Uint8Array) || seqFrame.length !== 8) {
    throw new KvEventDecodeError('frames', 'the sequence frame is not 8 bytes');
  }
  if (!(topicFrame instanceof Uint8Array)) throw new KvEventDecodeError('frames', 'the topic is not bytes');
  const seq = new DataView(seqFrame.buffer, seqFrame.byteOffset, 8).getBigUint64(0);
  return { topic: textDecoder.decode(topicFrame), seq, batch: decodeKvEventBatch(payload, opts) };
}

/** Decodes one msgpack batch payload into bigint-hashed events; throws only `KvEventDecodeError`. */
export function decodeKvEventBatch(
  payload: Uint8Array,
  opts: KvEventDecodeOptions = {},
): DecodedKvEventBatch {
  const b = decodePackedBatch(payload, opts);
  return {
    ts: b.ts,
    events: b.events.map(unpackEvent),
    dataParallelRank: b.dataParallelRank,
    skipped: b.skipped,
  };
}

/** Decodes one msgpack batch payload into packed events; throws only `KvEventDecodeError`. */
export function decodePackedBatch(payload: Uint8Array, opts: KvEventDecodeOptions = {}): PackedKvEventBatch {
  try {
    if (!(payload instanceof Uint8Array)) throw new KvEventDecodeError('frames', 'the payload is not bytes');
    const maxBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    if (payload.length > maxBytes) {
      throw new KvEventDecodeError('too-large', `payload of ${payload.length} bytes exceeds ${maxBytes}`);
    }
    const limits: ReaderLimits = {
      maxDepth: opts.maxDepth ?? DEFAULT_MAX_DEPTH,
      maxItems: opts.maxItems ?? DEFAULT_MAX_ITEMS,
    };
    try {
      return new BatchParser(payload, limits, opts.dialect ?? 'vllm').batch();
    } catch (err) {
      // A broken structure anywhere outranks a batch that is not shaped as one (the parser may stop
      // at the shape before reaching the damage).
      if (err instanceof KvEventDecodeError && err.reason === 'schema') checkStructure(payload, limits);
      throw err;
    }
  } catch (err) {
    throw asDecodeError(err);
  }
}

function checkStructure(payload: Uint8Array, limits: ReaderLimits): void {
  const end = skipMsgpack(payload, 0, 0, limits);
  if (end !== payload.length) throw new MsgpackError(`${payload.length - end} bytes after the msgpack value`);
}

/** llm-d's topic convention `kv@<pod>@<model>`; any other shape is a bare pod id. */
export function parseTopic(topic: string): { pod: string; model: string } {
  const parts = topic.split('@');
  if (parts.length === 3) return { pod: parts[1] as string, model: parts[2] as string };
  return { pod: topic, model: '' };
}

/** A packed event in the bigint form. */
export function unpackEvent(e: PackedKvEvent): DecodedKvEvent {
  switch (e.type) {
    case 'BlockStored':
      return {
        type: 'BlockStored',
        blockHashes: keysToBigInts(e.blockHashes),
        parentBlockHash:
          e.parentBlockHash === null
            ? null
            : (BigInt(e.parentBlockHash[0]) << 32n) | BigInt(e.parentBlockHash[1]),
        tokenIds: Array.from(e.tokenIds),
        blockSize: e.blockSize,
        loraId: e.loraId,
        medium: e.medium,
        loraName: e.loraName,
        extraKeys: e.extraKeys,
        groupIdx: e.groupIdx,
        kvCacheSpecKind: e.kvCacheSpecKind,
        kvCacheSpecSlidingWindow: e.kvCacheSpecSlidingWindow,
        cacheSalt: e.cacheSalt,
      };
    case 'BlockRemoved':
      return {
        type: 'BlockRemoved',
        blockHashes: keysToBigInts(e.blockHashes),
        medium: e.medium,
        groupIdx: e.groupIdx,
      };
    case 'AllBlocksCleared':
      return e;
  }
}

function asDecodeError(err: unknown): KvEventDecodeError {
  if (err instanceof KvEventDecodeError) return err;
  if (err instanceof MsgpackError)
    return new KvEventDecodeError(err.overLimit ? 'too-large' : 'msgpack', err.message);
  // Anything else (e.g. an engine limit on a pathological value) is still bad input, not our bug.
  return new KvEventDecodeError('msgpack', err instanceof Error ? err.message : 'undecodable payload');
}

function schema(message: string): KvEventDecodeError {
  return new KvEventDecodeError('schema', message);
}

// ---- field names and layouts --------------------------------------------------------------------

/** Where an event's fields are found: one slot per field name either encoding may carry. */
const enum Slot {
  BlockHashes,
  Parent,
  TokenIds,
  BlockSize,
  LoraId,
  Medium,
  LoraName,
  ExtraKeys,
  GroupIdx,
  SpecKind,
  SlidingWindow,
  Metadata,
  Count,
}

const SLOT_NAMES: readonly (readonly [string, Slot])[] = [
  ['block_hashes', Slot.BlockHashes],
  ['parent_block_hash', Slot.Parent],
  ['token_ids', Slot.TokenIds],
  ['block_size', Slot.BlockSize],
  ['lora_id', Slot.LoraId],
  ['medium', Slot.Medium],
  ['lora_name', Slot.LoraName],
  ['extra_keys', Slot.ExtraKeys],
  ['group_idx', Slot.GroupIdx],
  ['kv_cache_spec_kind', Slot.SpecKind],
  ['kv_cache_spec_sliding_window', Slot.SlidingWindow],
  ['metadata', Slot.Metadata],
];
/** The map key of the tag, recognised as a pseudo-slot. */
const TYPE_KEY = -2;
const NO_SLOT = -1;

const utf8 = new TextEncoder();
/** Map keys by byte length, so a key is recognised from its bytes without decoding it. */
const KEYS_BY_LENGTH: [Uint8Array, number][][] = [];
for (const [name, slot] of [...SLOT_NAMES, ['type', TYPE_KEY] as const]) {
  const b = utf8.encode(name);
  (KEYS_BY_LENGTH[b.length] ??= []).push([b, slot]);
}

const enum Tag {
  Unknown = -1,
  Stored = 0,
  Removed = 1,
  Cleared = 2,
}
const TAGS: readonly (readonly [Uint8Array, Tag])[] = [
  [utf8.encode('BlockStored'), Tag.Stored],
  [utf8.encode('BlockRemoved'), Tag.Removed],
  [utf8.encode('AllBlocksCleared'), Tag.Cleared],
];

/** Positional layouts: the slot of each element after the tag. */
const VLLM_STORED: readonly Slot[] = [
  Slot.BlockHashes,
  Slot.Parent,
  Slot.TokenIds,
  Slot.BlockSize,
  Slot.LoraId,
  Slot.Medium,
  Slot.LoraName,
  Slot.ExtraKeys,
  Slot.GroupIdx,
  Slot.SpecKind,
  Slot.SlidingWindow,
];
const VLLM_REMOVED: readonly Slot[] = [Slot.BlockHashes, Slot.Medium, Slot.GroupIdx];
/**
 * SGLang's `BlockStored` is vLLM's first six fields (`medium` last, with a default) and, when the
 * request had a cache salt, a trailing `metadata` map `{cache_salt}`; `BlockRemoved` has no group.
 */
const SGLANG_STORED: readonly Slot[] = [
  Slot.BlockHashes,
  Slot.Parent,
  Slot.TokenIds,
  Slot.BlockSize,
  Slot.LoraId,
  Slot.Medium,
  Slot.Metadata,
];
const SGLANG_REMOVED: readonly Slot[] = [Slot.BlockHashes, Slot.Medium];
const NO_FIELDS: readonly Slot[] = [];

function layoutOf(dialect: KvEventDialect, tag: Tag): readonly Slot[] {
  if (tag === Tag.Stored) return dialect === 'sglang' ? SGLANG_STORED : VLLM_STORED;
  if (tag === Tag.Removed) return dialect === 'sglang' ? SGLANG_REMOVED : VLLM_REMOVED;
  return NO_FIELDS;
}

const GPU = 'GPU';
const CPU = 'CPU';
const EMPTY_SKIPPED: readonly SkippedKvEvent[] = Object.freeze([]);
const TWO_POW_32 = 4294967296;

// ---- the parser -----------------------------------------------------------------------------------

/** Container depths, as the generic reader counts them: root 0, events 1, an event 2, its fields 3. */
const EVENT_DEPTH = 2;
const FIELD_DEPTH = 3;

class BatchParser {
  private pos = 0;
  private readonly view: DataView;
  /** Value offsets of the current event's fields; -1 when absent. */
  private readonly slots = new Int32Array(Slot.Count);
  private generic: MsgpackReader | null = null;
  private events: PackedKvEvent[] = [];
  private skipped: SkippedKvEvent[] | null = null;
  /**
   * The current event's hashes and tokens when the walk could read them on its way (the common case:
   * a well-typed field is read once instead of stepped over, then read), and where they were.
   */
  private preHashes: Uint32Array | null = null;
  private preHashesAt = -1;
  private preTokens: Uint32Array | null = null;
  private preTokensAt = -1;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly limits: ReaderLimits,
    private readonly dialect: KvEventDialect,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  batch(): PackedKvEventBatch {
    const bytes = this.bytes;
    if (bytes.length === 0) throw new MsgpackError('truncated msgpack');
    let ts: number | null = null;
    let rank: number | null = null;
    let sawEvents = false;
    const head = this.containerHead(0);
    if (head.kind === 'array') {
      if (head.n < 2) throw schema(`a batch needs [ts, events], got ${head.n} elements`);
      ts = this.batchTs();
      this.batchEvents();
      sawEvents = true;
      if (head.n > 2) rank = this.batchRank('data_parallel_rank');
      for (let i = 3; i < head.n; i++) this.pos = skipMsgpack(bytes, this.pos, 1, this.limits);
    } else if (head.kind === 'map') {
      let dpRank: number | null = null;
      let attnRank: number | null = null;
      for (let i = 0; i < head.n; i++) {
        const key = this.batchKey();
        if (key === 'ts') ts = this.batchTs();
        else if (key === 'events') {
          // A repeated key: the later one wins, as in Go's and Python's decoders.
          this.events = [];
          this.skipped = null;
          this.batchEvents();
          sawEvents = true;
        } else if (key === 'data_parallel_rank') dpRank = this.batchRank(key);
        else if (key === 'attn_dp_rank') attnRank = this.batchRank(key);
        else this.pos = skipMsgpack(bytes, this.pos, 1, this.limits);
      }
      if (ts === null) throw schema('batch `ts` is not a number');
      if (!sawEvents) throw schema('batch `events` is not an array');
      rank = dpRank ?? attnRank;
    } else {
      this.pos = skipMsgpack(bytes, 0, 0, this.limits);
      this.trailing();
      throw schema('a batch is an array or a map');
    }
    this.trailing();
    return {
      ts: ts as number,
      events: this.events,
      dataParallelRank: rank,
      skipped: this.skipped ?? EMPTY_SKIPPED,
    };
  }

  private trailing(): void {
    const left = this.bytes.length - this.pos;
    if (left !== 0) throw new MsgpackError(`${left} bytes after the msgpack value`);
  }

  /** An array or map head at `pos` (checked against the limits), or the kind of scalar found. */
  private containerHead(depth: number): { kind: 'array' | 'map' | 'other'; n: number } {
    const bytes = this.bytes;
    const b = bytes[this.pos] as number;
    let kind: 'array' | 'map' | 'other' = 'other';
    let n = 0;
    let size = 1;
    if (b >= 0x90 && b <= 0x9f) {
      kind = 'array';
      n = b & 0x0f;
    } else if (b >= 0x80 && b <= 0x8f) {
      kind = 'map';
      n = b & 0x0f;
    } else if (b === 0xdc || b === 0xde) {
      kind = b === 0xdc ? 'array' : 'map';
      this.need(3);
      n = this.view.getUint16(this.pos + 1);
      size = 3;
    } else if (b === 0xdd || b === 0xdf) {
      kind = b === 0xdd ? 'array' : 'map';
      this.need(5);
      n = this.view.getUint32(this.pos + 1);
      size = 5;
    } else {
      return { kind, n };
    }
    checkContainer(n, kind === 'map' ? 2 : 1, bytes.length - this.pos - size, depth, this.limits);
    this.pos += size;
    return { kind, n };
  }

  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw new MsgpackError('truncated msgpack');
  }

  /** Skips a batch-level value's structure first, so a broken one is reported as such. */
  private checked(depth: number): number {
    const start = this.pos;
    this.pos = skipMsgpack(this.bytes, start, depth, this.limits);
    return start;
  }

  private batchTs(): number {
    const at = this.checked(1);
    const end = this.pos;
    this.pos = at;
    const ts = this.number();
    if (ts === null) throw schema('batch `ts` is not a number');
    this.pos = end;
    return ts;
  }

  private batchRank(field: string): number | null {
    const at = this.checked(1);
    const end = this.pos;
    this.pos = at;
    const v = this.optInt(field);
    this.pos = end;
    return v;
  }

  /** A batch map's key as a string (null for other types); the batch keys are few and short. */
  private batchKey(): string | null {
    const at = this.checked(1);
    const end = this.pos;
    this.pos = at;
    const b = this.bytes[at] as number;
    let key: string | null = null;
    if ((b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb) key = this.str('batch key');
    this.pos = end;
    return key;
  }

  private batchEvents(): void {
    const b = this.bytes[this.pos] as number;
    const isArray = (b >= 0x90 && b <= 0x9f) || b === 0xdc || b === 0xdd;
    if (!isArray) {
      this.checked(1);
      throw schema('batch `events` is not an array');
    }
    const { n } = this.containerHead(1);
    for (let i = 0; i < n; i++) this.event(this.events.length + (this.skipped?.length ?? 0));
  }

  /**
   * One event: a walk over its structure records where its fields are and where it ends (a broken
   * structure throws, failing the batch: nothing after it can be found); then its fields are read by
   * type, and a wrong one skips this event only.
   */
  private event(index: number): void {
    const bytes = this.bytes;
    const limits = this.limits;
    const slots = this.slots;
    slots.fill(NO_SLOT);
    this.preHashes = null;
    this.preTokens = null;
    const start = this.pos;
    let tagAt = -1;
    let isMap = false;
    const head = this.containerHead(EVENT_DEPTH);
    if (head.kind === 'array') {
      if (head.n > 0) {
        tagAt = this.pos;
        this.pos = this.skipField();
        const layout = layoutOf(this.dialect, tagOf(bytes, tagAt));
        for (let k = 1; k < head.n; k++) {
          if (k <= layout.length) {
            const slot = layout[k - 1] as Slot;
            slots[slot] = this.pos;
            this.pos = this.fieldEnd(slot);
          } else this.pos = this.skipField();
        }
      }
    } else if (head.kind === 'map') {
      isMap = true;
      for (let k = 0; k < head.n; k++) {
        const slot = slotOfKey(bytes, this.pos);
        this.pos = skipMsgpack(bytes, this.pos, FIELD_DEPTH, limits);
        if (slot === TYPE_KEY) tagAt = this.pos;
        else if (slot !== NO_SLOT) {
          slots[slot] = this.pos;
          this.pos = this.fieldEnd(slot);
          continue;
        }
        this.pos = skipMsgpack(bytes, this.pos, FIELD_DEPTH, limits);
      }
    } else {
      this.pos = skipMsgpack(bytes, start, EVENT_DEPTH, limits);
    }
    const end = this.pos;
    try {
      if (head.kind === 'other') throw schema('an event is an array or a map');
      this.events.push(this.build(tagAt, isMap));
    } catch (err) {
      const e = asDecodeError(err);
      (this.skipped ??= []).push({ index, reason: e.reason, message: e.message });
    }
    this.pos = end;
  }

  /**
   * Where the field at `pos` ends. Block hashes and token ids are read on the way when they are well
   * typed (what `hashesAt`/`tokensAt` would return), so the longest fields are not walked twice; a
   * field that does not read that simply is stepped over, and read (or refused) later as any other.
   * A broken structure throws here exactly as the walk would.
   */
  private fieldEnd(slot: Slot): number {
    const at = this.pos;
    if (slot === Slot.TokenIds) {
      const t = this.tokensFast();
      if (t !== null) {
        this.preTokens = t;
        this.preTokensAt = at;
        return this.pos;
      }
    } else if (slot === Slot.BlockHashes) {
      const h = this.hashesFast();
      if (h !== null) {
        this.preHashes = h;
        this.preHashesAt = at;
        return this.pos;
      }
    }
    this.pos = at;
    return this.skipField();
  }

  /** The end of the field at `pos`: scalars (most fields of an event) inline, the rest walked. */
  private skipField(): number {
    const p = this.pos;
    const f = FIXED_TAIL[this.bytes[p] as number] as number;
    if (f >= 0 && p + 1 + f <= this.bytes.length) return p + 1 + f;
    return skipMsgpack(this.bytes, p, FIELD_DEPTH, this.limits);
  }

  /** An array head at `pos` within the bytes, checked as the walk checks it; -1 when not an array. */
  private arrayHeadChecked(): number {
    const bytes = this.bytes;
    const b = bytes[this.pos] as number;
    let n: number;
    let size: number;
    if (b >= 0x90 && b <= 0x9f) {
      n = b & 0x0f;
      size = 1;
    } else if (b === 0xdc || b === 0xdd) {
      size = b === 0xdc ? 3 : 5;
      if (this.pos + size > bytes.length) return -1;
      n = b === 0xdc ? this.view.getUint16(this.pos + 1) : this.view.getUint32(this.pos + 1);
    } else return -1;
    checkContainer(n, 1, bytes.length - this.pos - size, FIELD_DEPTH, this.limits);
    this.pos += size;
    return n;
  }

  /** Token ids that are all unsigned ints of up to 32 bits; null (pos anywhere) for anything else. */
  private tokensFast(): Uint32Array | null {
    const n = this.arrayHeadChecked();
    if (n < 0) return null;
    const bytes = this.bytes;
    const out = new Uint32Array(n);
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      // The common heads inline, byte by byte (cheaper than DataView calls for two or four bytes).
      const b = bytes[p] as number;
      if (b <= 0x7f) {
        out[i] = b;
        p += 1;
      } else if (b === 0xcd) {
        out[i] = ((bytes[p + 1] as number) << 8) | (bytes[p + 2] as number);
        p += 3;
      } else if (b === 0xce) {
        out[i] =
          ((bytes[p + 1] as number) << 24) |
          ((bytes[p + 2] as number) << 16) |
          ((bytes[p + 3] as number) << 8) |
          (bytes[p + 4] as number);
        p += 5;
      } else if (b === 0xcc) {
        out[i] = bytes[p + 1] as number;
        p += 2;
      } else return null;
    }
    // Reads past the end give undefined (no value above), or move p past it (refused here).
    if (!(p <= bytes.length)) return null;
    this.pos = p;
    return out;
  }

  /** Block hashes that all read as hashes; null (pos anywhere) for anything else. */
  private hashesFast(): Uint32Array | null {
    const n = this.arrayHeadChecked();
    if (n < 0) return null;
    const out = new Uint32Array(2 * n);
    try {
      for (let i = 0; i < n; i++) this.hashInto(out, 2 * i);
    } catch {
      return null;
    }
    if (!(this.pos <= this.bytes.length)) return null;
    return out;
  }

  private build(tagAt: number, isMap: boolean): PackedKvEvent {
    if (tagAt < 0 || !isStr(this.bytes[tagAt] as number)) {
      throw schema(
        isMap ? 'an event map has no string `type`' : 'an event array does not start with its tag',
      );
    }
    const tag = tagOf(this.bytes, tagAt);
    switch (tag) {
      case Tag.Stored:
        return this.stored(isMap);
      case Tag.Removed:
        return {
          type: 'BlockRemoved',
          blockHashes: this.hashesAt(Slot.BlockHashes),
          medium: this.optStrAt(Slot.Medium, 'medium'),
          groupIdx: this.groupIdxAt(),
        };
      case Tag.Cleared:
        return { type: 'AllBlocksCleared' };
      default: {
        this.pos = tagAt;
        const name = this.lossyStr();
        throw new KvEventDecodeError('unknown-tag', `unknown event tag ${JSON.stringify(name.slice(0, 64))}`);
      }
    }
  }

  private stored(isMap: boolean): PackedBlockStored {
    const sglang = this.dialect === 'sglang';
    const blockHashes = this.hashesAt(Slot.BlockHashes);
    const parentBlockHash = this.optHashAt(Slot.Parent);
    const tokenIds = this.tokensAt(sglang);
    const blockSize = this.blockSizeAt();
    const loraId = this.optIntAt(Slot.LoraId, 'lora_id');
    const medium = this.optStrAt(Slot.Medium, 'medium');
    // SGLang's positional layout has no LoRA name; its map layout may.
    const loraName = sglang && !isMap ? null : this.optStrAt(Slot.LoraName, 'lora_name');
    const extraKeys = sglang ? null : this.extraKeysAt();
    const groupIdx = sglang ? null : this.groupIdxAt();
    const kvCacheSpecKind = sglang ? null : this.optStrAt(Slot.SpecKind, 'kv_cache_spec_kind');
    const kvCacheSpecSlidingWindow = sglang
      ? null
      : this.optIntAt(Slot.SlidingWindow, 'kv_cache_spec_sliding_window');
    const cacheSalt = sglang ? this.cacheSaltAt() : null;
    return {
      type: 'BlockStored',
      blockHashes,
      parentBlockHash,
      tokenIds,
      blockSize,
      loraId,
      medium,
      loraName,
      extraKeys,
      groupIdx,
      kvCacheSpecKind,
      kvCacheSpecSlidingWindow,
      cacheSalt,
    };
  }

  // ---- typed field readers (the structure is known to be sound: only types are checked) ----

  /** Moves to a field; false when it is absent or nil. */
  private at(slot: Slot): boolean {
    const p = this.slots[slot] as number;
    if (p < 0 || this.bytes[p] === 0xc0) return false;
    this.pos = p;
    return true;
  }

  /** The element count of an array at `pos`, or -1 when the value is not an array. */
  private arrayLength(): number {
    const b = this.bytes[this.pos] as number;
    if (b >= 0x90 && b <= 0x9f) {
      this.pos += 1;
      return b & 0x0f;
    }
    if (b === 0xdc) {
      const n = this.view.getUint16(this.pos + 1);
      this.pos += 3;
      return n;
    }
    if (b === 0xdd) {
      const n = this.view.getUint32(this.pos + 1);
      this.pos += 5;
      return n;
    }
    return -1;
  }

  private hashesAt(slot: Slot): KeyList {
    if (this.preHashes !== null && this.preHashesAt === this.slots[slot]) return this.preHashes;
    const n = this.at(slot) ? this.arrayLength() : -1;
    if (n < 0) throw schema('`block_hashes` is not an array');
    const out = new Uint32Array(2 * n);
    for (let i = 0; i < n; i++) this.hashInto(out, 2 * i);
    return out;
  }

  private optHashAt(slot: Slot): readonly [number, number] | null {
    if (!this.at(slot)) return null;
    const out = new Uint32Array(2);
    this.hashInto(out, 0, 'parent_block_hash');
    return [out[0] as number, out[1] as number];
  }

  /**
   * llm-d's `getHashAsUint64`, into two 32-bit halves: unsigned ints as they are, signed ones
   * reinterpreted as two's complement, bytes by their last 8 (big-endian; shorter ones left-padded).
   */
  private hashInto(out: Uint32Array, at: number, field = 'block_hashes'): void {
    const bytes = this.bytes;
    const view = this.view;
    const p = this.pos;
    const b = bytes[p] as number;
    if (b === 0xcf || b === 0xd3) {
      out[at] = view.getUint32(p + 1);
      out[at + 1] = view.getUint32(p + 5);
      this.pos = p + 9;
      return;
    }
    if (b <= 0x7f) {
      out[at] = 0;
      out[at + 1] = b;
      this.pos = p + 1;
      return;
    }
    if (b >= 0xe0) {
      out[at] = 0xffffffff;
      out[at + 1] = (b - 0x100) >>> 0;
      this.pos = p + 1;
      return;
    }
    let v: number;
    switch (b) {
      case 0xcc:
        v = bytes[p + 1] as number;
        this.pos = p + 2;
        break;
      case 0xcd:
        v = view.getUint16(p + 1);
        this.pos = p + 3;
        break;
      case 0xce:
        v = view.getUint32(p + 1);
        this.pos = p + 5;
        break;
      case 0xd0:
        v = view.getInt8(p + 1);
        this.pos = p + 2;
        break;
      case 0xd1:
        v = view.getInt16(p + 1);
        this.pos = p + 3;
        break;
      case 0xd2:
        v = view.getInt32(p + 1);
        this.pos = p + 5;
        break;
      case 0xc4:
      case 0xc5:
      case 0xc6: {
        const lenBytes = b === 0xc4 ? 1 : b === 0xc5 ? 2 : 4;
        const len =
          b === 0xc4 ? (bytes[p + 1] as number) : b === 0xc5 ? view.getUint16(p + 1) : view.getUint32(p + 1);
        if (len === 0) throw schema(`\`${field}\` holds an empty bytes hash`);
        const end = p + 1 + lenBytes + len;
        let hi = 0;
        let lo = 0;
        for (let i = Math.max(p + 1 + lenBytes, end - 8); i < end; i++) {
          hi = ((hi << 8) | (lo >>> 24)) >>> 0;
          lo = ((lo << 8) | (bytes[i] as number)) >>> 0;
        }
        out[at] = hi;
        out[at + 1] = lo;
        this.pos = end;
        return;
      }
      default:
        throw schema(`\`${field}\` holds a value that is not a hash`);
    }
    out[at] = v < 0 ? 0xffffffff : 0;
    out[at + 1] = v >>> 0;
  }

  private tokensAt(flattenTuples: boolean): Uint32Array {
    if (this.preTokens !== null && this.preTokensAt === this.slots[Slot.TokenIds]) return this.preTokens;
    const n = this.at(Slot.TokenIds) ? this.arrayLength() : -1;
    if (n < 0) throw schema('`token_ids` is not an array');
    if (flattenTuples) return this.tokenTuples(n);
    // Only when the walk could not read them as plain ints: each read with its checks.
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.token();
    return out;
  }

  /** SGLang may send a block's tokens as a tuple: flattened. */
  private tokenTuples(n: number): Uint32Array {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const m = this.arrayLength();
      if (m < 0) out.push(this.token());
      else for (let j = 0; j < m; j++) out.push(this.token());
    }
    return Uint32Array.from(out);
  }

  private token(): number {
    const v = this.int('token_ids');
    if (v === null || v < 0 || v > 0xffffffff) throw schema('`token_ids` holds a non-token value');
    return v;
  }

  private blockSizeAt(): number {
    const v = this.at(Slot.BlockSize) ? this.int('block_size') : null;
    if (v === null || v < 1) throw schema('`block_size` is not a positive integer');
    return v;
  }

  private optIntAt(slot: Slot, field: string): number | null {
    return this.at(slot) ? this.optInt(field) : null;
  }

  private optInt(field: string): number | null {
    if (this.bytes[this.pos] === 0xc0) {
      this.pos++;
      return null;
    }
    const v = this.int(field);
    if (v === null) throw schema(`\`${field}\` is not an integer`);
    return v;
  }

  private groupIdxAt(): number | null {
    const g = this.optIntAt(Slot.GroupIdx, 'group_idx');
    if (g !== null && g < 0) throw schema('`group_idx` is negative');
    return g;
  }

  /** An integer of any width within ±2^53 at `pos`; null (nothing consumed) for anything else. */
  private int(field: string): number | null {
    const bytes = this.bytes;
    const view = this.view;
    const p = this.pos;
    const b = bytes[p] as number;
    if (b <= 0x7f) {
      this.pos = p + 1;
      return b;
    }
    if (b >= 0xe0) {
      this.pos = p + 1;
      return b - 0x100;
    }
    switch (b) {
      case 0xcc:
        this.pos = p + 2;
        return bytes[p + 1] as number;
      case 0xcd:
        this.pos = p + 3;
        return view.getUint16(p + 1);
      case 0xce:
        this.pos = p + 5;
        return view.getUint32(p + 1);
      case 0xd0:
        this.pos = p + 2;
        return view.getInt8(p + 1);
      case 0xd1:
        this.pos = p + 3;
        return view.getInt16(p + 1);
      case 0xd2:
        this.pos = p + 5;
        return view.getInt32(p + 1);
      case 0xcf:
      case 0xd3: {
        const hi = b === 0xcf ? view.getUint32(p + 1) : view.getInt32(p + 1);
        // Exact whenever the result is a safe integer; a rounded one is not safe, so it is caught.
        const v = hi * TWO_POW_32 + view.getUint32(p + 5);
        if (!Number.isSafeInteger(v)) throw schema(`\`${field}\` is out of range`);
        this.pos = p + 9;
        return v;
      }
      default:
        return null;
    }
  }

  /** A float or an integer at `pos`; null (nothing consumed) for anything else. */
  private number(): number | null {
    const b = this.bytes[this.pos] as number;
    if (b === 0xcb) {
      const v = this.view.getFloat64(this.pos + 1);
      this.pos += 9;
      return v;
    }
    if (b === 0xca) {
      const v = this.view.getFloat32(this.pos + 1);
      this.pos += 5;
      return v;
    }
    return this.int('ts');
  }

  private optStrAt(slot: Slot, field: string): string | null {
    if (!this.at(slot)) return null;
    if (!isStr(this.bytes[this.pos] as number)) throw schema(`\`${field}\` is not a string`);
    return this.str(field);
  }

  /** A string at `pos` (its head is known to be a string's). */
  private str(field: string): string {
    const bytes = this.bytes;
    const b = bytes[this.pos] as number;
    let n: number;
    if (b >= 0xa0 && b <= 0xbf) {
      n = b & 0x1f;
      this.pos += 1;
    } else if (b === 0xd9) {
      n = bytes[this.pos + 1] as number;
      this.pos += 2;
    } else if (b === 0xda) {
      n = this.view.getUint16(this.pos + 1);
      this.pos += 3;
    } else {
      n = this.view.getUint32(this.pos + 1);
      this.pos += 5;
    }
    const start = this.pos;
    this.pos += n;
    // The medium is on every event: no new string for it.
    if (n === 3 && bytes[start + 1] === 0x50 && bytes[start + 2] === 0x55) {
      if (bytes[start] === 0x47) return GPU;
      if (bytes[start] === 0x43) return CPU;
    }
    // Media, kinds and adapter names are short ASCII: building them by hand beats a TextDecoder call.
    if (n <= 24) {
      let ascii = '';
      let i = start;
      for (; i < start + n; i++) {
        const c = bytes[i] as number;
        if (c >= 0x80) break;
        ascii += String.fromCharCode(c);
      }
      if (i === start + n) return ascii;
    }
    try {
      return strictUtf8.decode(bytes.subarray(start, start + n));
    } catch {
      throw new MsgpackError(`invalid UTF-8 in \`${field}\``);
    }
  }

  /** A string for an error message, invalid UTF-8 replaced. */
  private lossyStr(): string {
    const bytes = this.bytes;
    const b = bytes[this.pos] as number;
    const skip = b >= 0xa0 && b <= 0xbf ? 1 : b === 0xd9 ? 2 : b === 0xda ? 3 : 5;
    const end = skipMsgpack(bytes, this.pos, FIELD_DEPTH, this.limits);
    return textDecoder.decode(bytes.subarray(this.pos + skip, end));
  }

  private genericAt(depth: number): MsgValue {
    const r = (this.generic ??= new MsgpackReader(this.bytes, this.limits));
    r.pos = this.pos;
    const v = r.read(depth);
    this.pos = r.pos;
    return v;
  }

  private extraKeysAt(): (ExtraKey[] | null)[] | null {
    if (!this.at(Slot.ExtraKeys)) return null;
    const n = this.arrayLength();
    if (n < 0) throw schema('`extra_keys` is not an array');
    const out = new Array<ExtraKey[] | null>(n);
    for (let i = 0; i < n; i++) {
      if (this.bytes[this.pos] === 0xc0) {
        this.pos++;
        out[i] = null;
        continue;
      }
      const m = this.arrayLength();
      if (m < 0) throw schema('`extra_keys` holds a block that is not an array');
      const block = new Array<ExtraKey>(m);
      for (let j = 0; j < m; j++) block[j] = extraKey(this.genericAt(FIELD_DEPTH + 2));
      out[i] = block;
    }
    return out;
  }

  /** SGLang's `metadata` map: its `cache_salt`. */
  private cacheSaltAt(): string | null {
    if (!this.at(Slot.Metadata)) return null;
    const v = this.genericAt(FIELD_DEPTH);
    if (!(v instanceof MsgMap)) throw schema('`metadata` is not a map');
    const salt = v.get('cache_salt');
    if (salt === undefined || salt === null) return null;
    if (typeof salt !== 'string') throw schema('`metadata.cache_salt` is not a string');
    return salt;
  }
}

function isStr(b: number): boolean {
  return (b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb;
}

/** The bytes of a string value at `p` (offset and length), or null when it is not a string. */
function strBytes(bytes: Uint8Array, p: number): [number, number] | null {
  const b = bytes[p] as number;
  if (b >= 0xa0 && b <= 0xbf) return [p + 1, b & 0x1f];
  if (b === 0xd9) return [p + 2, bytes[p + 1] as number];
  return null;
}

function sameBytes(bytes: Uint8Array, at: number, want: Uint8Array): boolean {
  for (let i = 0; i < want.length; i++) if (bytes[at + i] !== want[i]) return false;
  return true;
}

/** The tag named by the string at `p`, compared as bytes. */
function tagOf(bytes: Uint8Array, p: number): Tag {
  const s = strBytes(bytes, p);
  if (s === null) return Tag.Unknown;
  for (const [name, tag] of TAGS) if (s[1] === name.length && sameBytes(bytes, s[0], name)) return tag;
  return Tag.Unknown;
}

/** The slot of the map key at `p`, compared as bytes; NO_SLOT for any other key. */
function slotOfKey(bytes: Uint8Array, p: number): number {
  const s = strBytes(bytes, p);
  if (s === null) return NO_SLOT;
  const candidates = KEYS_BY_LENGTH[s[1]];
  if (candidates === undefined) return NO_SLOT;
  for (const [name, slot] of candidates) if (sameBytes(bytes, s[0], name)) return slot;
  return NO_SLOT;
}

function extraKey(v: MsgValue): ExtraKey {
  if (Array.isArray(v)) return v.map(extraKey);
  // Maps and extensions carry nothing a key derivation uses (llm-d skips them too).
  if (v instanceof MsgMap || v instanceof MsgExt) return null;
  return v;
}
