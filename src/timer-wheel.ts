/**
 * Deadlines for many coarse timeouts (parked polls) on one Node timer: a hashed timer wheel.
 * Each slot holds an intrusive doubly-linked list, so adding and removing an entry allocates
 * nothing and costs O(1), and a tick only touches the entries that expire in it.
 *
 *   slot:   0     1     2    ...   now   ...  SLOTS-1
 *          [a]   [ ]  [b c]        [d]          [ ]
 *   An entry due at time t sits in slot ceil(t / tickMs) % SLOTS. Deadlines must be less
 *   than one turn (tickMs × SLOTS, 409.6 s by default) ahead.
 *
 * The clock is injectable so tests can drive expiry without waiting.
 */

export interface WheelEntry {
  deadline: number;
  wheelSlot: number; // -1 when not in the wheel
  wheelPrev: WheelEntry | null;
  wheelNext: WheelEntry | null;
}

export class TimerWheel<T extends WheelEntry> {
  private readonly heads: (T | null)[];
  private cursor: number;
  private timer: NodeJS.Timeout | undefined;
  private count = 0;

  constructor(
    private readonly onExpire: (entry: T) => void,
    private readonly tickMs = 100,
    private readonly slots = 4096,
    private readonly now: () => number = Date.now,
  ) {
    this.heads = new Array(slots).fill(null);
    this.cursor = Math.floor(this.now() / tickMs);
  }

  get size(): number {
    return this.count;
  }

  /** Starts the shared tick timer (unref'd: it never keeps the process alive). */
  start(): void {
    this.timer ??= setInterval(() => this.advance(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  add(entry: T): void {
    if (entry.wheelSlot !== -1) this.remove(entry);
    // Round up, so an entry's slot is visited no earlier than its deadline; and never into a
    // tick already processed: the earliest slot is the next one.
    const tick = Math.max(Math.ceil(entry.deadline / this.tickMs), this.cursor + 1);
    const slot = tick % this.slots;
    const head = this.heads[slot] ?? null;
    entry.wheelSlot = slot;
    entry.wheelPrev = null;
    entry.wheelNext = head;
    if (head) head.wheelPrev = entry;
    this.heads[slot] = entry;
    this.count++;
  }

  remove(entry: T): void {
    if (entry.wheelSlot === -1) return;
    if (entry.wheelPrev) entry.wheelPrev.wheelNext = entry.wheelNext;
    else this.heads[entry.wheelSlot] = entry.wheelNext as T | null;
    if (entry.wheelNext) entry.wheelNext.wheelPrev = entry.wheelPrev;
    entry.wheelSlot = -1;
    entry.wheelPrev = entry.wheelNext = null;
    this.count--;
  }

  /** Expires every entry due by now (called by the timer; tests call it directly). */
  advance(): void {
    const now = this.now();
    const target = Math.floor(now / this.tickMs);
    // A stalled loop can fall far behind; one full turn visits every slot once.
    const from = Math.max(this.cursor + 1, target - this.slots + 1);
    for (let tick = from; tick <= target; tick++) {
      let entry = this.heads[tick % this.slots] ?? null;
      while (entry) {
        const next = entry.wheelNext as T | null;
        if (entry.deadline <= now) {
          this.remove(entry);
          this.onExpire(entry);
        }
        entry = next;
      }
    }
    this.cursor = target;
  }
}
