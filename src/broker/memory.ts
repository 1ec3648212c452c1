/**
 * The embedded broker: channels in this process's memory, with the same semantics as the
 * Redis broker (seq, epoch, bounded history with TTL, idempotency window, seed queues), so a
 * bare `npm start` behaves like a deployment. Every structure is bounded: history by count and
 * age, idempotency keys by count and age, and idle channels are reclaimed by an incremental
 * sweep (see ReclaimFilter for why that cannot renumber a channel silently).
 */

import type { Config } from '../config.js';
import { Message } from '../message.js';
import { hasPrefix } from '../names.js';
import { Ring } from '../ring.js';
import {
  type Broker,
  type BrokerEvents,
  type ChannelInfo,
  type ChannelState,
  type PublishItem,
  type PublishResult,
  type ReadFrom,
  type ReadResult,
  planRead,
} from './broker.js';
import { newEpoch } from './epoch.js';
import { MemoryQueueStore } from './memory-queues.js';
import { ReclaimFilter } from './reclaim-filter.js';

type MemoryConfig = Pick<
  Config,
  'historySize' | 'historyTtlS' | 'channelIdleS' | 'conflatePrefixes' | 'idempotencyTtlS' | 'idempotencyMaxKeys'
>;

interface IdempotencyRecord {
  seq: number;
  epoch: string;
  expires: number;
}

class MemoryChannel implements ChannelState {
  lastSeq = 0;
  lastPublish = 0;
  /** Fingerprint of the newest message that left the history (seq firstSeq - 1). */
  trimmedFp = 0;
  /** Fingerprint of the message at lastSeq, kept when the history empties. */
  headFp = 0;
  idempotency: Map<string, IdempotencyRecord> | undefined;
  constructor(
    public epoch: string,
    public history: Ring<Message>,
  ) {}

  get firstSeq(): number {
    return this.history.length === 0 ? this.lastSeq + 1 : this.history.at(0).seq;
  }

  fingerprintAt(seq: number): number {
    if (seq === this.lastSeq) return this.headFp;
    const first = this.firstSeq;
    if (seq === first - 1) return this.trimmedFp;
    return seq >= first && seq <= this.lastSeq ? this.history.at(seq - first).fp : 0;
  }

  append(message: Message): void {
    const dropped = this.history.push(message);
    if (dropped) this.trimmedFp = dropped.fp;
    this.headFp = message.fp;
  }

  dropOldest(): void {
    const dropped = this.history.shift();
    if (dropped) this.trimmedFp = dropped.fp;
  }
}

/** Channels swept per tick: keeps each sweep step short however many channels exist. */
const SWEEP_BATCH = 5000;
const SWEEP_INTERVAL_MS = 1000;

export class MemoryBroker implements Broker {
  readonly kind = 'memory';
  private events: BrokerEvents | undefined;
  private readonly channels = new Map<string, MemoryChannel>();
  /** The seed-queue half of the broker. */
  private readonly queues: MemoryQueueStore;
  private readonly interest = new Map<string, number>();
  private readonly reclaimed = new ReclaimFilter();
  private storeEpoch = newEpoch();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepCursor: Iterator<[string, MemoryChannel]> | undefined;
  private readonly historyTtlMs: number;
  private lastTime = 0;

  constructor(
    private readonly config: MemoryConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.historyTtlMs = config.historyTtlS * 1000;
    this.queues = new MemoryQueueStore(config, () => this.events, now);
  }

  setEvents(events: BrokerEvents): void {
    this.events = events;
  }

  async start(): Promise<void> {
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  isReady(): boolean {
    return true;
  }

  isAvailable(): boolean {
    return true;
  }

  async waitReady(): Promise<void> {}

  async publish(item: PublishItem): Promise<PublishResult> {
    return this.publishNow(item);
  }

  async publishBatch(items: readonly PublishItem[]): Promise<PublishResult[]> {
    return items.map((item) => this.publishNow(item));
  }

  private publishNow(item: PublishItem): PublishResult {
    const now = this.now();
    const channel = this.channelFor(item.ch, true);
    if (item.id !== undefined) {
      const seen = channel.idempotency?.get(item.id);
      if (seen && seen.expires > now) return { ch: item.ch, seq: seen.seq, epoch: seen.epoch };
    }
    const seq = ++channel.lastSeq;
    channel.lastPublish = now;
    // Strictly increasing times order messages across channels even within one millisecond.
    const time = (this.lastTime = Math.max(now, this.lastTime + 0.001));
    const message = new Message(item.ch, seq, channel.epoch, time, item.json);
    this.dropExpired(channel, now);
    channel.append(message);
    if (item.id !== undefined) this.remember(channel, item.id, { seq, epoch: channel.epoch, expires: now + this.config.idempotencyTtlS * 1000 });
    if (this.interest.has(item.ch)) this.events?.messages(item.ch, [message]);
    return { ch: item.ch, seq, epoch: channel.epoch };
  }

  private remember(channel: MemoryChannel, id: string, record: IdempotencyRecord): void {
    const map = (channel.idempotency ??= new Map());
    map.delete(id);
    map.set(id, record);
    if (map.size > this.config.idempotencyMaxKeys) map.delete(map.keys().next().value as string);
  }

  async read(ch: string, from: ReadFrom, max: number): Promise<ReadResult> {
    const channel = this.lookup(ch);
    if (!channel) {
      // Never published: seq 0 in the store's epoch, nothing retained.
      const state = { epoch: this.storeEpoch, lastSeq: 0, firstSeq: 1, fingerprintAt: () => 0 };
      return { epoch: state.epoch, lastSeq: 0, headFp: 0, messages: [], gap: planRead(from, state, false).gap };
    }
    this.dropExpired(channel, this.now());
    const firstSeq = channel.firstSeq;
    const plan = planRead(from, channel, hasPrefix(ch, this.config.conflatePrefixes));
    const messages: Message[] = [];
    for (let i = plan.afterSeq + 1 - firstSeq; i < channel.history.length && messages.length < max; i++) {
      messages.push(channel.history.at(i));
    }
    return { epoch: channel.epoch, lastSeq: channel.lastSeq, headFp: channel.headFp, messages, gap: plan.gap };
  }

  async channelInfo(ch: string): Promise<ChannelInfo> {
    const channel = this.lookup(ch);
    if (!channel) return { ch, epoch: this.storeEpoch, lastSeq: 0, retained: 0 };
    this.dropExpired(channel, this.now());
    return { ch, epoch: channel.epoch, lastSeq: channel.lastSeq, retained: channel.history.length };
  }

  async deleteChannel(ch: string): Promise<ChannelInfo> {
    // The channel record stays (with a new epoch) so the old numbering can never come back.
    const channel = this.channelFor(ch, true);
    channel.epoch = newEpoch();
    channel.lastSeq = 0;
    channel.lastPublish = this.now();
    channel.history.clear();
    channel.trimmedFp = channel.headFp = 0;
    channel.idempotency = undefined;
    this.events?.reset(ch, channel.epoch);
    return { ch, epoch: channel.epoch, lastSeq: 0, retained: 0 };
  }

  subscribe(ch: string): undefined {
    this.interest.set(ch, (this.interest.get(ch) ?? 0) + 1);
    return undefined;
  }

  unsubscribe(ch: string): void {
    const n = (this.interest.get(ch) ?? 0) - 1;
    if (n > 0) this.interest.set(ch, n);
    else this.interest.delete(ch);
  }

  // ---- seed queues (MemoryQueueStore) ----

  queuePush(id: string, json: string): Promise<void> {
    return this.queues.queuePush(id, json);
  }

  queuePop(id: string): Promise<string | undefined> {
    return this.queues.queuePop(id);
  }

  queueReturn(id: string, json: string): Promise<void> {
    return this.queues.queueReturn(id, json);
  }

  queueClear(id: string): Promise<void> {
    return this.queues.queueClear(id);
  }

  watchQueue(): undefined {
    return undefined;
  }

  unwatchQueue(): void {}

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }

  private channelFor(ch: string, create: boolean): MemoryChannel {
    let channel = this.channels.get(ch);
    if (!channel && create) {
      const size = hasPrefix(ch, this.config.conflatePrefixes) ? 1 : this.config.historySize;
      channel = new MemoryChannel(this.epochForNew(ch), new Ring(size));
      this.channels.set(ch, channel);
    }
    return channel!;
  }

  /** The channel's record; a reclaimed channel gets its record back, in a fresh epoch. */
  private lookup(ch: string): MemoryChannel | undefined {
    return this.channels.get(ch) ?? (this.reclaimed.has(ch) ? this.channelFor(ch, true) : undefined);
  }

  /** A channel with no record: the store epoch, unless it was reclaimed (then a fresh one). */
  private epochForNew(ch: string): string {
    return this.reclaimed.has(ch) ? newEpoch() : this.storeEpoch;
  }

  private dropExpired(channel: MemoryChannel, now: number): void {
    const cutoff = now - this.historyTtlMs;
    while (channel.history.length > 0 && channel.history.at(0).time <= cutoff) channel.dropOldest();
    const idem = channel.idempotency;
    if (idem) {
      for (const [key, record] of idem) {
        if (record.expires > now) break; // insertion order is expiry order
        idem.delete(key);
      }
      if (idem.size === 0) channel.idempotency = undefined;
    }
  }

  /** One step of the incremental sweep: expire history, reclaim idle channels, age queues. */
  sweep(): void {
    const now = this.now();
    const idleCutoff = now - this.config.channelIdleS * 1000;
    this.sweepCursor ??= this.channels.entries();
    for (let i = 0; i < SWEEP_BATCH; i++) {
      const next = this.sweepCursor.next();
      if (next.done) {
        this.sweepCursor = undefined;
        this.queues.sweep();
        break;
      }
      const [name, channel] = next.value;
      this.dropExpired(channel, now);
      const idle = channel.history.length === 0 && !channel.idempotency && channel.lastPublish <= idleCutoff;
      if (idle && !this.interest.has(name)) this.reclaim(name);
    }
  }

  private reclaim(name: string): void {
    this.channels.delete(name);
    if (this.reclaimed.full) {
      // Every channel reclaimed so far now comes back in a new store epoch anyway.
      this.reclaimed.clear();
      this.storeEpoch = newEpoch();
    }
    this.reclaimed.add(name);
  }
}
