/**
 * A bounded double-ended queue on a circular array that grows on demand (up to `capacity`)
 * instead of pre-allocating: most channels hold a few messages, a few hold thousands.
 *
 *    head                tail
 *     v                   v
 *   [ c  d  e  .  .  .  a  b ]   items in order: a b c d e
 *
 * push() on a full ring drops the oldest item (bounded history); shift/unshift are O(1).
 */
export class Ring<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {}

  get length(): number {
    return this.count;
  }

  /** Item i, 0 = oldest. */
  at(i: number): T {
    return this.items[(this.head + i) % this.items.length] as T;
  }

  /** Appends; returns the dropped oldest item when the ring was full. */
  push(item: T): T | undefined {
    let dropped: T | undefined;
    if (this.count === this.capacity) dropped = this.shift();
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) % this.items.length] = item;
    this.count++;
    return dropped;
  }

  /** Prepends; on a full ring the newest item is dropped and returned. */
  unshift(item: T): T | undefined {
    let dropped: T | undefined;
    if (this.count === this.capacity) {
      dropped = this.at(this.count - 1);
      this.items[(this.head + this.count - 1) % this.items.length] = undefined;
      this.count--;
    }
    if (this.count === this.items.length) this.grow();
    this.head = (this.head - 1 + this.items.length) % this.items.length;
    this.items[this.head] = item;
    this.count++;
    return dropped;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.count--;
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.count = 0;
  }

  private grow(): void {
    const size = Math.min(this.capacity, Math.max(4, this.items.length * 2));
    const next = new Array<T | undefined>(size);
    for (let i = 0; i < this.count; i++) next[i] = this.at(i);
    this.items = next;
    this.head = 0;
  }
}
