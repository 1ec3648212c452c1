/**
 * The sharded subscriber set: interest-based notification subscriptions spread over several
 * connections, so one slow or reconnecting socket does not stall every channel.
 *
 *   channel ─hash─> connection k of K   (plain Redis: SUBSCRIBE on K connections)
 *   channel ─slot─> shard subscriber    (Cluster: SSUBSCRIBE, one subscriber per shard)
 *
 * A notification channel is subscribed when its first local poll parks and unsubscribed
 * LP_UNSUBSCRIBE_LINGER_MS after its last poll left (one sweep timer, not a timer per channel),
 * so a client's re-poll does not churn SUBSCRIBE/UNSUBSCRIBE. ioredis restores subscriptions
 * after a reconnect; the owner is told (onReconnect) because notifications may have been lost.
 */

import { Cluster, Redis } from 'ioredis';
import { channelHash } from '../../cursor.js';

export interface SubscriberEvents {
  message(channel: string, payload: Buffer): void;
  /** A subscriber connection came back: notifications may have been lost meanwhile. */
  reconnect(): void;
  /** A subscriber connection became ready (the first time or again). */
  ready(): void;
  error(err: Error): void;
}

interface Transport {
  /** Resolves when the server confirmed the subscription (or it failed: the caller re-reads anyway). */
  subscribe(name: string): Promise<void>;
  unsubscribe(name: string): void;
  ready(): boolean;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export class SubscriberSet {
  private readonly interest = new Map<string, number>();
  /** Channels with no local interest left, and when to unsubscribe them. */
  private readonly lingering = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout | undefined;
  /** Subscriptions sent and not yet confirmed. */
  private readonly unconfirmed = new Map<string, Promise<void>>();

  private constructor(
    private readonly transport: Transport,
    private readonly lingerMs: number,
  ) {
    if (lingerMs > 0) {
      this.sweepTimer = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, lingerMs / 4)));
      this.sweepTimer.unref();
    }
  }

  static plain(connect: () => Redis, count: number, lingerMs: number, events: SubscriberEvents): SubscriberSet {
    return new SubscriberSet(new PlainTransport(connect, count, events), lingerMs);
  }

  static sharded(connect: () => Cluster, lingerMs: number, events: SubscriberEvents): SubscriberSet {
    return new SubscriberSet(new ShardedTransport(connect, events), lingerMs);
  }

  /** Adds interest; returns a promise while the subscription is not confirmed yet. */
  add(name: string): Promise<void> | undefined {
    const n = (this.interest.get(name) ?? 0) + 1;
    this.interest.set(name, n);
    if (n > 1 || this.lingering.delete(name)) return this.unconfirmed.get(name);
    const confirmed = this.transport.subscribe(name).finally(() => {
      if (this.unconfirmed.get(name) === confirmed) this.unconfirmed.delete(name);
    });
    this.unconfirmed.set(name, confirmed);
    return confirmed;
  }

  remove(name: string): void {
    const n = (this.interest.get(name) ?? 0) - 1;
    if (n > 0) {
      this.interest.set(name, n);
      return;
    }
    this.interest.delete(name);
    if (this.lingerMs === 0) this.transport.unsubscribe(name);
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

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.transport.close();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [name, at] of this.lingering) {
      if (at > now) continue;
      this.lingering.delete(name);
      this.transport.unsubscribe(name);
    }
  }
}

class PlainTransport implements Transport {
  private readonly conns: Redis[] = [];

  constructor(connect: () => Redis, count: number, events: SubscriberEvents) {
    for (let i = 0; i < count; i++) {
      const conn = connect();
      let readyBefore = false;
      conn.on('messageBuffer', (channel: Buffer, payload: Buffer) => events.message(channel.toString(), payload));
      conn.on('ready', () => {
        if (readyBefore) events.reconnect();
        readyBefore = true;
        events.ready();
      });
      conn.on('error', (err: Error) => events.error(err));
      this.conns.push(conn);
    }
  }

  private connFor(name: string): Redis {
    return this.conns[channelHash(name) % this.conns.length]!;
  }

  subscribe(name: string): Promise<void> {
    // Queued while offline (subscriptions are idempotent) and restored after reconnects.
    return this.connFor(name).subscribe(name).then(() => undefined, () => undefined);
  }

  unsubscribe(name: string): void {
    this.connFor(name).unsubscribe(name).catch(() => undefined);
  }

  ready(): boolean {
    return this.conns.every((c) => c.status === 'ready');
  }

  pause(): void {
    for (const c of this.conns) c.stream?.pause();
  }

  resume(): void {
    for (const c of this.conns) c.stream?.resume();
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.disconnect();
  }
}

class ShardedTransport implements Transport {
  private readonly cluster: Cluster;

  constructor(connect: () => Cluster, events: SubscriberEvents) {
    this.cluster = connect();
    let readyBefore = false;
    this.cluster.on('smessageBuffer', (channel: Buffer, payload: Buffer) => events.message(channel.toString(), payload));
    this.cluster.on('ready', () => {
      if (readyBefore) events.reconnect();
      readyBefore = true;
      events.ready();
    });
    // A shard subscriber that was replaced (node failover or reconnect).
    this.cluster.on('+subscriber', () => {
      if (readyBefore) events.reconnect();
    });
    this.cluster.on('error', (err: Error) => events.error(err));
  }

  subscribe(name: string): Promise<void> {
    // One channel per SSUBSCRIBE: channels of different slots cannot share a call.
    return this.cluster.ssubscribe(name).then(() => undefined, () => undefined);
  }

  unsubscribe(name: string): void {
    this.cluster.sunsubscribe(name).catch(() => undefined);
  }

  ready(): boolean {
    return this.cluster.status === 'ready';
  }

  // ioredis does not expose the shard subscribers' sockets; Cluster relies on Redis's own
  // output buffer limits, and a dropped subscriber is repaired by a resync.
  pause(): void {}
  resume(): void {}

  async close(): Promise<void> {
    this.cluster.disconnect();
  }
}
