/**
 * A bounded FIFO on a circular array: O(1) push and shift without `Array.prototype.shift`'s copying,
 * growing lazily so that a large bound (vLLM's defaults are 10 000 and 100 000) costs nothing until used.
 */
export class Ring<T> {
  private buf: (T | undefined)[] = [];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be ≥ 1, got ${capacity}`);
  }

  get size(): number {
    return this.count;
  }

  get full(): boolean {
    return this.count === this.capacity;
  }

  /** Appends `v`; when full, the oldest entry makes room and is returned. */
  push(v: T): T | undefined {
    if (this.count === this.capacity) {
      const evicted = this.buf[this.head];
      this.buf[this.head] = v;
      this.head = (this.head + 1) % this.buf.length;
      return evicted;
    }
    if (this.count === this.buf.length) this.grow();
    this.buf[(this.head + this.count) % this.buf.length] = v;
    this.count++;
    return undefined;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.count--;
    return v;
  }

  /** The entries, oldest first, from the first one that satisfies `from` on. */
  sliceFrom(from: (v: T) => boolean): T[] {
    const out: T[] = [];
    let started = false;
    for (let i = 0; i < this.count; i++) {
      const v = this.buf[(this.head + i) % this.buf.length] as T;
      if (!started && !from(v)) continue;
      started = true;
      out.push(v);
    }
    return out;
  }

  private grow(): void {
    const size = Math.min(this.capacity, Math.max(16, this.buf.length * 2));
    const next = new Array<T | undefined>(size);
    for (let i = 0; i < this.count; i++) next[i] = this.buf[(this.head + i) % this.buf.length];
    this.buf = next;
    this.head = 0;
  }
}
