/**
 * Bounds the history reads in flight on the command connection. A resync re-reads every
 * parked poll at once — 100,000 of them after a subscriber reconnect. Sent all at once, every
 * other command (a publish, the liveness PING) would queue behind seconds of Lua reads and
 * time out, Redis would look frozen when it is only busy, and the recovery from that "outage"
 * would start the next storm of re-reads. Reads beyond the bound wait here instead, in order,
 * with no timeout running: they have not been sent.
 */

/** Reads in flight: ~25 ms of Redis time at ~50 µs each, so a publish queues behind little. */
export const MAX_READS_IN_FLIGHT = 512;

export class ReadGate {
  private inflight = 0;
  /** Waiting reads, FIFO: `queue[head]` is next. */
  private queue: (() => void)[] = [];
  private head = 0;

  constructor(private readonly max: number = MAX_READS_IN_FLIGHT) {}

  /** Reads waiting for a slot. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  async run<T>(read: () => Promise<T>): Promise<T> {
    if (this.inflight < this.max) this.inflight++;
    else await new Promise<void>((resolve) => this.queue.push(resolve)); // a slot is handed over
    try {
      return await read();
    } finally {
      this.release();
    }
  }

  private release(): void {
    if (this.head === this.queue.length) {
      this.inflight--;
      return;
    }
    const next = this.queue[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    next();
  }
}
