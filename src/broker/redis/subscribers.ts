/**
 * The sharded subscriber set: interest-based notification subscriptions spread over several
 * connections, so one slow or reconnecting socket does not stall every channel.
 *
 *   channel ─hash─> connection k of K      (one Redis or Sentinel: SUBSCRIBE on K connections)
 *   channel ─slot─> the slot's master's    (Cluster: SSUBSCRIBE on one plain connection per
 *                   connection              master, placed by the command client's slot map)
 *
 * A notification channel is subscribed when its first local poll parks and unsubscribed
 * LP_UNSUBSCRIBE_LINGER_MS after its last poll left (one sweep timer, not a timer per channel),
 * so a client's re-poll does not churn SUBSCRIBE/UNSUBSCRIBE. Each connection restores its own
 * subscriptions in batches after a reconnect and retries failed ones (SubscriberConnection);
 * the owner hears `restored(names)` once they hold again, and re-reads those channels.
 *
 * On Cluster, when the slot map changes (a failover, a reshard), every channel whose slot now
 * has another master moves to that master's connection; the connection it left is reconnected
 * (Redis dropped the moved channels itself, and ioredis's view of that socket is unreliable
 * after such pushes), and the moved channels are re-read once subscribed on their new master.
 */

import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { channelHash } from '../../cursor.js';
import { SubscriberConnection, type SubscriberConnectionEvents } from './sub-connection.js';

export interface TopologyChange {
  /** Slots whose master changed. */
  slots: number;
  from: string[];
  to: string[];
  /** A master left the slot map (failed over or removed), rather than slots moving between masters. */
  failover: boolean;
}

export interface SubscriberEvents {
  message(channel: string, payload: Buffer): void;
  /** Subscribed again after notifications may have been lost: re-read these channels. */
  restored(names: string[]): void;
  /** A connection became ready or stopped being ready. */
  changed(): void;
  /** Cluster: masters changed for some slots (a failover or a reshard was seen). */
  topology(change: TopologyChange): void;
}

interface Transport {
  /** Wants `name`; idempotent; a promise while its subscription is not yet confirmed. */
  add(name: string): Promise<void> | undefined;
  remove(name: string): void;
  ready(): boolean;
  pause(): void;
  resume(): void;
  /** Drops every socket and starts over (their server may be gone without closing them). */
  reconnect(): void;
  /** One line per connection about its state. */
  describe(): string[];
  close(): void;
}

export class SubscriberSet {
  private readonly interest = new Map<string, number>();
  /** Channels with no local interest left, and when to unsubscribe them. */
  private readonly lingering = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly transport: Transport,
    private readonly lingerMs: number,
  ) {
    if (lingerMs > 0) {
      this.sweepTimer = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, lingerMs / 4)));
      this.sweepTimer.unref();
    }
  }

  /** K connections to one Redis (or the sentinels' primary), channels spread by hash. */
  static plain(connect: (i: number) => Redis, count: number, lingerMs: number, timeoutMs: number, events: SubscriberEvents, log?: Logger): SubscriberSet {
    return new SubscriberSet(new PlainTransport(connect, count, events, timeoutMs, log), lingerMs);
  }

  /** One connection per Cluster master, placed by `cluster`'s slot map. */
  static sharded(cluster: Cluster, connectNode: (nodeKey: string) => Redis, lingerMs: number, timeoutMs: number, events: SubscriberEvents, log?: Logger): SubscriberSet {
    return new SubscriberSet(new ShardedTransport(cluster, connectNode, events, timeoutMs, log), lingerMs);
  }

  /** Adds interest; returns a promise while the subscription is not confirmed yet. */
  add(name: string): Promise<void> | undefined {
    this.interest.set(name, (this.interest.get(name) ?? 0) + 1);
    this.lingering.delete(name);
    return this.transport.add(name);
  }

  remove(name: string): void {
    const n = (this.interest.get(name) ?? 0) - 1;
    if (n > 0) {
      this.interest.set(name, n);
      return;
    }
    this.interest.delete(name);
    if (this.lingerMs === 0) this.transport.remove(name);
    else this.lingering.set(name, Date.now() + this.lingerMs);
  }

  /** Channels subscribed (with interest or lingering). */
  get size(): number {
    return this.interest.size + this.lingering.size;
  }

  ready(): boolean {
    return this.transport.ready();
  }

  pause(): void {
    this.transport.pause();
  }

  resume(): void {
    this.transport.resume();
  }

  reconnect(): void {
    this.transport.reconnect();
  }

  /** One line per connection about its state (for diagnostics and tests). */
  describe(): string[] {
    return this.transport.describe();
  }

  close(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.transport.close();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [name, at] of this.lingering) {
      if (at > now) continue;
      this.lingering.delete(name);
      this.transport.remove(name);
    }
  }
}

function connectionEvents(events: SubscriberEvents, suspect: () => void = () => {}): SubscriberConnectionEvents {
  return { message: events.message, restored: events.restored, changed: events.changed, suspect };
}

class PlainTransport implements Transport {
  private readonly conns: SubscriberConnection[] = [];

  constructor(connect: (i: number) => Redis, count: number, events: SubscriberEvents, timeoutMs: number, log?: Logger) {
    for (let i = 0; i < count; i++) {
      this.conns.push(new SubscriberConnection(connect(i), false, connectionEvents(events), timeoutMs, `subscriber ${i + 1}/${count}`, log));
    }
  }

  private connFor(name: string): SubscriberConnection {
    return this.conns[channelHash(name) % this.conns.length]!;
  }

  add(name: string): Promise<void> | undefined {
    return this.connFor(name).add(name);
  }

  remove(name: string): void {
    this.connFor(name).remove(name);
  }

  ready(): boolean {
    return this.conns.every((c) => c.ready());
  }

  pause(): void {
    for (const c of this.conns) c.pause();
  }

  resume(): void {
    for (const c of this.conns) c.resume();
  }

  reconnect(): void {
    for (const c of this.conns) c.reconnect();
  }

  describe(): string[] {
    return this.conns.map((c) => c.describe());
  }

  close(): void {
    for (const c of this.conns) c.close();
  }
}

/** A slot map refresh can be asked for this often at most. */
const SUSPECT_REFRESH_MS = 200;

class ShardedTransport implements Transport {
  /** master "host:port" → its subscriber connection. */
  private readonly conns = new Map<string, SubscriberConnection>();
  /** name → the master whose connection holds it. */
  private readonly placed = new Map<string, string>();
  /** Wanted before the slot map was known, with their waiters. */
  private readonly unplaced = new Map<string, (() => void)[]>();
  /** The master of each slot, as of the last rebalance. */
  private masters: (string | undefined)[] = [];
  private lastSuspect = 0;
  private paused = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly connectNode: (nodeKey: string) => Redis,
    private readonly events: SubscriberEvents,
    private readonly timeoutMs: number,
    private readonly log?: Logger,
  ) {
    cluster.on('refresh', () => this.rebalance());
    cluster.on('ready', () => this.rebalance());
  }

  add(name: string): Promise<void> | undefined {
    const placed = this.placed.get(name);
    if (placed !== undefined) return this.conns.get(placed)!.add(name);
    const owner = this.masterOf(name);
    if (owner === undefined) {
      // No slot map yet: placed (and subscribed) by the first rebalance.
      return new Promise((resolve) => {
        const list = this.unplaced.get(name);
        if (list) list.push(resolve);
        else this.unplaced.set(name, [resolve]);
      });
    }
    this.placed.set(name, owner);
    return this.connection(owner).add(name);
  }

  remove(name: string): void {
    const waiters = this.unplaced.get(name);
    if (waiters) {
      this.unplaced.delete(name);
      for (const w of waiters) w();
      return;
    }
    const owner = this.placed.get(name);
    if (owner === undefined) return;
    this.placed.delete(name);
    this.conns.get(owner)?.remove(name);
  }

  ready(): boolean {
    if (this.unplaced.size > 0) return false;
    if (this.cluster.status !== 'ready') return false;
    for (const c of this.conns.values()) if (c.size > 0 && !c.ready()) return false;
    return true;
  }

  pause(): void {
    this.paused = true;
    for (const c of this.conns.values()) c.pause();
  }

  resume(): void {
    this.paused = false;
    for (const c of this.conns.values()) c.resume();
  }

  reconnect(): void {
    for (const c of this.conns.values()) c.reconnect();
  }

  describe(): string[] {
    return [...this.conns.values()].map((c) => c.describe()).concat(this.unplaced.size > 0 ? [`unplaced: ${this.unplaced.size}`] : []);
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }

  private masterOf(name: string): string | undefined {
    return this.cluster.slots[calculateSlot(name)]?.[0];
  }

  private connection(nodeKey: string): SubscriberConnection {
    let conn = this.conns.get(nodeKey);
    if (!conn) {
      conn = new SubscriberConnection(this.connectNode(nodeKey), true, connectionEvents(this.events, () => this.suspect()), this.timeoutMs, `shard ${nodeKey}`, this.log);
      if (this.paused) conn.pause();
      this.conns.set(nodeKey, conn);
    }
    return conn;
  }

  /** Something suggests the slot map is stale: ask for a fresh one (throttled). */
  private suspect(): void {
    const now = Date.now();
    if (now - this.lastSuspect < SUSPECT_REFRESH_MS) return;
    this.lastSuspect = now;
    this.cluster.refreshSlotsCache();
  }

  /** Follows the slot map: moves channels whose slot has another master now. */
  private rebalance(): void {
    const slots = this.cluster.slots;
    if (slots.length === 0) return;
    let changedSlots = 0;
    const from = new Set<string>();
    const to = new Set<string>();
    const masters = new Array<string | undefined>(16384);
    for (let i = 0; i < 16384; i++) {
      const m = slots[i]?.[0];
      masters[i] = m;
      const before = this.masters[i];
      if (before !== undefined && before !== m) {
        changedSlots++;
        from.add(before);
        if (m !== undefined) to.add(m);
      }
    }
    const first = this.masters.length === 0;
    this.masters = masters;
    if (changedSlots === 0 && this.unplaced.size === 0) return;

    const pending: Promise<void>[] = [];
    const moved: string[] = [];
    const left = new Set<string>();
    for (const [name, owner] of this.placed) {
      const now = masters[calculateSlot(name)];
      if (now === undefined || now === owner) continue;
      this.conns.get(owner)?.forget(name);
      left.add(owner);
      this.placed.set(name, now);
      const p = this.connection(now).add(name);
      if (p) pending.push(p);
      moved.push(name);
    }
    for (const [name, waiters] of this.unplaced) {
      const owner = masters[calculateSlot(name)];
      if (owner === undefined) continue;
      this.unplaced.delete(name);
      this.placed.set(name, owner);
      const p = this.connection(owner).add(name);
      if (p) p.then(() => waiters.forEach((w) => w()));
      else waiters.forEach((w) => w());
    }
    for (const owner of left) {
      const conn = this.conns.get(owner)!;
      if (conn.size === 0) {
        conn.close();
        this.conns.delete(owner);
      } else {
        conn.reconnect();
      }
    }
    if (!first && changedSlots > 0) {
      const current = new Set(masters);
      const failover = [...from].some((m) => !current.has(m));
      this.log?.warn({ slots: changedSlots, from: [...from], to: [...to], failover, channels: moved.length }, failover ? 'redis cluster failover seen: resubscribing the moved channels on the new masters' : 'redis cluster slots moved: resubscribing their channels on the new masters');
      this.events.topology({ slots: changedSlots, from: [...from], to: [...to], failover });
    }
    if (moved.length > 0) Promise.all(pending).then(() => this.events.restored(moved));
    this.events.changed();
  }
}
