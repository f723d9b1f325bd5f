/**
 * What a test expects a memory index to hold, checked exactly: every request key with its entries,
 * nothing more.
 */
import { expect } from 'vitest';
import type { PodEntry } from '../../../src/kvcache/index/index.js';
import type { MemoryIndex } from '../../../src/kvcache/index/memory.js';
import { keyToDecimal, type KeyList } from '../../../src/kvcache/keys.js';

export function entry(pod: string, tier = 'gpu', groupIdx: number | null = null): PodEntry {
  return { pod, tier, speculative: false, groupIdx };
}

function entryName(e: PodEntry): string {
  return `${e.pod}@${e.tier}${e.speculative ? '[spec]' : ''}${e.groupIdx === null ? '' : `[g${e.groupIdx}]`}`;
}

/** Expected state: request key (decimal) → entry names. */
export class ExpectedIndex {
  private readonly keys = new Map<string, Set<string>>();

  /** Keys [from, to) of `keys` held by `e`. */
  hold(keys: KeyList, e: PodEntry, from = 0, to = keys.length >>> 1): this {
    for (let i = from; i < to; i++) {
      const k = keyToDecimal(keys[2 * i]!, keys[2 * i + 1]!);
      let s = this.keys.get(k);
      if (s === undefined) this.keys.set(k, (s = new Set()));
      s.add(entryName(e));
    }
    return this;
  }

  toRecord(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const k of [...this.keys.keys()].sort()) out[k] = [...this.keys.get(k)!].sort();
    return out;
  }
}

export function indexState(index: MemoryIndex): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const rows = [...index.dump()].map(
    (r) => [keyToDecimal(r.hi, r.lo), r.entries.map(entryName).sort()] as const,
  );
  for (const [k, v] of rows.sort((a, b) => (a[0] < b[0] ? -1 : 1))) out[k] = v;
  return out;
}

export function expectIndex(index: MemoryIndex, want: ExpectedIndex): void {
  expect(indexState(index)).toEqual(want.toRecord());
}
