/**
 * The consumer side of vLLM's (and SGLang's) KV events: one ZMQ message of three frames
 * `[topic, seq (8 bytes big-endian), msgpack batch]` into typed events with bigint block hashes.
 *
 * Tolerance follows llm-d's adapters (spec/kvcache.md §2): both event encodings (tagged positional
 * arrays, and `type`-tagged maps), a map-encoded batch, positional arrays shorter (older engines) or
 * longer (newer) than ours, unknown map keys ignored, hashes as uint64, int64 (two's complement) or
 * bytes (the last 8, big-endian). An unknown tag or a wrong type in a known field rejects the whole
 * batch, as llm-d does. Every failure is a `KvEventDecodeError`; nothing else escapes.
 */
import { MsgExt, MsgMap, MsgpackError, readMsgpack, type MsgValue } from './msgpack.js';

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

export interface DecodedKvEventBatch {
  /** Unix seconds. */
  readonly ts: number;
  readonly events: readonly DecodedKvEvent[];
  readonly dataParallelRank: number | null;
}

export interface DecodedKvEventMessage {
  readonly topic: string;
  readonly seq: bigint;
  readonly batch: DecodedKvEventBatch;
}

export type KvEventDecodeReason =
  | 'frames' // not three frames, or a sequence frame that is not 8 bytes
  | 'too-large' // payload over the byte limit, or a container over the entry limit
  | 'msgpack' // not one well-formed msgpack value
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

/** Decodes one msgpack batch payload; throws only `KvEventDecodeError`. */
export function decodeKvEventBatch(
  payload: Uint8Array,
  opts: KvEventDecodeOptions = {},
): DecodedKvEventBatch {
  try {
    if (!(payload instanceof Uint8Array)) throw new KvEventDecodeError('frames', 'the payload is not bytes');
    const maxBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    if (payload.length > maxBytes) {
      throw new KvEventDecodeError('too-large', `payload of ${payload.length} bytes exceeds ${maxBytes}`);
    }
    const root = readMsgpack(payload, {
      maxDepth: opts.maxDepth ?? DEFAULT_MAX_DEPTH,
      maxItems: opts.maxItems ?? DEFAULT_MAX_ITEMS,
    });
    return batchOf(root, opts.dialect ?? 'vllm');
  } catch (err) {
    if (err instanceof KvEventDecodeError) throw err;
    if (err instanceof MsgpackError)
      throw new KvEventDecodeError(err.overLimit ? 'too-large' : 'msgpack', err.message);
    // Anything else (e.g. an engine limit on a pathological value) is still bad input, not our bug.
    throw new KvEventDecodeError('msgpack', err instanceof Error ? err.message : 'undecodable payload');
  }
}

/** llm-d's topic convention `kv@<pod>@<model>`; any other shape is a bare pod id. */
export function parseTopic(topic: string): { pod: string; model: string } {
  const parts = topic.split('@');
  if (parts.length === 3) return { pod: parts[1] as string, model: parts[2] as string };
  return { pod: topic, model: '' };
}

// ---- schema -------------------------------------------------------------------------------------

function schema(message: string): KvEventDecodeError {
  return new KvEventDecodeError('schema', message);
}

function batchOf(root: MsgValue, dialect: KvEventDialect): DecodedKvEventBatch {
  let ts: MsgValue | undefined;
  let events: MsgValue | undefined;
  let rank: MsgValue | undefined;
  if (Array.isArray(root)) {
    if (root.length < 2) throw schema(`a batch needs [ts, events], got ${root.length} elements`);
    [ts, events, rank] = root;
  } else if (root instanceof MsgMap) {
    ts = root.get('ts');
    events = root.get('events');
    rank = root.get('data_parallel_rank') ?? root.get('attn_dp_rank');
  } else {
    throw schema('a batch is an array or a map');
  }
  if (typeof ts !== 'number') throw schema('batch `ts` is not a number');
  if (!Array.isArray(events)) throw schema('batch `events` is not an array');
  const out: DecodedKvEvent[] = new Array<DecodedKvEvent>(events.length);
  for (let i = 0; i < events.length; i++) out[i] = eventOf(events[i] as MsgValue, dialect);
  return { ts, events: out, dataParallelRank: optInt(rank, 'data_parallel_rank') };
}

/** The fields of one event by name, from either encoding. */
interface Fields {
  tag: string;
  /** A field by its name (maps) or its position after the tag at 0 (arrays); undefined when absent. */
  get(name: string, pos: number): MsgValue | undefined;
  readonly isMap: boolean;
}

function fieldsOf(ev: MsgValue): Fields {
  if (Array.isArray(ev)) {
    const tag = ev[0];
    if (typeof tag !== 'string') throw schema('an event array does not start with its tag');
    return { tag, isMap: false, get: (_name, pos) => ev[pos] };
  }
  if (ev instanceof MsgMap) {
    const tag = ev.get('type');
    if (typeof tag !== 'string') throw schema('an event map has no string `type`');
    return { tag, isMap: true, get: (name) => ev.get(name) };
  }
  throw schema('an event is an array or a map');
}

function eventOf(ev: MsgValue, dialect: KvEventDialect): DecodedKvEvent {
  const f = fieldsOf(ev);
  switch (f.tag) {
    case 'BlockStored':
      return dialect === 'sglang' ? sglangStored(f) : vllmStored(f);
    case 'BlockRemoved':
      return {
        type: 'BlockRemoved',
        blockHashes: hashList(f.get('block_hashes', 1), 'block_hashes'),
        medium: optStr(f.get('medium', 2), 'medium'),
        groupIdx: dialect === 'sglang' && !f.isMap ? null : groupIdx(f.get('group_idx', 3)),
      };
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' };
    default:
      throw new KvEventDecodeError('unknown-tag', `unknown event tag ${JSON.stringify(f.tag.slice(0, 64))}`);
  }
}

function vllmStored(f: Fields): DecodedBlockStored {
  return {
    type: 'BlockStored',
    blockHashes: hashList(f.get('block_hashes', 1), 'block_hashes'),
    parentBlockHash: optHash(f.get('parent_block_hash', 2), 'parent_block_hash'),
    tokenIds: tokenList(f.get('token_ids', 3), false),
    blockSize: blockSize(f.get('block_size', 4)),
    loraId: optInt(f.get('lora_id', 5), 'lora_id'),
    medium: optStr(f.get('medium', 6), 'medium'),
    loraName: optStr(f.get('lora_name', 7), 'lora_name'),
    extraKeys: extraKeys(f.get('extra_keys', 8)),
    groupIdx: groupIdx(f.get('group_idx', 9)),
    kvCacheSpecKind: optStr(f.get('kv_cache_spec_kind', 10), 'kv_cache_spec_kind'),
    kvCacheSpecSlidingWindow: optInt(
      f.get('kv_cache_spec_sliding_window', 11),
      'kv_cache_spec_sliding_window',
    ),
    cacheSalt: null,
  };
}

/**
 * SGLang's `BlockStored` is vLLM's first six fields (`medium` last, with a default) and, when the
 * request had a cache salt, a trailing `metadata` map `{cache_salt}`; its token ids may be tuples.
 */
function sglangStored(f: Fields): DecodedBlockStored {
  let cacheSalt: string | null = null;
  const meta = f.get('metadata', 7);
  if (meta instanceof MsgMap) cacheSalt = optStr(meta.get('cache_salt'), 'metadata.cache_salt');
  else if (meta !== null && meta !== undefined) throw schema('`metadata` is not a map');
  return {
    type: 'BlockStored',
    blockHashes: hashList(f.get('block_hashes', 1), 'block_hashes'),
    parentBlockHash: optHash(f.get('parent_block_hash', 2), 'parent_block_hash'),
    tokenIds: tokenList(f.get('token_ids', 3), true),
    blockSize: blockSize(f.get('block_size', 4)),
    loraId: optInt(f.get('lora_id', 5), 'lora_id'),
    medium: optStr(f.get('medium', 6), 'medium'),
    loraName: f.isMap ? optStr(f.get('lora_name', -1), 'lora_name') : null,
    extraKeys: null,
    groupIdx: null,
    kvCacheSpecKind: null,
    kvCacheSpecSlidingWindow: null,
    cacheSalt,
  };
}

// ---- field types ----------------------------------------------------------------------------------

const U64 = 64;

/** llm-d's `getHashAsUint64`: ints as uint64 (negative int64 reinterpreted), bytes by their last 8. */
function hashOf(v: MsgValue | undefined, field: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw schema(`\`${field}\` holds a non-integer number`);
    return v >= 0 ? BigInt(v) : BigInt.asUintN(U64, BigInt(v));
  }
  // The reader returns bigint only outside ±2^53: a uint64 as is, a negative int64 reinterpreted.
  if (typeof v === 'bigint') return v > 0n ? v : BigInt.asUintN(U64, v);
  if (v instanceof Uint8Array) {
    if (v.length === 0) throw schema(`\`${field}\` holds an empty bytes hash`);
    const from = Math.max(0, v.length - 8);
    let h = 0n;
    for (let i = from; i < v.length; i++) h = (h << 8n) | BigInt(v[i] as number);
    return h;
  }
  throw schema(`\`${field}\` holds a value that is not a hash`);
}

function optHash(v: MsgValue | undefined, field: string): bigint | null {
  return v === null || v === undefined ? null : hashOf(v, field);
}

function hashList(v: MsgValue | undefined, field: string): bigint[] {
  if (!Array.isArray(v)) throw schema(`\`${field}\` is not an array`);
  const out: bigint[] = new Array<bigint>(v.length);
  for (let i = 0; i < v.length; i++) out[i] = hashOf(v[i], field);
  return out;
}

function tokenOf(v: MsgValue | undefined): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw schema('`token_ids` holds a non-token value');
  return v;
}

function tokenList(v: MsgValue | undefined, flattenTuples: boolean): number[] {
  if (!Array.isArray(v)) throw schema('`token_ids` is not an array');
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const t = v[i];
    if (flattenTuples && Array.isArray(t)) for (const x of t) out.push(tokenOf(x));
    else out.push(tokenOf(t));
  }
  return out;
}

function blockSize(v: MsgValue | undefined): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw schema('`block_size` is not a positive integer');
  return v;
}

function optInt(v: MsgValue | undefined, field: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw schema(`\`${field}\` is not an integer`);
  return v;
}

function groupIdx(v: MsgValue | undefined): number | null {
  const g = optInt(v, 'group_idx');
  if (g !== null && g < 0) throw schema('`group_idx` is negative');
  return g;
}

function optStr(v: MsgValue | undefined, field: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw schema(`\`${field}\` is not a string`);
  return v;
}

function extraKey(v: MsgValue): ExtraKey {
  if (Array.isArray(v)) return v.map(extraKey);
  // Maps and extensions carry nothing a key derivation uses (llm-d skips them too).
  if (v instanceof MsgMap || v instanceof MsgExt) return null;
  return v;
}

function extraKeys(v: MsgValue | undefined): (ExtraKey[] | null)[] | null {
  if (v === null || v === undefined) return null;
  if (!Array.isArray(v)) throw schema('`extra_keys` is not an array');
  return v.map((block) => {
    if (block === null) return null;
    if (!Array.isArray(block)) throw schema('`extra_keys` holds a block that is not an array');
    return block.map(extraKey);
  });
}
