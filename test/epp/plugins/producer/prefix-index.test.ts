import { describe, expect, it } from 'vitest';
import { PrefixIndex } from '../../../../src/epp/plugins/producer/prefix-index.js';
import { makeEndpoint, makeEndpoints } from '../../helpers.js';

/** A chain of `n` made-up 64-bit hashes, distinct per `tag`. */
function chain(tag: number, n: number): Uint32Array {
  const out = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    out[2 * i] = Math.imul(tag * 7919 + i + 1, 2654435761) >>> 0;
    out[2 * i + 1] = (0x80000000 | (tag << 12) | i) >>> 0;
  }
  return out;
}
const prefix = (c: Uint32Array, n: number): Uint32Array => c.subarray(0, 2 * n);
const hashAt = (c: Uint32Array, i: number): [number, number] => [c[2 * i]!, c[2 * i + 1]!];
const pairs = (c: Uint32Array): [number, number][] =>
  Array.from({ length: c.length / 2 }, (_, i) => hashAt(c, i));

function matchAll(index: PrefixIndex, hashes: Uint32Array, n: number): { out: number[]; longest: number } {
  const eps = makeEndpoints(n);
  const out = new Int32Array(n);
  const longest = index.match(hashes, eps, out);
  return { out: Array.from(out), longest };
}

describe('PrefixIndex.match', () => {
  it('counts per endpoint how many leading hashes its server holds, by endpoint slot', () => {
    const index = new PrefixIndex(100);
    const c = chain(1, 6);
    const eps = makeEndpoints(3);
    index.add(eps[0]!.meta.id, prefix(c, 2));
    index.add(eps[2]!.meta.id, prefix(c, 5));
    const out = new Int32Array(3);
    expect(index.match(c, eps, out)).toBe(5);
    expect(Array.from(out)).toEqual([2, 0, 5]);
  });

  it('counts only a leading run: a server without the first hash matches nothing', () => {
    const index = new PrefixIndex(100);
    const c = chain(1, 4);
    index.add('default/pod-0-rank-0', c.subarray(2, 8));
    expect(matchAll(index, c, 1)).toEqual({ out: [0], longest: 0 });
  });

  it('adds to out, so that prompts of one request sum, and returns the longest run', () => {
    const index = new PrefixIndex(100);
    const a = chain(1, 4);
    const b = chain(2, 4);
    const eps = makeEndpoints(2);
    index.add(eps[0]!.meta.id, a);
    index.add(eps[0]!.meta.id, prefix(b, 1));
    index.add(eps[1]!.meta.id, prefix(b, 3));
    const out = new Int32Array(2);
    expect(index.match(a, eps, out)).toBe(4);
    expect(index.match(b, eps, out)).toBe(3);
    expect(Array.from(out)).toEqual([5, 3]);
  });

  it('keys servers by endpoint id: a replacement Endpoint object (another slot) keeps the match', () => {
    const index = new PrefixIndex(100);
    const c = chain(1, 3);
    const old = makeEndpoint({ slot: 0, name: 'a' });
    index.add(old.meta.id, c);
    const replacement = makeEndpoint({ slot: 4, name: 'a' });
    const out = new Int32Array(5);
    index.match(c, [replacement], out);
    expect(out[4]).toBe(3);
    expect(out[0]).toBe(0);
  });

  it('ignores endpoints it does not know and slots beyond out', () => {
    const index = new PrefixIndex(100);
    const c = chain(1, 3);
    const far = makeEndpoint({ slot: 9, name: 'far' });
    index.add(far.meta.id, c);
    const out = new Int32Array(2);
    expect(index.match(c, [makeEndpoint({ slot: 0, name: 'x' }), far], out)).toBe(3);
    expect(Array.from(out)).toEqual([0, 0]);
  });

  it('matches nothing on an empty chain or an empty index', () => {
    const index = new PrefixIndex(100);
    expect(matchAll(index, chain(1, 3), 2).longest).toBe(0);
    index.add('default/pod-0-rank-0', chain(1, 3));
    expect(matchAll(index, new Uint32Array(0), 2)).toEqual({ out: [0, 0], longest: 0 });
  });

  it('sees servers added and removed after an endpoint was first looked up', () => {
    const index = new PrefixIndex(100);
    const c = chain(1, 3);
    const ep = makeEndpoint({ slot: 0, name: 'late' });
    const out = new Int32Array(1);
    index.add('default/other-rank-0', c);
    index.match(c, [ep], out);
    expect(out[0]).toBe(0);
    index.add(ep.meta.id, prefix(c, 2));
    index.match(c, [ep], out);
    expect(out[0]).toBe(2);
    index.remove(ep.meta.id);
    out.fill(0);
    index.match(c, [ep], out);
    expect(out[0]).toBe(0);
  });
});

describe('PrefixIndex LRU', () => {
  it('keeps the head of a chain longer than the capacity', () => {
    const index = new PrefixIndex(3);
    const c = chain(1, 5);
    index.add('s', c);
    expect(pairs(index.hashesOf('s'))).toEqual(pairs(prefix(c, 3)));
    expect(index.size('s')).toBe(3);
  });

  it('evicts least recently used first, and re-adding a hash makes it most recent', () => {
    const index = new PrefixIndex(4);
    const a = chain(1, 2);
    const b = chain(2, 2);
    const c = chain(3, 2);
    index.add('s', a); // MRU a0 a1
    index.add('s', b); // b0 b1 a0 a1
    index.add('s', prefix(a, 1)); // a0 b0 b1 a1
    expect(pairs(index.hashesOf('s'))).toEqual([hashAt(a, 0), hashAt(b, 0), hashAt(b, 1), hashAt(a, 1)]);
    index.add('s', c); // c0 c1 a0 b0 — evicts a1, then b1
    expect(pairs(index.hashesOf('s'))).toEqual([hashAt(c, 0), hashAt(c, 1), hashAt(a, 0), hashAt(b, 0)]);
    expect(index.serversOf(a, 1)).toEqual([]);
    expect(index.serversOf(b, 1)).toEqual([]);
  });

  it('eviction removes only that server from the hash; a hash no server holds is deleted', () => {
    const index = new PrefixIndex(2);
    const a = chain(1, 2);
    const b = chain(2, 2);
    index.add('s1', a);
    index.add('s2', a);
    expect(index.serversOf(a, 0).sort()).toEqual(['s1', 's2']);
    index.add('s1', b);
    expect(index.serversOf(a, 0)).toEqual(['s2']);
    expect(index.size()).toBe(4);
    index.add('s2', b);
    expect(index.serversOf(a, 0)).toEqual([]);
    expect(index.size()).toBe(4);
    expect(matchAll(index, a, 1).longest).toBe(0);
  });

  it('a capacity given with add applies at once: shrinking evicts, growing keeps', () => {
    const index = new PrefixIndex(10);
    const c = chain(1, 8);
    index.add('s', c);
    expect(index.capacityOf('s')).toBe(10);
    index.add('s', new Uint32Array(0), 3);
    expect(index.capacityOf('s')).toBe(3);
    expect(pairs(index.hashesOf('s'))).toEqual(pairs(prefix(c, 3)));
    index.add('s', c, 20);
    expect(index.size('s')).toBe(8);
  });

  it('setCapacity shrinks one server; setDefaultCapacity applies to servers created later', () => {
    const index = new PrefixIndex(10);
    const c = chain(1, 6);
    index.add('a', c);
    index.add('b', c);
    index.setCapacity('a', 2);
    expect(index.size('a')).toBe(2);
    expect(index.size('b')).toBe(6);
    index.setDefaultCapacity(1);
    index.add('c', c);
    expect(index.size('c')).toBe(1);
    expect(index.capacityOf('b')).toBe(10);
    index.setCapacity('unknown', 5);
    expect(index.capacityOf('unknown')).toBeUndefined();
  });

  it('rejects capacities below 1', () => {
    expect(() => new PrefixIndex(0)).toThrow(RangeError);
    const index = new PrefixIndex(1);
    expect(() => index.add('s', chain(1, 1), 0)).toThrow(RangeError);
    expect(() => index.setDefaultCapacity(Number.NaN)).toThrow(RangeError);
  });
});

describe('PrefixIndex.remove and stats', () => {
  it('purges a server and nothing else; its number is reused without leaking old entries', () => {
    const index = new PrefixIndex(100);
    const a = chain(1, 4);
    index.add('s1', a);
    index.add('s2', prefix(a, 2));
    expect(index.remove('s1')).toBe(true);
    expect(index.remove('s1')).toBe(false);
    expect(index.serverIds()).toEqual(['s2']);
    expect(index.size()).toBe(2);
    expect(index.serversOf(a, 0)).toEqual(['s2']);
    index.add('s3', chain(2, 1));
    expect(index.serversOf(a, 3)).toEqual([]);
  });

  it('reports entries, servers and the blocks matched', () => {
    const index = new PrefixIndex(100);
    const a = chain(1, 4);
    index.add('default/pod-0-rank-0', prefix(a, 3));
    index.add('default/pod-1-rank-0', prefix(a, 1));
    matchAll(index, a, 2);
    expect(index.stats()).toEqual({ entries: 4, servers: 2, lookedUpBlocks: 4, matchedBlocks: 3 });
  });
});

describe('PrefixIndex against a plain reference model', () => {
  /** The obvious implementation: per server an insertion-ordered Map as LRU; matches by linear walk. */
  class Reference {
    readonly lru = new Map<string, Map<string, true>>();
    constructor(readonly cap: Map<string, number>) {}
    add(s: string, c: Uint32Array): void {
      let m = this.lru.get(s);
      if (!m) this.lru.set(s, (m = new Map()));
      for (let k = c.length / 2 - 1; k >= 0; k--) {
        const key = `${c[2 * k]}:${c[2 * k + 1]}`;
        m.delete(key);
        m.set(key, true);
        while (m.size > this.cap.get(s)!) m.delete(m.keys().next().value!);
      }
    }
    leading(s: string, c: Uint32Array): number {
      const m = this.lru.get(s);
      let k = 0;
      while (m && k < c.length / 2 && m.has(`${c[2 * k]}:${c[2 * k + 1]}`)) k++;
      return k;
    }
    size(): number {
      let n = 0;
      for (const m of this.lru.values()) n += m.size;
      return n;
    }
  }

  it('agrees on every match and size through thousands of random adds, evictions and removals', () => {
    let x = 42;
    const rand = (n: number): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const eps = makeEndpoints(12);
    const caps = new Map(eps.map((e) => [e.meta.id, 5 + rand(60)]));
    const index = new PrefixIndex(1);
    const ref = new Reference(caps);
    // Prompts share prefixes as real ones do: each extends a prefix of an earlier one.
    const chains: Uint32Array[] = [chain(0, 1 + rand(40))];
    let tag = 1;
    let hits = 0;
    for (let step = 0; step < 3000; step++) {
      const parent = chains[rand(chains.length)]!;
      const keep = rand(parent.length / 2 + 1);
      const fresh = chain(tag++, rand(30));
      const c = new Uint32Array(2 * keep + fresh.length);
      c.set(prefix(parent, keep));
      c.set(fresh, 2 * keep);
      if (c.length > 0) chains.push(c);
      const ep = eps[rand(eps.length)]!;
      const op = rand(100);
      if (op < 2) {
        index.remove(ep.meta.id);
        ref.lru.delete(ep.meta.id);
      } else if (op < 4) {
        const cap = 1 + rand(50);
        caps.set(ep.meta.id, cap);
        index.setCapacity(ep.meta.id, cap);
        const m = ref.lru.get(ep.meta.id);
        while (m && m.size > cap) m.delete(m.keys().next().value!);
      } else if (c.length > 0) {
        index.add(ep.meta.id, c, caps.get(ep.meta.id));
        ref.add(ep.meta.id, c);
      }
      const q = chains[rand(chains.length)]!;
      const out = new Int32Array(eps.length);
      index.match(q, eps, out);
      expect(Array.from(out)).toEqual(eps.map((e) => ref.leading(e.meta.id, q)));
      expect(index.size()).toBe(ref.size());
      if (out.some((v) => v > 0)) hits++;
    }
    expect(hits).toBeGreaterThan(500);
  });
});
