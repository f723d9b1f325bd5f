/**
 * The scheduler's waiting queue: a growable ring buffer with O(1) push and pop at both ends (preempted
 * requests go back to the front), instead of `Array.shift`, which is O(n).
 */
export class RequestQueue<T> {
  private items: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(initialCapacity = 64) {
    let cap = 8;
    while (cap < initialCapacity) cap *= 2;
    this.items = new Array<T | undefined>(cap);
  }

  get size(): number {
    return this.count;
  }

  pushBack(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) & (this.items.length - 1)] = item;
    this.count++;
  }

  pushFront(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.head = (this.head - 1) & (this.items.length - 1);
    this.items[this.head] = item;
    this.count++;
  }

  peekFront(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  popFront(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & (this.items.length - 1);
    this.count--;
    return item;
  }

  /** Removes one item wherever it is (O(n); only aborts need it). Returns whether it was there. */
  remove(item: T): boolean {
    const mask = this.items.length - 1;
    for (let i = 0; i < this.count; i++) {
      if (this.items[(this.head + i) & mask] !== item) continue;
      for (let j = i; j < this.count - 1; j++) {
        this.items[(this.head + j) & mask] = this.items[(this.head + j + 1) & mask];
      }
      this.items[(this.head + this.count - 1) & mask] = undefined;
      this.count--;
      return true;
    }
    return false;
  }

  /** Items from front to back. */
  toArray(): T[] {
    const out: T[] = [];
    const mask = this.items.length - 1;
    for (let i = 0; i < this.count; i++) out.push(this.items[(this.head + i) & mask] as T);
    return out;
  }

  private grow(): void {
    const old = this.items;
    const mask = old.length - 1;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) & mask];
    this.items = next;
    this.head = 0;
  }
}
