/**
 * The Broker: where channels live. The HTTP core talks to this interface only; the
 * in-memory broker and the Redis broker implement it with the same semantics (seq, epoch,
 * bounded history, TTL, idempotency, seed queues), and one test suite runs against both.
 *
 * Notifications (BrokerEvents) are hints: they may be late, lost across a reconnect, or
 * repeated. The history read by `read()` is the truth, and `resync` tells the core to re-read.
 */

import type { Message } from '../message.js';
import type { Position } from '../cursor.js';

export interface ChannelHead {
  epoch: string;
  lastSeq: number;
}

/** What a read needs to know to judge a cursor: the head, the oldest retained seq, fingerprints. */
export interface ChannelState extends ChannelHead {
  /** Seq of the oldest retained message; lastSeq + 1 when none is retained. */
  firstSeq: number;
  /** The fingerprint of the message at `seq` when the store still knows it, else 0. */
  fingerprintAt(seq: number): number;
  /**
   * The epoch before `epoch` when the store moved the channel to a new epoch without
   * renumbering it (acknowledged writes were found lost): its cursors keep their place and
   * get a gap.
   */
  previousEpoch?: string | undefined;
}

/** Where a read starts: after a cursor position, at the oldest retained message, or at the head. */
export type ReadFrom = Position | 'earliest' | 'now';

export interface ReadResult extends ChannelHead {
  /** Messages after the start, oldest first, at most `max`. */
  messages: Message[];
  /**
   * The cursor asked for messages the channel no longer holds, for another epoch, or for a
   * message the store lost (its seq now names another message).
   */
  gap: boolean;
  /** Fingerprint of the message at lastSeq (0 when lastSeq is 0 or it is not known). */
  headFp: number;
}

export interface PublishItem {
  ch: string;
  /** The value as compact JSON text. */
  json: string;
  /** Idempotency key, scoped to the channel. */
  id?: string | undefined;
}

export interface PublishResult {
  ch: string;
  seq: number;
  epoch: string;
}

export interface ChannelInfo extends ChannelHead {
  ch: string;
  retained: number;
}

/** A batch that failed midway: `results` holds the items that were published, in order. */
export class BatchPublishError extends Error {
  constructor(
    /** The published prefix: the items before the first that failed. */
    readonly results: PublishResult[],
    override readonly cause: Error,
    /**
     * Items after the failed one that were stored all the same (a pipelined batch sends them
     * all at once): acknowledged writes for the caches and the lost-writes audit, not answered
     * as results, which the contract keeps a prefix in batch order.
     */
    readonly alsoPublished: readonly PublishResult[] = [],
  ) {
    super(`batch stopped after ${results.length} items: ${cause.message}`);
  }
}

export interface BrokerEvents {
  /** New messages on a channel this process subscribed to, oldest first. */
  messages(ch: string, messages: Message[]): void;
  /**
   * The channel's numbering changed under its cursors (deleted, or given a new epoch after the
   * store lost acknowledged writes): polls on it re-read.
   */
  reset(ch: string, epoch: string): void;
  /**
   * Notifications may have been lost (a subscriber reconnected, a subscription was restored
   * late): re-read what is parked. `channels`, when given, are the only ones affected.
   */
  resync(channels?: readonly string[]): void;
  /** A seed client queue that this process watches may have a message. */
  queueReady(id: string): void;
  /** A seed client was disconnected (its queue dropped). */
  queueDisconnected(id: string): void;
}

/** Whether the store can serve commands now (new requests get 503 when not). */
export interface StoreStatus {
  isAvailable(): boolean;
}

/** The channel store: numbered, bounded channel logs and interest in their notifications. */
export interface ChannelStore extends StoreStatus {
  publish(item: PublishItem): Promise<PublishResult>;
  /** All or a prefix: rejects with BatchPublishError carrying the published prefix. */
  publishBatch(items: readonly PublishItem[]): Promise<PublishResult[]>;
  read(ch: string, from: ReadFrom, max: number): Promise<ReadResult>;
  channelInfo(ch: string): Promise<ChannelInfo>;
  deleteChannel(ch: string): Promise<ChannelInfo>;

  /**
   * Interest: notifications for `ch` are wanted (counted; pair each with unsubscribe).
   * Returns a promise while the subscription is not yet confirmed by the store: history read
   * before that could miss a message published in between. A subscription that fails is
   * retried, and `resync([ch])` follows once it holds, so no poll waits blind.
   */
  subscribe(ch: string): Promise<void> | undefined;
  unsubscribe(ch: string): void;
}

/** The seed-compatible per-client queues: a namespace apart from channels. */
export interface QueueStore extends StoreStatus {
  queuePush(id: string, json: string): Promise<void>;
  queuePop(id: string): Promise<string | undefined>;
  /** Puts back at the head a message whose answer could not be written. */
  queueReturn(id: string, json: string): Promise<void>;
  queueClear(id: string): Promise<void>;
  watchQueue(id: string): Promise<void> | undefined;
  unwatchQueue(id: string): void;
}

/** Both stores behind one lifecycle: what the server starts, checks and closes. */
export interface Broker extends ChannelStore, QueueStore {
  readonly kind: 'memory' | 'redis' | 'cluster';
  /** Set once, before start(). */
  setEvents(events: BrokerEvents): void;
  start(): Promise<void>;
  /** The command connection and the subscriber connections are up and answering (/readyz). */
  isReady(): boolean;
  /**
   * Commands can be served (the store is reachable and answering). New requests are refused
   * with 503 when not; a subscriber connection that is reconnecting only delays a poll's setup.
   */
  isAvailable(): boolean;
  /** Resolves once isReady(), or rejects after `timeoutMs` (for tests and orderly starts). */
  waitReady(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export interface ReadPlan {
  /** Read messages with seq greater than this. */
  afterSeq: number;
  gap: boolean;
}

/**
 * The one place that decides what a cursor means against a channel's state (the Redis read
 * script mirrors it: src/broker/redis/lua/read.lua).
 *
 * A cursor never gets a seq at or before its own again in the same numbering: when the store
 * lost acknowledged writes, the cursor gets a gap and continues after its seq (or after the
 * head, when the store's numbering fell behind the cursor).
 */
export function planRead(from: ReadFrom, state: ChannelState, conflated: boolean): ReadPlan {
  const { lastSeq, firstSeq } = state;
  if (from === 'now') return { afterSeq: lastSeq, gap: false };
  if (from === 'earliest') return { afterSeq: firstSeq - 1, gap: false };
  // The same numbering under the epoch the store moved away from: keep the place, report a gap.
  const renumbered = from.epoch !== state.epoch;
  if (renumbered && (state.previousEpoch === undefined || from.epoch !== state.previousEpoch)) {
    // Another numbering altogether (deleted, or the store lost): everything retained follows.
    return { afterSeq: firstSeq - 1, gap: true };
  }
  // The store holds fewer messages than the cursor saw: acknowledged writes were lost.
  if (from.seq > lastSeq) return { afterSeq: lastSeq, gap: true };
  if (from.seq >= firstSeq - 1) {
    // The cursor's message is not the one the store holds under its seq: acknowledged writes
    // were lost and their seqs reused. Report it; never re-send seqs at or before the cursor.
    const fp = from.fp !== 0 && from.seq > 0 ? state.fingerprintAt(from.seq) : 0;
    return { afterSeq: from.seq, gap: renumbered || (fp !== 0 && fp !== from.fp) };
  }
  // Behind the retained history: messages are gone. A conflated channel promises only the latest.
  return { afterSeq: firstSeq - 1, gap: renumbered || !conflated };
}
