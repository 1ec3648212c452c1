/**
 * Which polls wait on which channel. Registering a channel's first poll subscribes the process
 * to it at the broker (interest-based notifications); removing its last poll unsubscribes.
 * `add()` returns a promise while any of the poll's subscriptions is unconfirmed: the poll
 * reads history only after that, so nothing published in between can slip past it.
 */

import type { Broker } from '../broker/broker.js';
import type { Position } from '../cursor.js';
import type { Poll } from './poll.js';

interface ChannelEntry {
  readonly polls: Set<Poll>;
  /** Pending subscription confirmation; undefined once confirmed. */
  confirmed: Promise<void> | undefined;
  /** `[ch]`, shared by every single-channel poll on it. */
  readonly single: readonly string[];
  /** The last single-channel position handed out, shared while polls park at the same place. */
  position: readonly Position[] | undefined;
}

export class PollRegistry {
  private readonly byChannel = new Map<string, ChannelEntry>();
  private count = 0;

  constructor(private readonly broker: Broker) {}

  /** Polls registered (parked or reading). */
  get size(): number {
    return this.count;
  }

  add(poll: Poll): Promise<unknown> | undefined {
    let waits: Promise<void>[] | undefined;
    for (const ch of poll.channels) {
      let entry = this.byChannel.get(ch);
      if (!entry) {
        entry = { polls: new Set(), confirmed: undefined, single: [ch], position: undefined };
        this.byChannel.set(ch, entry);
        const pending = this.broker.subscribe(ch);
        if (pending) {
          const e = entry;
          e.confirmed = pending.then(() => {
            e.confirmed = undefined;
          });
        }
      }
      entry.polls.add(poll);
      if (poll.channels.length === 1) poll.channels = entry.single;
      if (entry.confirmed) (waits ??= []).push(entry.confirmed);
    }
    this.count++;
    return waits && (waits.length === 1 ? waits[0] : Promise.all(waits));
  }

  remove(poll: Poll): void {
    for (const ch of poll.channels) {
      const entry = this.byChannel.get(ch);
      if (!entry || !entry.polls.delete(poll)) continue;
      if (entry.polls.size === 0) {
        this.byChannel.delete(ch);
        this.broker.unsubscribe(ch);
      }
    }
    this.count--;
  }

  /**
   * `[position]` for a single-channel poll on `ch`: the array already handed out when it is the
   * same place (a fan-out channel's parked polls mostly are), else a new one. Saves two objects
   * per parked poll.
   */
  sharedPosition(ch: string, position: Position): readonly Position[] {
    const entry = this.byChannel.get(ch);
    const last = entry?.position?.[0];
    if (last && last.seq === position.seq && last.epoch === position.epoch) return entry.position!;
    const fresh = [position];
    if (entry) entry.position = fresh;
    return fresh;
  }

  pollsOn(ch: string): ReadonlySet<Poll> | undefined {
    return this.byChannel.get(ch)?.polls;
  }

  countOn(ch: string): number {
    return this.byChannel.get(ch)?.polls.size ?? 0;
  }

  /** Every registered poll, once. */
  *all(): IterableIterator<Poll> {
    const seen = new Set<Poll>();
    for (const entry of this.byChannel.values()) {
      for (const poll of entry.polls) {
        if (!seen.has(poll)) {
          seen.add(poll);
          yield poll;
        }
      }
    }
  }
}
