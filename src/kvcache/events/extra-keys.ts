/**
 * The per-block strings that taint a block's request key, built the same way on both paths so that a
 * salted, LoRA or multimodal request finds the blocks an engine announced for it:
 *
 *  - write path (`eventExtras`): a `BlockStored`'s `extra_keys` as llm-d's `ParseRawExtraKeys` reads
 *    them (strings as they are, `[str, …]` tuples by their first element, anything else skipped, a block
 *    left with nothing is null), minus the LoRA name, realigned to the indexer's block count;
 *  - read path (`requestExtras`): the request's `cache_salt` folded into block 0 after any multimodal
 *    identifiers, as the router's `foldCacheSalt` does.
 *
 * Why drop the LoRA name: vLLM puts it first in every block's `extra_keys`, and the Go parser takes it
 * for a multimodal hash, while the read path only swaps the model for the adapter's name, so LoRA
 * traffic would never match (spec/kvcache.md §2.6). Here the adapter is in the key once, through the
 * chain's root, on both paths.
 */
import type { BlockExtras } from '../keys.js';
import type { ExtraKey } from './decode.js';

/** One engine block's strings: null when none is usable (null, not [], so keys match the read path). */
function blockStrings(block: readonly ExtraKey[] | null, loraName: string | null): string[] | null {
  if (block === null) return null;
  let out: string[] | null = null;
  for (let i = 0; i < block.length; i++) {
    const k = block[i];
    let s: string;
    if (typeof k === 'string') s = k;
    else if (Array.isArray(k) && k.length > 0 && typeof k[0] === 'string') s = k[0];
    else continue;
    if (s === loraName) continue;
    (out ??= []).push(s);
  }
  return out;
}

/**
 * Engine-block extras to `canonical` indexer blocks, as llm-d's `realignExtraFeatures`: equal counts
 * pass through; fewer engine blocks (larger ones) are replicated to each canonical block they cover;
 * more engine blocks (smaller ones) are merged into the canonical block they fall in. The merge keeps
 * each string once, in order of first appearance, because the read path lists a multimodal item once
 * per canonical block it overlaps (llm-d appends duplicates, so such items would never match).
 */
export function realignExtras(
  perEngineBlock: readonly (string[] | null)[],
  canonical: number,
): BlockExtras | null {
  const e = perEngineBlock.length;
  if (canonical === 0 || e === 0) return null;
  if (e === canonical) return perEngineBlock;
  const out = new Array<string[] | null>(canonical).fill(null);
  if (e < canonical) {
    for (let i = 0; i < canonical; i++) out[i] = perEngineBlock[Math.floor((i * e) / canonical)] ?? null;
    return out;
  }
  for (let i = 0; i < e; i++) {
    const src = perEngineBlock[i];
    if (src === null || src === undefined) continue;
    const c = Math.floor((i * canonical) / e);
    const dst = (out[c] ??= []);
    for (const s of src) if (!dst.includes(s)) dst.push(s);
  }
  return out;
}

/**
 * A `BlockStored`'s extras for `canonical` indexer blocks, or null when no block has any (the cheap
 * and common case: the key then encodes `extra` as null, exactly as an all-null list would).
 * `cacheSalt` (SGLang's `metadata.cache_salt`) is folded into block 0 when the event starts a sequence:
 * later events inherit it through the parent's key.
 */
export function eventExtras(
  extraKeys: readonly (readonly ExtraKey[] | null)[] | null,
  loraName: string | null,
  canonical: number,
  cacheSalt: string | null = null,
  startsSequence = false,
): BlockExtras | null {
  let out: BlockExtras | null = null;
  if (extraKeys !== null && canonical > 0) {
    const per = new Array<string[] | null>(extraKeys.length);
    let any = false;
    for (let i = 0; i < extraKeys.length; i++) {
      const s = blockStrings(extraKeys[i] ?? null, loraName);
      per[i] = s;
      if (s !== null) any = true;
    }
    if (any) out = realignExtras(per, canonical);
  }
  if (cacheSalt !== null && cacheSalt !== '' && startsSequence)
    out = foldCacheSalt(out, cacheSalt, canonical);
  return out;
}

/** The router's `foldCacheSalt`: the salt appended to block 0's extras, after any others. */
function foldCacheSalt(extras: BlockExtras | null, salt: string, numBlocks: number): BlockExtras | null {
  if (numBlocks === 0) return extras;
  const out: (readonly string[] | null)[] =
    extras === null ? new Array<null>(numBlocks).fill(null) : [...extras];
  const first = out[0];
  out[0] = first === null || first === undefined ? [salt] : [...first, salt];
  return out;
}

/**
 * The read path's extras for a prompt of `numBlocks` full blocks: multimodal identifiers per block
 * (`mm`, or null), with the request's `cache_salt` folded into block 0. Null when there are none, so
 * an unsalted text prompt costs nothing.
 */
export function requestExtras(
  cacheSalt: string | null | undefined,
  numBlocks: number,
  mm: BlockExtras | null = null,
): BlockExtras | null {
  if (mm !== null && mm.length !== numBlocks) {
    throw new RangeError(`mm extras has ${mm.length} entries for ${numBlocks} full blocks`);
  }
  if (cacheSalt === null || cacheSalt === undefined || cacheSalt === '') return mm;
  return foldCacheSalt(mm, cacheSalt, numBlocks);
}
