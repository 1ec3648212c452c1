/**
 * Remembers, in fixed memory, which channels were reclaimed while idle, so that a reclaimed
 * channel comes back with a fresh epoch: old cursors then read as a gap, never as a silent
 * renumbering. A Bloom filter: a false positive only gives a never-published channel a fresh
 * epoch (a spurious, harmless gap); a false negative cannot happen.
 *
 * When the filter fills up, `rotate()` is due: the caller starts a new store epoch (so every
 * channel reclaimed so far comes back in a new epoch anyway) and the filter starts empty.
 */

const BITS = 1 << 23; // 1 MiB
const HASHES = 4;
/** Insertions after which the false-positive rate passes ~2%. */
const CAPACITY = 1_000_000;

export class ReclaimFilter {
  private bits = new Uint32Array(BITS >>> 5);
  private inserted = 0;

  add(name: string): void {
    this.each(name, (bit) => {
      this.bits[bit >>> 5]! |= 1 << (bit & 31);
    });
    this.inserted++;
  }

  has(name: string): boolean {
    let all = true;
    this.each(name, (bit) => {
      if ((this.bits[bit >>> 5]! & (1 << (bit & 31))) === 0) all = false;
    });
    return all;
  }

  get full(): boolean {
    return this.inserted >= CAPACITY;
  }

  clear(): void {
    this.bits.fill(0);
    this.inserted = 0;
  }

  /** Double hashing: bit_i = h1 + i·h2. */
  private each(name: string, fn: (bit: number) => void): void {
    let h1 = 0x811c9dc5;
    let h2 = 0x5bd1e995;
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x85ebca6b) ^ (h2 >>> 13);
    }
    h2 |= 1;
    for (let i = 0; i < HASHES; i++) fn(((h1 + Math.imul(i, h2)) >>> 0) & (BITS - 1));
  }
}
