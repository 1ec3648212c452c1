/**
 * The publishes this process acknowledged lately, newest per channel: what a Redis that
 * restarted from an AOF that missed its last second, or a replica promoted before it caught
 * up, may have lost. After such an event the broker audits them (lua/audit.lua): a channel
 * whose acknowledged message is gone, or whose seq now names another message, moves to a new
 * epoch without renumbering, so every cursor taken before reads as a gap — even a cursor that
 * never reached the lost messages (the fingerprint in the cursor covers those that did).
 *
 * Bounded by time: an entry is dropped LP_REDIS_LOSS_WINDOW_S after its publish, counted only
 * while Redis is healthy (pruning stops while it is down, so an outage longer than the window
 * still gets its audit).
 */

export interface Ack {
  epoch: string;
  seq: number;
  /** The message's time as the store wrote it ("%.3f" ms): what identifies it under its seq. */
  time: string;
  /** When it was acknowledged (ms). */
  at: number;
}

export class AckLog {
  private readonly acks = new Map<string, Ack>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.windowMs > 0;
  }

  get size(): number {
    return this.acks.size;
  }

  record(ch: string, epoch: string, seq: number, time: string): void {
    if (this.windowMs === 0 || time === '') return;
    const ack = this.acks.get(ch);
    if (!ack) {
      this.acks.set(ch, { epoch, seq, time, at: this.now() });
      return;
    }
    // Replies on one connection come in order, but a batch's items may settle out of order.
    if (ack.epoch === epoch && ack.seq > seq) return;
    ack.epoch = epoch;
    ack.seq = seq;
    ack.time = time;
    ack.at = this.now();
  }

  /** Forgets acknowledgements older than the window (call only while Redis is healthy). */
  prune(): void {
    const cutoff = this.now() - this.windowMs;
    for (const [ch, ack] of this.acks) if (ack.at <= cutoff) this.acks.delete(ch);
  }

  /** The entries to audit, as a snapshot. */
  entries(): [string, Ack][] {
    return [...this.acks];
  }
}
