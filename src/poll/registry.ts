/**
 * Which waiters wait on which channel, as one spool per channel (Nchan's spool):
 *
 *   spools: channel ──> ChannelSpool
 *     groups:  PositionGroup { positions: [position], members } per position of THIS channel
 *              at which single-channel waiters (polls and streams) are parked; `solo` while
 *              there is one position (the usual case), a Map once there are several
 *     multi:   waiters that follow this channel and others (any state)
 *     wakes:   notifications seen; a waiter reading history compares it before and after
 *
 * Anything shared between waiters lives inside the spool of the channel it belongs to: a
 * group's position array (and, in PollHub, the answer rendered for a group) can only ever
 * reach waiters of that channel at that position, because the group is found through the
 * channel's spool. No key has to remember to include the channel.
 *
 * A group's members form an intrusive doubly-linked list through the waiters (no Set entry
 * per parked poll): joining, leaving and moving are O(1) and allocate nothing.
 *
 *   group.head ─> w1 ⇄ w2 ⇄ w3 ─> null
 *
 * Registering a channel's first waiter subscribes the process to it at the broker
 * (interest-based notifications); removing its last waiter unsubscribes. `add()` returns a
 * promise while any of the waiter's subscriptions is unconfirmed: the waiter reads history
 * only after that, so nothing published in between can slip past it.
 */

import type { ChannelStore } from '../broker/broker.js';
import type { Position } from '../cursor.js';
import type { Waiter } from './waiter.js';

export class PositionGroup {
  head: Waiter | null = null;
  count = 0;
  /** The key in the spool's Map, once the spool has several groups. */
  key: string | undefined = undefined;
  constructor(
    /** `[position]`, shared by every member; replaced when the whole group moves. */
    public positions: readonly Position[],
  ) {}

  get position(): Position {
    return this.positions[0]!;
  }

  add(w: Waiter): void {
    w.groupPrev = null;
    w.groupNext = this.head;
    if (this.head) this.head.groupPrev = w;
    this.head = w;
    w.group = this;
    this.count++;
  }

  delete(w: Waiter): void {
    if (w.groupPrev) w.groupPrev.groupNext = w.groupNext;
    else this.head = w.groupNext;
    if (w.groupNext) w.groupNext.groupPrev = w.groupPrev;
    w.groupPrev = w.groupNext = null;
    w.group = undefined;
    this.count--;
  }
}

function samePosition(a: Position, b: Position): boolean {
  return a.seq === b.seq && a.epoch === b.epoch && a.fp === b.fp;
}

function groupKey(p: Position): string {
  return `${p.seq}:${p.epoch}:${p.fp}`;
}

export class ChannelSpool {
  /** `[ch]`, shared by every single-channel waiter on it. */
  readonly single: readonly string[];
  /** Pending subscription confirmation; undefined once confirmed. */
  confirmed: Promise<void> | undefined = undefined;
  /** Waiters registered on this channel, parked or reading. */
  size = 0;
  /** Notifications (and resets) seen for this channel: waiters reading history watch it. */
  wakes = 0;
  private solo: PositionGroup | undefined = undefined;
  private byPosition: Map<string, PositionGroup> | undefined = undefined;
  multi: Set<Waiter> | undefined = undefined;

  constructor(readonly ch: string) {
    this.single = [ch];
  }

  get hasGroups(): boolean {
    return this.solo !== undefined || (this.byPosition !== undefined && this.byPosition.size > 0);
  }

  /** The groups, as a snapshot (a wake may add and remove groups while it runs). */
  groups(): PositionGroup[] {
    if (this.solo) return [this.solo];
    return this.byPosition ? [...this.byPosition.values()] : [];
  }

  /** The group at `position`, created (taking `positions` as its array) if there is none. */
  groupAt(positions: readonly Position[]): PositionGroup {
    const there = this.find(positions[0]!);
    if (there) return there;
    const group = new PositionGroup(positions);
    this.insert(group);
    return group;
  }

  /**
   * Moves a whole group to a new position: its members (streams) were all delivered to it.
   * One re-key for the group instead of a leave and a join per member; a group already at
   * that position (rare) takes the members in. Returns the group they are in now.
   */
  moveGroup(group: PositionGroup, positions: readonly Position[]): PositionGroup {
    this.dropGroup(group);
    group.positions = positions;
    group.key = undefined;
    const there = this.find(positions[0]!);
    if (!there) {
      this.insert(group);
      return group;
    }
    for (let w = group.head, next: Waiter | null; w; w = next) {
      next = w.groupNext;
      group.delete(w);
      there.add(w);
    }
    return there;
  }

  private find(position: Position): PositionGroup | undefined {
    if (this.solo) return samePosition(this.solo.position, position) ? this.solo : undefined;
    return this.byPosition?.get(groupKey(position));
  }

  /** Files a group whose position has no group yet. */
  private insert(group: PositionGroup): void {
    if (!this.solo && !this.byPosition) {
      this.solo = group;
      return;
    }
    if (this.solo) {
      // A second position: from now on the groups live in a Map.
      this.byPosition = new Map();
      this.solo.key = groupKey(this.solo.position);
      this.byPosition.set(this.solo.key, this.solo);
      this.solo = undefined;
    }
    group.key = groupKey(group.position);
    this.byPosition!.set(group.key, group);
  }

  /** Forgets an empty group. */
  dropGroup(group: PositionGroup): void {
    if (this.solo === group) this.solo = undefined;
    else if (group.key !== undefined && this.byPosition?.get(group.key) === group) this.byPosition.delete(group.key);
  }

  /** Every parked single-channel waiter, as a snapshot. */
  parked(): Waiter[] {
    const out: Waiter[] = [];
    for (const group of this.groups()) for (let w = group.head; w; w = w.groupNext) out.push(w);
    return out;
  }
}

export class PollRegistry {
  private readonly spools = new Map<string, ChannelSpool>();
  private count = 0;

  constructor(private readonly broker: Pick<ChannelStore, 'subscribe' | 'unsubscribe'>) {}

  /** Waiters registered (reading or parked). */
  get size(): number {
    return this.count;
  }

  /** Registers a new waiter (Setup) on each of its channels. */
  add(w: Waiter): Promise<unknown> | undefined {
    let waits: Promise<void>[] | undefined;
    const single = w.channels.length === 1;
    for (const ch of w.channels) {
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
      if (single) w.channels = spool.single;
      else (spool.multi ??= new Set()).add(w);
      spool.size++;
      if (spool.confirmed) (waits ??= []).push(spool.confirmed);
    }
    this.count++;
    return waits && (waits.length === 1 ? waits[0] : Promise.all(waits));
  }

  /**
   * A waiter enters Parked: a single-channel waiter joins the group of its position, and
   * takes the group's position array (saves two objects per parked poll).
   */
  park(w: Waiter): void {
    if (w.channels.length !== 1) return;
    const group = this.spools.get(w.channels[0]!)!.groupAt(w.positions);
    group.add(w);
    w.positions = group.positions;
  }

  /** A parked waiter goes back to reading (a re-read). */
  unpark(w: Waiter): void {
    if (w.channels.length === 1) this.leaveGroup(w);
  }

  /** Moves a group of single-channel streams on `ch` to their new position (see ChannelSpool). */
  moveGroup(ch: string, group: PositionGroup, positions: readonly Position[]): PositionGroup {
    return this.spools.get(ch)!.moveGroup(group, positions);
  }

  /** A parked stream moves to the group of its new position (after a delivery). */
  rearm(w: Waiter): void {
    if (w.channels.length !== 1) return;
    this.leaveGroup(w);
    this.park(w);
  }

  /** A waiter leaves every structure (answered, ended, refused or aborted). */
  remove(w: Waiter): void {
    const single = w.channels.length === 1;
    if (single) this.leaveGroup(w);
    for (const ch of w.channels) {
      const spool = this.spools.get(ch);
      if (!spool) continue;
      if (!single) spool.multi?.delete(w);
      if (--spool.size === 0) {
        this.spools.delete(ch);
        this.broker.unsubscribe(ch);
      }
    }
    this.count--;
  }

  private leaveGroup(w: Waiter): void {
    const group = w.group;
    if (!group) return;
    group.delete(w);
    if (group.count === 0) this.spools.get(w.channels[0]!)?.dropGroup(group);
  }

  spool(ch: string): ChannelSpool | undefined {
    return this.spools.get(ch);
  }

  countOn(ch: string): number {
    return this.spools.get(ch)?.size ?? 0;
  }

  /** The sum of `wakes` over `channels`: changes whenever any of them was notified. */
  wakeStamp(channels: readonly string[]): number {
    let stamp = 0;
    for (const ch of channels) stamp += this.spools.get(ch)?.wakes ?? 0;
    return stamp;
  }

  /** Counts a notification (or reset) on every channel: every read in flight re-reads. */
  wakeAll(): void {
    for (const spool of this.spools.values()) spool.wakes++;
  }

  /**
   * The parked single-channel waiters of `ch` and every multi-channel waiter on it, as a
   * snapshot (rare paths: reset). Waiters reading history are told by `wakes` instead.
   */
  waitersOn(ch: string): Waiter[] {
    const spool = this.spools.get(ch);
    if (!spool) return [];
    const out = spool.parked();
    if (spool.multi) for (const w of spool.multi) out.push(w);
    return out;
  }

  /** The same for every channel, each waiter once (rare paths: resync, drain). */
  all(): Waiter[] {
    const out: Waiter[] = [];
    const multi = new Set<Waiter>();
    for (const spool of this.spools.values()) {
      for (const w of spool.parked()) out.push(w);
      if (spool.multi) for (const w of spool.multi) multi.add(w);
    }
    for (const w of multi) out.push(w);
    return out;
  }
}
