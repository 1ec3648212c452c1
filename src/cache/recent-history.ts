/**
 * Recent history of the channels this process follows, kept in process memory in front of the
 * channel store (Redis). A poll whose messages are already waiting is then answered without a
 * round trip: the notifications this process receives for its subscribed channels carry every
 * message (seq, epoch, time, value), so the newest messages of such a channel are known here.
 *
 *   ChannelStore (Redis) <── RecentHistory ──> PollHub
 *        events ──> RecentHistory.observe(events) ──> the hub's events
 *
 * A read is served from memory only when the window can prove it covers the cursor; anything
 * else goes to the store, which stays the truth:
 *   - the channel is subscribed (or lingering) and its subscription was confirmed before the
 *     window was filled, and the store says its subscriber connections are up (isReady);
 *   - the window joins up with the store: it was filled from a store read made after the
 *     subscription held, and every notification since followed it seq by seq in one epoch
 *     (a notification that does not join up, a reset, a resync or a lost connection empties
 *     it, and the next read fills it again);
 *   - the cursor is a position in the window's epoch between just before its oldest message
 *     and its head, and its fingerprint matches the message the window holds at its seq (the
 *     lost-writes rule, see cursor.ts: a message the store lost and whose seq was reused has
 *     another fingerprint); a cursor ahead of the head (a notification still on its way) or
 *     behind the window goes to the store;
 *   - "now" and "earliest" reads, conflated channels and messages near the history TTL go to
 *     the store.
 * A notification that is late only delays an answer: a poll parked at the head is woken by it.
 *
 * Windows live while the channel has interest here, and for LP_UNSUBSCRIBE_LINGER_MS after
 * (the store keeps the subscription that long, so notifications still arrive); never longer.
 */

import { BatchPublishError, type BrokerEvents, type ChannelInfo, type ChannelStore, type PublishItem, type PublishResult, type ReadFrom, type ReadResult } from '../broker/broker.js';
import type { Config } from '../config.js';
import type { Position } from '../cursor.js';
import type { Message } from '../message.js';
import { hasPrefix } from '../names.js';
import { Ring } from '../ring.js';

/** Newest messages kept per channel: enough for a client a few messages behind. */
export const RECENT_MESSAGES = 16;

type CacheConfig = Pick<Config, 'historySize' | 'historyTtlS' | 'conflatePrefixes' | 'unsubscribeLingerMs' | 'pollTimeoutMs'>;

/** The store behind the cache: a channel store that can say whether notifications flow. */
export type CachedStore = ChannelStore & { isReady?(): boolean };

export interface RecentHistoryStats {
  /** Reads answered from memory. */
  hits: number;
  /** Reads sent to the store. */
  misses: number;
}

const enum Fill {
  /** No window: the next read goes to the store and fills it. */
  Cold,
  /** A store read is filling the window; notifications meanwhile are kept aside. */
  Filling,
  /** The window joins up with the store. */
  Ready,
}

class ChannelWindow {
  interest = 0;
  /** While interest is 0: when the store drops the subscription (and so the window). */
  lingerUntil = 0;
  /** The store confirmed the subscription: notifications flow. */
  confirmed = false;
  /** The subscription being confirmed (a token; 0 when none is pending). */
  subscribing = 0;
  state = Fill.Cold;
  /** Bumped whenever the window is emptied: a fill that started before it is discarded. */
  generation = 0;
  epoch = '';
  /** Seq of the newest message (the channel's head, as far as notifications say). */
  head = 0;
  headFp = 0;
  /** Fingerprint of the message just before the oldest one held (0: not known). */
  beforeFp = 0;
  /**
   * The newest seq this process published and the store acknowledged (in `ackedEpoch`), whose
   * notification may still be on its way: until the window's head reaches it, reads go to the
   * store, so a client that published through this process reads its own write at once.
   */
  ackedSeq = 0;
  ackedEpoch = '';
  /** When the store last vouched for the window: its fill, or a notification that joined up. */
  heardAt = 0;
  readonly messages: Ring<Message>;
  /** Notifications that arrived while filling. */
  aside: Message[] = [];

  constructor(capacity: number) {
    this.messages = new Ring(capacity);
  }

  /** Seq of the oldest message held (head + 1 when none). */
  get first(): number {
    return this.head - this.messages.length + 1;
  }

  empty(): void {
    this.state = Fill.Cold;
    this.generation++;
    this.messages.clear();
    this.aside = [];
  }
}

export class RecentHistory implements ChannelStore {
  private readonly windows = new Map<string, ChannelWindow>();
  private readonly capacity: number;
  /** Messages older than this (ms, by this process's clock) are left to the store. */
  private readonly maxAgeMs: number;
  readonly stats: RecentHistoryStats = { hits: 0, misses: 0 };

  constructor(
    private readonly store: CachedStore,
    private readonly config: CacheConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.capacity = Math.min(RECENT_MESSAGES, config.historySize);
    // Keep clear of the TTL boundary: the store drops expired messages by its own clock.
    const ttlMs = config.historyTtlS * 1000;
    this.maxAgeMs = ttlMs - Math.min(ttlMs / 2, 10_000);
  }

  /** Channels with a window (for tests and diagnostics). */
  get size(): number {
    return this.windows.size;
  }

  /**
   * The store's events, seen by the cache first: messages extend windows, resets and resyncs
   * empty them. Pass the result to the store's setEvents().
   */
  observe(events: BrokerEvents): BrokerEvents {
    return {
      messages: (ch, messages) => {
        this.onMessages(ch, messages);
        events.messages(ch, messages);
      },
      reset: (ch, epoch) => {
        this.windows.get(ch)?.empty();
        events.reset(ch, epoch);
      },
      resync: (channels) => {
        if (channels) for (const ch of channels) this.windows.get(ch)?.empty();
        else for (const w of this.windows.values()) w.empty();
        events.resync(channels);
      },
      queueReady: (id) => events.queueReady(id),
      queueDisconnected: (id) => events.queueDisconnected(id),
    };
  }

  // ---- the ChannelStore, passed through ----

  isAvailable(): boolean {
    return this.store.isAvailable();
  }

  publish(item: PublishItem): Promise<PublishResult> {
    return this.store.publish(item).then((r) => {
      this.acknowledged(r);
      return r;
    });
  }

  publishBatch(items: readonly PublishItem[]): Promise<PublishResult[]> {
    return this.store.publishBatch(items).then(
      (results) => {
        for (const r of results) this.acknowledged(r);
        return results;
      },
      (err: unknown) => {
        // A batch that failed midway: what was stored is acknowledged all the same.
        if (err instanceof BatchPublishError) for (const r of [...err.results, ...err.alsoPublished]) this.acknowledged(r);
        throw err;
      },
    );
  }

  /** A publish through this process was acknowledged: the window must reach it before it serves. */
  private acknowledged(r: PublishResult): void {
    const w = this.windows.get(r.ch);
    if (!w) return;
    if (w.ackedEpoch !== r.epoch || r.seq > w.ackedSeq) {
      w.ackedEpoch = r.epoch;
      w.ackedSeq = r.seq;
    }
  }

  channelInfo(ch: string): Promise<ChannelInfo> {
    return this.store.channelInfo(ch);
  }

  deleteChannel(ch: string): Promise<ChannelInfo> {
    return this.store.deleteChannel(ch);
  }

  subscribe(ch: string): Promise<void> | undefined {
    let w = this.windows.get(ch);
    if (!w) this.windows.set(ch, (w = new ChannelWindow(this.capacity)));
    w.interest++;
    const pending = this.store.subscribe(ch);
    if (!pending) {
      // The store holds this subscription already (another waiter, or lingering).
      if (w.subscribing === 0) w.confirmed = true;
      return undefined;
    }
    // A new subscription: nothing was notified before it holds.
    const window = w;
    const token = ++w.subscribing;
    w.confirmed = false;
    w.empty();
    return pending.then(() => {
      if (window.subscribing === token) {
        window.subscribing = 0;
        window.confirmed = true;
      }
    });
  }

  unsubscribe(ch: string): void {
    this.store.unsubscribe(ch);
    const w = this.windows.get(ch);
    if (!w) return;
    if (--w.interest > 0) return;
    w.lingerUntil = this.now() + this.config.unsubscribeLingerMs;
    if (this.config.unsubscribeLingerMs === 0) this.windows.delete(ch);
    this.sweepSoon();
  }

  // ---- reads ----

  read(ch: string, from: ReadFrom, max: number): Promise<ReadResult> {
    const w = this.usable(ch);
    if (w && w.state === Fill.Ready && typeof from === 'object') {
      const served = this.serve(w, from, max);
      if (served) {
        this.stats.hits++;
        return Promise.resolve(served);
      }
    }
    this.stats.misses++;
    const read = this.store.read(ch, from, max);
    if (w && w.state === Fill.Cold) this.fill(ch, w, read, from, max);
    return read;
  }

  /** The channel's window when its notifications can be trusted now, else undefined. */
  private usable(ch: string): ChannelWindow | undefined {
    const w = this.windows.get(ch);
    if (!w) return undefined;
    if (w.interest === 0 && this.now() >= w.lingerUntil) {
      // The store may have dropped the subscription: no more notifications.
      this.windows.delete(ch);
      return undefined;
    }
    if (!w.confirmed || hasPrefix(ch, this.config.conflatePrefixes)) return undefined;
    if (w.state === Fill.Ready && this.now() - w.heardAt > this.config.pollTimeoutMs) {
      // Silent for a whole default hold: a quiet channel, or a subscriber socket that died
      // without closing (nothing marks it down). Refill from the store rather than trust it.
      w.empty();
    }
    if (this.store.isReady && !this.store.isReady()) {
      // A subscriber connection is down: notifications may be lost until the resync.
      w.empty();
      return undefined;
    }
    return w;
  }

  /** The store's answer from the window, or undefined when the window cannot prove it. */
  private serve(w: ChannelWindow, from: Position, max: number): ReadResult | undefined {
    if (from.epoch !== w.epoch || from.seq > w.head) return undefined;
    // A write acknowledged here whose notification has not come yet: the store has it.
    if (w.ackedSeq > w.head || (w.ackedSeq > 0 && w.ackedEpoch !== w.epoch)) return undefined;
    this.dropOld(w);
    const first = w.first;
    if (from.seq < first - 1) return undefined;
    if (from.fp !== 0 && from.seq > 0) {
      const fp = from.seq === w.head ? w.headFp : from.seq === first - 1 ? w.beforeFp : w.messages.at(from.seq - first).fp;
      if (fp !== from.fp) return undefined; // not known here, or a lost write: the store decides
    }
    const messages: Message[] = [];
    for (let i = from.seq + 1 - first; i < w.messages.length && messages.length < max; i++) messages.push(w.messages.at(i));
    return { epoch: w.epoch, lastSeq: w.head, headFp: w.headFp, messages, gap: false };
  }

  /** Drops messages the store may already have expired (the TTL, with a margin). */
  private dropOld(w: ChannelWindow): void {
    const oldest = this.now() - this.maxAgeMs;
    while (w.messages.length > 0 && w.messages.at(0).time < oldest) w.beforeFp = w.messages.shift()!.fp;
  }

  /**
   * Fills a cold window from a store read made after the subscription held: from the
   * caller's read when it reaches the head, else from a read of the channel's tail.
   */
  private fill(ch: string, w: ChannelWindow, read: Promise<ReadResult>, from: ReadFrom, max: number): void {
    w.state = Fill.Filling;
    const generation = w.generation;
    const current = () => w.generation === generation && this.windows.get(ch) === w && w.confirmed;
    read.then(async (r) => {
      if (!current()) return;
      let start = joined(r, from, max);
      if (!start) {
        // The channel's tail, read from a position just behind it (fp 0: no fingerprint
        // check). A gap only says that position was behind the retained history: the
        // messages are still the retained ones, up to the head.
        const tail = await this.store.read(ch, { epoch: r.epoch, seq: Math.max(0, r.lastSeq - this.capacity), fp: 0 }, this.capacity);
        if (!current()) return;
        if (tail.epoch !== r.epoch) return this.abandon(w, generation);
        start = { r: tail, beforeFp: 0 };
      }
      this.start(w, start.r, start.beforeFp);
    }).catch(() => this.abandon(w, generation));
  }

  private abandon(w: ChannelWindow, generation: number): void {
    if (w.generation === generation) w.empty();
  }

  /** A filled window: the read's messages up to its head, then what arrived meanwhile. */
  private start(w: ChannelWindow, r: ReadResult, beforeFp: number): void {
    const aside = w.aside;
    w.aside = [];
    const msgs = r.messages;
    if (msgs.length > 0 && msgs[msgs.length - 1]!.seq !== r.lastSeq) return w.empty(); // not up to the head
    w.messages.clear();
    w.epoch = r.epoch;
    // An empty window stands at the head; otherwise just before its first message.
    w.head = msgs.length > 0 ? msgs[0]!.seq - 1 : r.lastSeq;
    w.headFp = msgs.length > 0 ? beforeFp : r.headFp;
    w.beforeFp = w.headFp;
    w.state = Fill.Ready;
    w.heardAt = this.now();
    for (const m of msgs) this.append(w, m);
    for (const m of aside) if (w.state === Fill.Ready) this.extend(w, m);
  }

  private onMessages(ch: string, messages: readonly Message[]): void {
    const w = this.windows.get(ch);
    if (!w) return;
    if (w.state === Fill.Filling) {
      for (const m of messages) w.aside.push(m);
      return;
    }
    if (w.state !== Fill.Ready) return;
    for (const m of messages) {
      this.extend(w, m);
      if (w.state !== Fill.Ready) return;
    }
  }

  /** One notified message: appended when it follows the head; anything that does not join up empties the window. */
  private extend(w: ChannelWindow, m: Message): void {
    if (m.epoch !== w.epoch) return w.empty();
    if (m.seq === w.head + 1) {
      w.heardAt = this.now();
      return this.append(w, m);
    }
    if (m.seq > w.head) return w.empty(); // a notification was lost
    // Seen already (a repeated notification); a different message under that seq means the
    // store renumbered (lost writes): the window cannot be trusted.
    const fp = m.seq === w.head ? w.headFp : m.seq >= w.first ? w.messages.at(m.seq - w.first).fp : m.fp;
    if (fp !== m.fp) w.empty();
  }

  private append(w: ChannelWindow, m: Message): void {
    const dropped = w.messages.push(m);
    if (dropped) w.beforeFp = dropped.fp;
    w.head = m.seq;
    w.headFp = m.fp;
  }

  // ---- memory ----

  private sweepTimer: NodeJS.Timeout | undefined;

  /** Forgets windows whose lingering ended (one timer while any linger). */
  private sweepSoon(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      const now = this.now();
      let lingering = false;
      for (const [ch, w] of this.windows) {
        if (w.interest > 0) continue;
        if (now >= w.lingerUntil) this.windows.delete(ch);
        else lingering = true;
      }
      if (lingering) this.sweepSoon();
    }, Math.max(100, this.config.unsubscribeLingerMs));
    this.sweepTimer.unref();
  }

  close(): void {
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.windows.clear();
  }
}

/**
 * The caller's read as a window start, when it reached the head from a verified position:
 * its messages follow the cursor directly (no gap, same epoch) and end at the head.
 */
function joined(r: ReadResult, from: ReadFrom, max: number): { r: ReadResult; beforeFp: number } | undefined {
  if (r.gap || typeof from !== 'object' || from.epoch !== r.epoch) return undefined;
  if (r.messages.length === 0) return from.seq === r.lastSeq ? { r, beforeFp: r.headFp } : undefined;
  if (r.messages.length >= max && r.messages[r.messages.length - 1]!.seq !== r.lastSeq) return undefined;
  if (r.messages[0]!.seq !== from.seq + 1) return undefined;
  // The store checked the cursor's fingerprint (no gap), so it names the message before.
  return { r, beforeFp: from.fp };
}
