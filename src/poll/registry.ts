/**
 * Which polls wait on which channel. Registering a channel's first poll subscribes the process
 * to it at the broker (interest-based notifications); removing its last poll unsubscribes.
 */

import type { Broker } from '../broker/broker.js';
import type { Poll } from './poll.js';

export class PollRegistry {
  private readonly byChannel = new Map<string, Set<Poll>>();
  private count = 0;

  constructor(private readonly broker: Broker) {}

  /** Polls registered (parked or reading). */
  get size(): number {
    return this.count;
  }

  add(poll: Poll): void {
    for (const ch of poll.channels) {
      let set = this.byChannel.get(ch);
      if (!set) {
        this.byChannel.set(ch, (set = new Set()));
        this.broker.subscribe(ch);
      }
      set.add(poll);
    }
    this.count++;
  }

  remove(poll: Poll): void {
    for (const ch of poll.channels) {
      const set = this.byChannel.get(ch);
      if (!set || !set.delete(poll)) continue;
      if (set.size === 0) {
        this.byChannel.delete(ch);
        this.broker.unsubscribe(ch);
      }
    }
    this.count--;
  }

  pollsOn(ch: string): ReadonlySet<Poll> | undefined {
    return this.byChannel.get(ch);
  }

  countOn(ch: string): number {
    return this.byChannel.get(ch)?.size ?? 0;
  }

  /** Every registered poll, once. */
  *all(): IterableIterator<Poll> {
    const seen = new Set<Poll>();
    for (const set of this.byChannel.values()) {
      for (const poll of set) {
        if (!seen.has(poll)) {
          seen.add(poll);
          yield poll;
        }
      }
    }
  }
}
