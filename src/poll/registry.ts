/**
 * Which polls wait on which channel, as one spool per channel (Nchan's spool):
 *
 *   spools: channel ──> ChannelSpool
 *     reading:  single-channel polls reading history (Setup)
 *     groups:   "epoch:seq:fp" ──> PositionGroup { positions: [position], members }
 *               single-channel polls parked at the same position of THIS channel
 *     multi:    polls that follow this channel and others (any state)
 *
 * Anything shared between polls lives inside the spool of the channel it belongs to: a group's
 * position array (and, in PollHub, the answer rendered for a group) can only ever reach polls
 * of that channel at that position, because the group is found through the channel's spool.
 * No key has to remember to include the channel.
 *
 * Registering a channel's first poll subscribes the process to it at the broker
 * (interest-based notifications); removing its last poll unsubscribes. `add()` returns a
 * promise while any of the poll's subscriptions is unconfirmed: the poll reads history only
 * after that, so nothing published in between can slip past it.
 */

import type { Broker } from '../broker/broker.js';
import type { Position } from '../cursor.js';
import type { Poll } from './poll.js';

export class PositionGroup {
  readonly members = new Set<Poll>();
  constructor(
    readonly key: string,
    /** `[position]`, shared by every member. */
    readonly positions: readonly Position[],
  ) {}

  get position(): Position {
    return this.positions[0]!;
  }
}

export class ChannelSpool {
  /** `[ch]`, shared by every single-channel poll on it. */
  readonly single: readonly string[];
  /** Pending subscription confirmation; undefined once confirmed. */
  confirmed: Promise<void> | undefined = undefined;
  readonly reading = new Set<Poll>();
  readonly groups = new Map<string, PositionGroup>();
  readonly multi = new Set<Poll>();
  /** Polls registered on this channel, in every set above. */
  size = 0;

  constructor(readonly ch: string) {
    this.single = [ch];
  }
}

function groupKey(p: Position): string {
  return `${p.epoch}:${p.seq}:${p.fp}`;
}

export class PollRegistry {
  private readonly spools = new Map<string, ChannelSpool>();
  private count = 0;

  constructor(private readonly broker: Broker) {}

  /** Polls registered (reading or parked). */
  get size(): number {
    return this.count;
  }

  /** Registers a new poll (Setup) on each of its channels. */
  add(poll: Poll): Promise<unknown> | undefined {
    let waits: Promise<void>[] | undefined;
    const single = poll.channels.length === 1;
    for (const ch of poll.channels) {
      let spool = this.spools.get(ch);
      if (!spool) {
        spool = new ChannelSpool(ch);
        this.spools.set(ch, spool);
        const pending = this.broker.subscribe(ch);
        if (pending) {
          const s = spool;
          s.confirmed = pending.then(() => {
            s.confirmed = undefined;
          });
        }
      }
      if (single) {
        spool.reading.add(poll);
        poll.channels = spool.single;
      } else {
        spool.multi.add(poll);
      }
      spool.size++;
      if (spool.confirmed) (waits ??= []).push(spool.confirmed);
    }
    this.count++;
    return waits && (waits.length === 1 ? waits[0] : Promise.all(waits));
  }

  /**
   * A poll enters Parked: a single-channel poll joins the group of its position, and takes
   * the group's position array (saves two objects per parked poll).
   */
  park(poll: Poll): void {
    if (poll.channels.length !== 1) return;
    const spool = this.spools.get(poll.channels[0]!)!;
    spool.reading.delete(poll);
    const position = poll.positions[0]!;
    const key = groupKey(position);
    let group = spool.groups.get(key);
    if (!group) spool.groups.set(key, (group = new PositionGroup(key, poll.positions)));
    group.members.add(poll);
    poll.group = group;
    poll.positions = group.positions;
  }

  /** A parked poll goes back to reading (a re-read). */
  unpark(poll: Poll): void {
    if (poll.channels.length !== 1) return;
    const spool = this.spools.get(poll.channels[0]!)!;
    this.leaveGroup(spool, poll);
    spool.reading.add(poll);
  }

  /** A poll leaves every structure (answered, refused or aborted). */
  remove(poll: Poll): void {
    const single = poll.channels.length === 1;
    for (const ch of poll.channels) {
      const spool = this.spools.get(ch);
      if (!spool) continue;
      const removed = single ? this.leaveGroup(spool, poll) || spool.reading.delete(poll) : spool.multi.delete(poll);
      if (!removed) continue;
      if (--spool.size === 0) {
        this.spools.delete(ch);
        this.broker.unsubscribe(ch);
      }
    }
    this.count--;
  }

  private leaveGroup(spool: ChannelSpool, poll: Poll): boolean {
    const group = poll.group;
    if (!group) return false;
    poll.group = undefined;
    group.members.delete(poll);
    if (group.members.size === 0 && spool.groups.get(group.key) === group) spool.groups.delete(group.key);
    return true;
  }

  spool(ch: string): ChannelSpool | undefined {
    return this.spools.get(ch);
  }

  countOn(ch: string): number {
    return this.spools.get(ch)?.size ?? 0;
  }

  /** The polls registered on `ch`, as a snapshot (rare paths: reset, admin). */
  pollsOn(ch: string): Poll[] {
    const spool = this.spools.get(ch);
    return spool ? [...pollsOf(spool)] : [];
  }

  /** Every registered poll, once, as a snapshot (rare paths: resync, drain). */
  all(): Poll[] {
    const seen = new Set<Poll>();
    for (const spool of this.spools.values()) for (const poll of pollsOf(spool)) seen.add(poll);
    return [...seen];
  }
}

function* pollsOf(spool: ChannelSpool): IterableIterator<Poll> {
  yield* spool.reading;
  for (const group of spool.groups.values()) yield* group.members;
  yield* spool.multi;
}
