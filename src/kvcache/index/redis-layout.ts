/**
 * llm-d's Redis key layout for the KV-block index (router `pkg/kvcache/kvblock/redis.go`), byte for
 * byte, so that one Redis can be shared by our EPP replicas and llm-d's Go ones:
 *
 *  - a request key is a HASH named by the key's decimal uint64 (`"1234567890123"`); each field is a
 *    PodEntry as Go's `encoding/json` writes the Go struct, value `""`:
 *    `{"PodIdentifier":"10.0.0.5:8000","DeviceTier":"gpu","Speculative":false,"HasGroup":false,"GroupIdx":0}`
 *    (Go adds `"retrievalSpan":n` when a span > 1 was recorded; we never write it and ignore it);
 *  - an engine key is a ZSET `engine:<decimal>` whose members are decimal request keys, scored by
 *    their position in the mapping, so the highest score is the last mapped key.
 *
 * Decoding follows `json.Unmarshal` into that struct, and is tolerant as upstream is: a field that is
 * not such an object (another writer's, a legacy `pod@tier` field, garbage) yields null and is skipped.
 */
import type { PodEntry } from './index.js';

/** Prefix of the engine-key ZSETs: SCAN skips them when clearing a pod. */
export const ENGINE_KEY_PREFIX = 'engine:';

/**
 * The decimal form of a 64-bit key given as [hi, lo], without bigint (the score path names 512 keys
 * per prompt): hi·2^32 + lo = (hi·4294 + carry)·10^6 + rest, where a = hi·967296 + lo < 2^53.
 */
export function decimalKey(hi: number, lo: number): string {
  if (hi === 0) return String(lo);
  const a = hi * 967296 + lo;
  const rest = a % 1e6;
  const top = hi * 4294 + (a - rest) / 1e6;
  const r = String(rest);
  return String(top) + '000000'.slice(r.length) + r;
}

/** The [hi, lo] halves of a decimal uint64 (a ZSET member); null when it is not one. */
export function parseDecimalKey(s: string): readonly [number, number] | null {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(s)) return null;
  const v = BigInt(s);
  if (v >= 1n << 64n) return null;
  return [Number(v >> 32n), Number(v & 0xffffffffn)];
}

export function engineKeyName(hi: number, lo: number): string {
  return ENGINE_KEY_PREFIX + decimalKey(hi, lo);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
/** What Go's encoder escapes beyond JSON.stringify: HTML-significant characters and JS line ends. */
const GO_HTML_ESCAPES = /[<>&\u2028\u2029]/g;

/**
 * A string as Go's `encoding/json` writes it: JSON.stringify's escapes (the same as Go's since Go
 * 1.22, `\b` and `\f` included), plus `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`; a lone
 * surrogate cannot be valid UTF-8, so Go writes U+FFFD in its place.
 */
function goString(s: string): string {
  const j = JSON.stringify(s.replace(LONE_SURROGATE, '\ufffd'));
  return j.replace(GO_HTML_ESCAPES, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** The hash field of an entry: the Go struct's JSON, fields in declaration order. */
export function encodePodField(e: PodEntry): string {
  return (
    '{"PodIdentifier":' +
    goString(e.pod) +
    ',"DeviceTier":' +
    goString(e.tier) +
    ',"Speculative":' +
    (e.speculative ? 'true' : 'false') +
    ',"HasGroup":' +
    (e.groupIdx === null ? 'false' : 'true') +
    ',"GroupIdx":' +
    String(e.groupIdx ?? 0) +
    '}'
  );
}

/**
 * Go matches JSON keys to struct fields exactly first, then ASCII-case-insensitively; we do the same,
 * and treat two case-variants of one field (with no exact key) as undecodable rather than guess.
 */
function member(obj: Record<string, unknown>, name: string): { ok: boolean; value: unknown } {
  if (Object.prototype.hasOwnProperty.call(obj, name)) return { ok: true, value: obj[name] };
  const lower = name.toLowerCase();
  let found: unknown = undefined;
  let n = 0;
  for (const k of Object.keys(obj)) {
    if (k.length === lower.length && asciiLower(k) === lower) {
      found = obj[k];
      n++;
    }
  }
  return { ok: n <= 1, value: found };
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function stringMember(obj: Record<string, unknown>, name: string): string | null {
  const m = member(obj, name);
  if (!m.ok) return null;
  if (m.value === undefined || m.value === null) return '';
  return typeof m.value === 'string' ? m.value : null;
}

function boolMember(obj: Record<string, unknown>, name: string): boolean | null {
  const m = member(obj, name);
  if (!m.ok) return null;
  if (m.value === undefined || m.value === null) return false;
  return typeof m.value === 'boolean' ? m.value : null;
}

/**
 * A hash field as a PodEntry, or null when it is not one. Missing or null members take Go's zero
 * values and unknown members are ignored, as `json.Unmarshal` does; a member of the wrong type makes
 * the field undecodable. `HasGroup:false` means no group whatever `GroupIdx` says.
 */
export function decodePodField(field: string): PodEntry | null {
  let v: unknown;
  try {
    v = JSON.parse(field);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const obj = v as Record<string, unknown>;
  const pod = stringMember(obj, 'PodIdentifier');
  const tier = stringMember(obj, 'DeviceTier');
  const speculative = boolMember(obj, 'Speculative');
  const hasGroup = boolMember(obj, 'HasGroup');
  const g = member(obj, 'GroupIdx');
  if (pod === null || tier === null || speculative === null || hasGroup === null || !g.ok) return null;
  let groupIdx = 0;
  if (g.value !== undefined && g.value !== null) {
    if (typeof g.value !== 'number' || !Number.isSafeInteger(g.value)) return null;
    groupIdx = g.value;
  }
  return { pod, tier, speculative, groupIdx: hasGroup ? groupIdx : null };
}
