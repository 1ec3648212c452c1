/**
 * One subscriber connection and the notification channels it should hold. Holdfast, not
 * ioredis, owns the subscriptions (autoResubscribe is off), so that:
 *
 * - changes are sent in batches: every add/remove of one event-loop turn becomes one
 *   SUBSCRIBE / UNSUBSCRIBE per BATCH names (one SSUBSCRIBE per slot on Cluster, where a
 *   command may only name channels of one slot);
 * - after a reconnect every wanted channel is subscribed again in the same batches, and only
 *   once the server confirmed them is the owner told (`restored`) to re-read the parked polls:
 *   a re-read that ran before the subscription held could miss a message published between;
 * - a subscription that fails (or is not confirmed within ten command timeouts) is retried
 *   with backoff, and `restored` follows when it finally holds: no poll waits blind.
 *
 * Per name:  wanted ──flush──> in flight (batch id) ──confirmed──> confirmed
 *                                   └──failed / timed out──> failed ──retry──> in flight
 * A reconnect (a new socket) empties in flight / confirmed / failed: the restore starts over.
 */

import calculateSlot from 'cluster-key-slot';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Names per SUBSCRIBE command. */
const BATCH = 5000;
/**
 * A subscription not confirmed within this many command timeouts is retried. Generous: under
 * a storm of re-reads the confirmation can wait behind them, and a retry then only adds to it.
 */
const SUBSCRIBE_TIMEOUTS = 10;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5000;

export interface SubscriberConnectionEvents {
  message(channel: string, payload: Buffer): void;
  /** These channels are subscribed again after a time in which notifications may have been lost. */
  restored(channels: string[]): void;
  /** The connection became ready or stopped being ready. */
  changed(): void;
  /** Something suggests the Cluster's slots moved (MOVED, an unsolicited unsubscribe, a timeout). */
  suspect(): void;
}

export class SubscriberConnection {
  private readonly wanted = new Set<string>();
  private readonly inflight = new Map<string, number>();
  private readonly confirmed = new Set<string>();
  /** Failed since their last confirmation: restored once they hold. */
  private readonly late = new Set<string>();
  private readonly waiters = new Map<string, (() => void)[]>();
  private readonly changedNames = new Set<string>();
  private flushScheduled = false;
  private restoring = false;
  private everReady = false;
  /** Bumped on every new or lost socket: answers to an older socket's commands are ignored. */
  private socket = 0;
  private batchIds = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_FIRST_MS;
  private lastFailureLog = 0;
  private closed = false;

  constructor(
    readonly redis: Redis,
    private readonly sharded: boolean,
    private readonly events: SubscriberConnectionEvents,
    private readonly timeoutMs: number,
    private readonly label: string,
    private readonly log: Logger | undefined,
  ) {
    redis.on(sharded ? 'smessageBuffer' : 'messageBuffer', (channel: Buffer, payload: Buffer) => events.message(channel.toString(), payload));
    redis.on('ready', () => this.onReady());
    redis.on('close', () => this.onClose());
    redis.on('end', () => this.onEnd());
    // ioredis drops an SSUBSCRIBE answered MOVED without settling it: retry what is in flight.
    redis.on('moved', () => this.failInFlight(new Error('MOVED')));
    redis.on('error', (err: Error) => {
      // Redis 7 unsubscribes us by itself when a slot moves away; ioredis reports the
      // unexpected reply as a command-queue error.
      if (/sunsubscribe|MOVED/.test(err.message)) events.suspect();
    });
  }

  /** Subscribed and not restoring: notifications for every confirmed name flow. */
  ready(): boolean {
    return this.redis.status === 'ready' && !this.restoring;
  }

  get size(): number {
    return this.wanted.size;
  }

  /** One line about this connection's state (for diagnostics and tests). */
  describe(): string {
    return `${this.label}: ${this.redis.status}${this.restoring ? ' restoring' : ''}, wanted ${this.wanted.size}, confirmed ${this.confirmed.size}, in flight ${this.inflight.size}, failed ${this.late.size}, waiting ${this.waiters.size}`;
  }

  /** Wants `name`; returns a promise until its first subscription attempt settled. */
  add(name: string): Promise<void> | undefined {
    this.wanted.add(name);
    if (this.confirmed.has(name)) return undefined;
    const pending = this.waitFor(name);
    if (!this.inflight.has(name)) this.markChanged(name);
    return pending;
  }

  remove(name: string): void {
    if (!this.wanted.delete(name)) return;
    this.resolve(name);
    this.late.delete(name);
    this.markChanged(name);
  }

  /** `name` moved to another connection (its slot moved): forget it without unsubscribing. */
  forget(name: string): void {
    if (!this.wanted.delete(name)) return;
    this.inflight.delete(name);
    this.confirmed.delete(name);
    this.late.delete(name);
    this.resolve(name);
  }

  /** Drops the socket and starts over (after slots moved away, its state is not trustworthy). */
  reconnect(): void {
    if (!this.closed) this.redis.disconnect(true);
  }

  pause(): void {
    this.redis.stream?.pause();
  }

  resume(): void {
    this.redis.stream?.resume();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const name of [...this.waiters.keys()]) this.resolve(name);
    this.redis.disconnect();
  }

  // ---- sending ----

  private markChanged(name: string): void {
    this.changedNames.add(name);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends what changed this turn: one UNSUBSCRIBE and one SUBSCRIBE per batch (per slot). */
  private flush(): void {
    this.flushScheduled = false;
    if (!this.ready()) return; // the restore on 'ready' covers everything wanted
    const subscribe: string[] = [];
    const unsubscribe: string[] = [];
    for (const name of this.changedNames) {
      const held = this.confirmed.has(name) || this.inflight.has(name);
      if (this.wanted.has(name) && !held) subscribe.push(name);
      else if (!this.wanted.has(name) && held) {
        this.confirmed.delete(name);
        this.inflight.delete(name);
        unsubscribe.push(name);
      }
    }
    this.changedNames.clear();
    for (const batch of this.batches(unsubscribe)) {
      const sent = this.sharded ? this.redis.sunsubscribe(...batch) : this.redis.unsubscribe(...batch);
      sent.catch(() => undefined); // the socket went away: nothing is held on a new one anyway
    }
    if (subscribe.length > 0) void this.subscribe(subscribe);
  }

  /** Subscribes `names` in batches; resolves when every batch settled. */
  private subscribe(names: string[]): Promise<void> {
    const socket = this.socket;
    return Promise.all(this.batches(names).map((batch) => {
      const id = ++this.batchIds;
      for (const n of batch) this.inflight.set(n, id);
      const sent = this.sharded ? this.redis.ssubscribe(...batch) : this.redis.subscribe(...batch);
      return withTimeout(sent, this.timeoutMs * SUBSCRIBE_TIMEOUTS).then(
        () => this.confirm(batch, id, socket),
        (err: Error) => this.failed(batch, id, socket, err),
      );
    })).then(() => undefined);
  }

  private confirm(batch: string[], id: number, socket: number): void {
    if (socket !== this.socket) return;
    let late: string[] | undefined;
    for (const n of batch) {
      if (this.inflight.get(n) !== id) continue;
      this.inflight.delete(n);
      if (!this.wanted.has(n)) continue;
      this.confirmed.add(n);
      if (this.late.delete(n)) (late ??= []).push(n);
      this.resolve(n);
    }
    this.retryMs = RETRY_FIRST_MS;
    if (late && !this.restoring) {
      this.log?.warn({ conn: this.label, channels: late.length }, 'redis subscriptions restored after failing');
      this.events.restored(late);
    }
  }

  private failed(batch: string[], id: number, socket: number, err: Error): void {
    if (socket !== this.socket) return; // the socket went away: the restore on 'ready' re-sends
    let count = 0;
    for (const n of batch) {
      if (this.inflight.get(n) !== id) continue;
      this.inflight.delete(n);
      if (!this.wanted.has(n)) continue;
      this.late.add(n);
      // The poll waiting for it goes on (reads, parks); `restored` re-reads it once it holds.
      this.resolve(n);
      count++;
    }
    if (count === 0) return;
    const now = Date.now();
    if (now - this.lastFailureLog >= RETRY_MAX_MS) {
      this.lastFailureLog = now;
      this.log?.warn({ conn: this.label, channels: count, err: err.message, retryMs: this.retryMs }, 'redis subscribe failed; retrying');
    }
    if (this.sharded) this.events.suspect();
    this.scheduleRetry();
  }

  /** Every subscription in flight on this socket failed (a MOVED that ioredis swallowed). */
  private failInFlight(err: Error): void {
    const byBatch = new Map<number, string[]>();
    for (const [name, id] of this.inflight) {
      const list = byBatch.get(id);
      if (list) list.push(name);
      else byBatch.set(id, [name]);
    }
    for (const [id, names] of byBatch) this.failed(names, id, this.socket, err);
    this.events.suspect();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    const delay = this.retryMs * (0.75 + Math.random() / 2);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.ready()) return; // the restore on 'ready' re-sends everything
      const again = [...this.late].filter((n) => this.wanted.has(n) && !this.inflight.has(n) && !this.confirmed.has(n));
      if (again.length > 0) void this.subscribe(again);
    }, delay);
    this.retryTimer.unref();
  }

  // ---- the socket's life ----

  private async onReady(): Promise<void> {
    this.socket++;
    this.inflight.clear();
    this.confirmed.clear();
    this.changedNames.clear();
    this.restoring = true;
    const socket = this.socket;
    const names = [...this.wanted];
    await this.subscribe(names);
    if (socket !== this.socket) return; // lost again meanwhile: the next 'ready' starts over
    this.restoring = false;
    if (this.everReady && names.length > 0) {
      // Notifications sent while the socket was down are gone: the parked polls re-read.
      this.events.restored(names.filter((n) => this.confirmed.has(n)));
    }
    this.everReady = true;
    this.events.changed();
    // Added or removed while restoring: the flush sends the difference.
    for (const n of this.wanted) if (!this.confirmed.has(n) && !this.inflight.has(n) && !this.late.has(n)) this.changedNames.add(n);
    if (this.changedNames.size > 0) this.scheduleFlush();
    if (this.late.size > 0) this.scheduleRetry();
  }

  /** ioredis gave up on the connection (it does after some failed connects): start it again. */
  private onEnd(): void {
    if (this.closed) return;
    this.log?.warn({ conn: this.label }, 'redis subscriber connection ended; connecting it again');
    const timer = setTimeout(() => {
      if (!this.closed && this.redis.status === 'end') this.redis.connect().catch(() => undefined);
    }, RETRY_FIRST_MS * 10);
    timer.unref();
  }

  private onClose(): void {
    this.socket++;
    this.inflight.clear();
    this.confirmed.clear();
    this.restoring = false;
    this.events.changed();
  }

  // ---- helpers ----

  private waitFor(name: string): Promise<void> {
    return new Promise((resolve) => {
      const list = this.waiters.get(name);
      if (list) list.push(resolve);
      else this.waiters.set(name, [resolve]);
    });
  }

  private resolve(name: string): void {
    const list = this.waiters.get(name);
    if (!list) return;
    this.waiters.delete(name);
    for (const w of list) w();
  }

  /** Batches of at most BATCH names; on Cluster each batch holds names of one slot. */
  private batches(names: string[]): string[][] {
    if (names.length === 0) return [];
    if (!this.sharded) {
      const out: string[][] = [];
      for (let i = 0; i < names.length; i += BATCH) out.push(names.slice(i, i + BATCH));
      return out;
    }
    const bySlot = new Map<number, string[][]>();
    for (const n of names) {
      const slot = calculateSlot(n);
      const list = bySlot.get(slot);
      const last = list?.[list.length - 1];
      if (!list) bySlot.set(slot, [[n]]);
      else if (last!.length < BATCH) last!.push(n);
      else list.push([n]);
    }
    const out: string[][] = [];
    for (const list of bySlot.values()) for (const batch of list) out.push(batch);
    return out;
  }
}

/**
 * Rejects with "Command timed out" (a timeout, as ioredis words it) after `ms`. A busy event
 * loop runs due timers before it reads sockets, so the answer may already be waiting: the
 * timeout is declared only after one more turn of the loop.
 */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (!settled) reject(new Error('Command timed out'));
      });
    }, ms);
    promise.then(
      (v) => {
        settled = true;
        clearTimeout(timer);
        resolve(v);
      },
      (err) => {
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
