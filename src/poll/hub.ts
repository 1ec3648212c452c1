/**
 * The delivery engine for every transport (long poll, SSE, WebSocket): resolves a waiter's
 * cursor against the broker, parks it, and delivers when a message arrives, its deadline
 * passes, or the server drains. A poll is answered once; a stream is re-armed at its new
 * position after each delivery.
 *
 * Wakes are batched: broker notifications are queued and delivered on the next loop turn
 * (setImmediate), never inside the publisher's request callback, because a cork from inside
 * another socket's callback is a no-op in uWS (packages.md: 8–9× slower).
 *
 * Fan-out: single-channel waiters parked at one position of one channel form a PositionGroup
 * in that channel's spool (see PollRegistry). A wake renders the group's answer once per
 * (format, max), in a cache that is a local of that one group's wake: it cannot serve another
 * channel or another position. Multi-channel waiters are answered one by one.
 *
 * Every state change goes through setState(), against the table in waiter.ts.
 */

import type { ChannelStore, ReadFrom, ReadResult } from '../broker/broker.js';
import type { Config } from '../config.js';
import type { Position } from '../cursor.js';
import { BrokerUnavailableError, HoldfastError } from '../errors.js';
import type { Message } from '../message.js';
import type { AnswerReason, Metrics } from '../metrics.js';
import { type AnswerFormat, renderAnswer } from '../render.js';
import { Sent, jitter } from '../respond.js';
import { TimerWheel } from '../timer-wheel.js';
import { byTime, contiguous, fit, positionAfter } from './positions.js';
import { type ChannelSpool, type PositionGroup, PollRegistry } from './registry.js';
import { type Waiter, WaiterState, canMove, stateName } from './waiter.js';

type HubConfig = Pick<Config, 'maxParked' | 'maxBackpressure' | 'writeTimeoutMs' | 'conflatePrefixes'>;

/** One rendered answer for the members of a group that share a format and max. */
const KINDS = ['poll', 'sse', 'ws'] as const;

interface GroupAnswer {
  format: AnswerFormat;
  max: number;
  body: Buffer;
  messages: Message[];
  positions: readonly Position[];
  /** Notified messages were left out (max, body budget): a stream reads on at once. */
  more: boolean;
  /** Waiters it went out to, by transport: counted in the metrics once per answer. */
  written: Record<Waiter['transport']['kind'], number>;
}

export class PollHub {
  readonly registry: PollRegistry;
  readonly wheel: TimerWheel<Waiter>;
  private parked = 0;
  private pending = new Map<string, Message[]>();
  private flushScheduled = false;
  private draining = false;
  private drainRetryMs = 0;
  /** Answers never exceed this, so a normal answer never trips the slow-reader limit. */
  private readonly bodyBudget: number;
  /** Polls this process parks outside the hub (the seed endpoints): LP_MAX_PARKED counts both. */
  parkedElsewhere: () => number = () => 0;

  constructor(
    private readonly broker: ChannelStore,
    private readonly config: HubConfig,
    private readonly metrics: Metrics,
    private readonly onBug: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.registry = new PollRegistry(broker);
    this.wheel = new TimerWheel<Waiter>((w) => {
      try {
        this.expire(w);
      } catch (err) {
        this.fail(w, err);
      }
    }, 100, 4096, now);
    this.bodyBudget = Math.max(1024, config.maxBackpressure >>> 1);
  }

  /** Waiters parked (waiting), for the gauge and admission. */
  get parkedCount(): number {
    return this.parked;
  }

  start(): void {
    this.wheel.start();
  }

  /**
   * Takes a new waiter: registers interest first, then reads history once the subscriptions
   * are confirmed (see PollRegistry). The deadline runs from here, so a stuck setup still
   * answers. The caller routes its client's disconnect to abort().
   */
  begin(w: Waiter, from: readonly ReadFrom[]): void {
    if (!this.broker.isAvailable()) throw new BrokerUnavailableError();
    this.wheel.add(w);
    const confirmed = this.registry.add(w);
    if (!confirmed) {
      this.resolve(w, from, true).catch(this.onBug);
      return;
    }
    confirmed.then(() => {
      if (w.state === WaiterState.Setup) return this.resolve(w, from, true);
    }).catch(this.onBug);
  }

  /** The client went away (or replaced its subscription): the waiter leaves at once. */
  abort(w: Waiter): void {
    if (w.state !== WaiterState.Done) this.setState(w, WaiterState.Done);
  }

  /** A stream's deadline moved (a renewed token): re-files it on the wheel. */
  setDeadline(w: Waiter, deadline: number): void {
    w.deadline = deadline;
    if (w.state === WaiterState.Setup || w.state === WaiterState.Parked) this.wheel.add(w);
  }

  // ---- the state machine's one choke point ----

  /**
   * Moves a waiter to `to`, and keeps everything that depends on its state in step: the
   * parked count, its place in the registry, and its deadline on the wheel.
   */
  private setState(w: Waiter, to: WaiterState): void {
    const from = w.state;
    if (!canMove(from, to)) throw new Error(`waiter state ${stateName(from)} -> ${stateName(to)} is not allowed`);
    w.state = to;
    if (from === WaiterState.Parked) this.parked--;
    switch (to) {
      case WaiterState.Parked:
        this.parked++;
        if (from === WaiterState.Parked) this.registry.rearm(w);
        else this.registry.park(w);
        return;
      case WaiterState.Setup:
        this.registry.unpark(w);
        return;
      case WaiterState.Writing:
        // Off the wheel while the answer is written: most writes finish at once. One that
        // cannot is given LP_WRITE_TIMEOUT_MS (armWriteDeadline), then the wheel closes it.
        this.registry.remove(w);
        this.wheel.remove(w);
        return;
      case WaiterState.Done:
        if (from !== WaiterState.Writing) this.registry.remove(w);
        this.wheel.remove(w);
        return;
    }
  }

  /** A poll's answer waits for its socket to drain: the wheel closes it after LP_WRITE_TIMEOUT_MS. */
  private armWriteDeadline(w: Waiter): void {
    w.deadline = this.now() + this.config.writeTimeoutMs;
    this.wheel.add(w);
  }

  // ---- notifications from the broker ----

  onMessages(ch: string, messages: Message[]): void {
    if (this.registry.countOn(ch) === 0) return;
    const list = this.pending.get(ch);
    if (list) for (const m of messages) list.push(m);
    else this.pending.set(ch, messages.slice());
    this.scheduleFlush();
  }

  /** A deleted channel: every waiter on it re-reads and so sees the new epoch as a gap. */
  onReset(ch: string): void {
    const spool = this.registry.spool(ch);
    if (!spool) return;
    spool.wakes++;
    for (const w of this.registry.waitersOn(ch)) this.reread(w);
  }

  /**
   * Notifications may have been lost: every waiter on `channels` (on every channel when none
   * are named) re-reads. A waiter reading already sees its stamp move and reads again.
   */
  onResync(channels?: readonly string[]): void {
    if (channels) {
      for (const ch of channels) this.onReset(ch);
      return;
    }
    this.registry.wakeAll();
    for (const w of this.registry.all()) this.reread(w);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const pending = this.pending;
    this.pending = new Map();
    let multi: Set<Waiter> | undefined;
    for (const [ch, list] of pending) {
      const spool = this.registry.spool(ch);
      if (!spool) continue;
      spool.wakes++; // waiters reading history re-read before they park
      if (spool.hasGroups) this.wakeGroups(spool, list);
      if (spool.multi) for (const w of spool.multi) (multi ??= new Set()).add(w);
    }
    if (multi) {
      for (const w of multi) {
        try {
          this.wakeMulti(w, pending);
        } catch (err) {
          this.onBug(err);
        }
      }
    }
  }

  /** The fan-out path: each group of one channel's spool is answered from one rendering. */
  private wakeGroups(spool: ChannelSpool, list: readonly Message[]): void {
    for (const group of spool.groups()) {
      try {
        const fresh = contiguous(spool.ch, list, group.position, this.config.conflatePrefixes);
        if (fresh === undefined) {
          for (let w = group.head, next: Waiter | null; w; w = next) {
            next = w.groupNext;
            this.reread(w);
          }
        } else if (fresh.length > 0) {
          this.answerGroup(spool, group, fresh);
        }
      } catch (err) {
        this.onBug(err);
      }
    }
  }

  private answerGroup(spool: ChannelSpool, group: PositionGroup, fresh: Message[]): void {
    // Local to this group: the one place a rendered answer is shared.
    const rendered: GroupAnswer[] = [];
    const before = group.positions;
    // Where the streams that got everything stand now: they stay in this group, which moves
    // there as a whole below (one re-key, not a leave and a join per stream).
    let moved: readonly Position[] | undefined;
    // A poll (or a stream left with more to read) leaves the group as it is answered.
    for (let w = group.head, next: Waiter | null; w; w = next) {
      next = w.groupNext;
      let answer: GroupAnswer | undefined;
      for (const a of rendered) if (a.format === w.format && a.max === w.max) answer = a;
      if (!answer) {
        const messages = fit(fresh, w.max, this.bodyBudget);
        const last = messages[messages.length - 1]!;
        const positions = [{ epoch: last.epoch, seq: last.seq, fp: last.fp }];
        const body = renderAnswer({ channels: spool.single, before, messages, after: positions, gapChannels: undefined, retryMs: undefined }, w.format);
        rendered.push((answer = { format: w.format, max: w.max, body, messages, positions, more: messages.length < fresh.length, written: { poll: 0, sse: 0, ws: 0 } }));
      }
      if (w.transport.streams && !answer.more) {
        if (this.writeStream(w, answer.body)) {
          moved = answer.positions;
          answer.written[w.transport.kind]++;
        }
        continue;
      }
      w.positions = answer.positions;
      if (this.deliver(w, answer.body, 'messages', answer.more)) answer.written[w.transport.kind]++;
    }
    // The delivery metrics once per rendered answer, not once per waiter.
    for (const a of rendered) for (const kind of KINDS) if (a.written[kind] > 0) this.count(kind, a.messages, true, a.written[kind]);
    if (moved && group.count > 0) {
      const now = this.registry.moveGroup(spool.ch, group, moved);
      for (let w = now.head; w; w = w.groupNext) w.positions = now.positions;
    }
  }

  private wakeMulti(w: Waiter, pending: ReadonlyMap<string, readonly Message[]>): void {
    if (w.state !== WaiterState.Parked) return; // reading: its wake stamp moved
    const picked: Message[] = [];
    for (let i = 0; i < w.channels.length; i++) {
      const list = pending.get(w.channels[i]!);
      if (!list) continue;
      const fresh = contiguous(w.channels[i]!, list, w.positions[i]!, this.config.conflatePrefixes);
      if (fresh === undefined) return this.reread(w);
      for (const m of fresh) picked.push(m);
    }
    if (picked.length === 0) return;
    if (picked.length > 1) picked.sort(byTime);
    const delivered = fit(picked, w.max, this.bodyBudget);
    const before = w.positions;
    const after = before.slice();
    for (const m of delivered) after[w.channels.indexOf(m.ch)] = { epoch: m.epoch, seq: m.seq, fp: m.fp };
    w.positions = after;
    this.answer(w, before, delivered, undefined, 'messages', true, delivered.length < picked.length);
  }

  // ---- reading history ----

  /** A parked waiter reads its channels again (one reading already will: its stamp moved). */
  private reread(w: Waiter): void {
    if (w.state !== WaiterState.Parked) return;
    this.resolve(w, w.positions, false).catch(this.onBug);
  }

  /**
   * Reads each channel from `from`; delivers at once when there is anything to send (or a
   * gap), parks otherwise. Runs for a new waiter and again for a parked one whose wake could
   * not be served from notifications alone.
   */
  private async resolve(w: Waiter, from: readonly ReadFrom[], initial: boolean): Promise<void> {
    if (!initial) this.setState(w, WaiterState.Setup);
    w.readStamp = this.registry.wakeStamp(w.channels);
    let results: ReadResult[];
    try {
      results = w.channels.length === 1
        ? [await this.broker.read(w.channels[0]!, from[0]!, w.max)]
        : await Promise.all(w.channels.map((ch, i) => this.broker.read(ch, from[i]!, w.max)));
    } catch (err) {
      if (w.state !== WaiterState.Setup) return;
      if (initial) return this.refuse(w, err);
      // Broker away: stay parked with the cursor unchanged; a resync re-reads.
      this.setState(w, WaiterState.Parked);
      return;
    }
    if (w.state !== WaiterState.Setup) return; // aborted or timed out meanwhile

    if (initial && !this.draining && this.parked + this.parkedElsewhere() >= this.config.maxParked && !results.some((r) => r.gap || r.messages.length > 0)) {
      return this.refuse(w, new HoldfastError('too_many_polls', `this process holds LP_MAX_PARKED (${this.config.maxParked}) polls; retry shortly`, { retryMs: 2000 }));
    }
    try {
      this.settle(w, from, initial, results);
    } catch (err) {
      // A bug while rendering or writing: end the waiter (500) rather than strand it in Setup.
      this.fail(w, err);
    }
  }

  /** Delivers what `resolve` read, or parks the waiter. */
  private settle(w: Waiter, from: readonly ReadFrom[], initial: boolean, results: ReadResult[]): void {
    if (initial) {
      w.transport.start(w);
      if (w.state !== WaiterState.Setup) return; // the client left as the stream opened
    }

    const picked: Message[] = [];
    let gapChannels: string[] | undefined;
    let full = false;
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const f = from[i]!;
      if (r.gap) (gapChannels ??= []).push(w.channels[i]!);
      if (initial && typeof f === 'object' && f.epoch === r.epoch) this.metrics.pollLag.observe(Math.max(0, r.lastSeq - f.seq));
      if (r.messages.length >= w.max) full = true;
      for (const m of r.messages) picked.push(m);
    }
    if (picked.length > 1 && results.length > 1) picked.sort(byTime);
    const delivered = fit(picked, w.max, this.bodyBudget);
    w.positions = results.map((r, i) => positionAfter(w.channels[i]!, r, from[i]!, delivered));

    // A stream's first answer goes out even when empty: it tells the client where it starts.
    if (delivered.length > 0 || gapChannels || (initial && w.transport.streams && !this.draining)) {
      const before = w.format === 'sse' ? results.map((r, i) => positionAfter(w.channels[i]!, r, from[i]!, [])) : w.positions;
      const more = full || delivered.length < picked.length;
      return this.answer(w, before, delivered, gapChannels, gapChannels ? 'gap' : 'messages', false, more);
    }
    if (this.draining) return this.endOrAnswer(w, 'drain');
    const missed = this.missedWake(w);
    this.setState(w, WaiterState.Parked);
    if (missed) this.reread(w);
  }

  /** A notification (or a resync) came while the waiter was reading: what it read may be old. */
  private missedWake(w: Waiter): boolean {
    return this.registry.wakeStamp(w.channels) !== w.readStamp;
  }

  /** Ends a waiter after a bug; the bug is reported whatever state it left the waiter in. */
  private fail(w: Waiter, err: unknown): void {
    if (w.state === WaiterState.Done) return this.onBug(err);
    try {
      this.refuse(w, err);
    } catch (again) {
      this.onBug(again);
    }
  }

  /** Ends a waiter that never got an answer with an error. */
  private refuse(w: Waiter, err: unknown): void {
    this.setState(w, WaiterState.Done);
    const error = err instanceof HoldfastError ? err : undefined;
    if (!error) this.onBug(err);
    const e = error ?? new HoldfastError('internal', 'internal error');
    this.metrics.rejected.inc({ reason: e.code });
    w.transport.reject(w, e);
  }

  // ---- delivering ----

  private expire(w: Waiter): void {
    if (w.state === WaiterState.Writing) {
      // The answer could not be written in LP_WRITE_TIMEOUT_MS: a slow reader.
      this.setState(w, WaiterState.Done);
      if (w.transport.closeSlow(w)) this.metrics.slowClosed.inc();
      return;
    }
    if (w.state === WaiterState.Done) return;
    // Its first read never completed (the broker is away): no cursor to answer with.
    if (w.positions.length === 0) return this.refuse(w, new BrokerUnavailableError());
    this.endOrAnswer(w, 'timeout');
  }

  /** A poll answers with its cursor (timeout, drain); a stream ends. */
  private endOrAnswer(w: Waiter, why: 'timeout' | 'drain'): void {
    if (w.transport.streams) {
      this.setState(w, WaiterState.Done);
      w.transport.end(w, why === 'timeout' ? 'expired' : 'drain');
      return;
    }
    this.answer(w, w.positions, [], undefined, why, false, false, why === 'drain' ? jitter(this.drainRetryMs) : undefined);
  }

  private answer(
    w: Waiter,
    before: readonly Position[],
    messages: Message[],
    gapChannels: string[] | undefined,
    reason: AnswerReason,
    live: boolean,
    more: boolean,
    retryMs?: number,
  ): void {
    const body = renderAnswer({ channels: w.channels, before, messages, after: w.positions, gapChannels, retryMs }, w.format);
    if (this.deliver(w, body, reason, more)) this.count(w.transport.kind, messages, live, 1);
  }

  /**
   * Writes an answer. A poll leaves the registry first (it can never be woken twice), then
   * the body goes out; a socket that cannot take it all keeps it in Writing. A stream stays,
   * re-armed at its new position (and reads on at once when messages were left out).
   * `live`: the messages come from notifications (delivery latency), else from history
   * (catch-up age).
   */
  private deliver(w: Waiter, body: Buffer, reason: AnswerReason, more: boolean): boolean {
    if (w.transport.streams) {
      if (!this.writeStream(w, body)) return false;
      if (w.state === WaiterState.Setup || w.state === WaiterState.Parked) {
        const again = more || (w.state === WaiterState.Setup && this.missedWake(w));
        this.setState(w, WaiterState.Parked);
        if (again) this.reread(w);
      }
      return true;
    }
    this.setState(w, WaiterState.Writing);
    const sent = w.transport.write(w, body);
    if (w.state === WaiterState.Writing) {
      if (sent === Sent.Pending) this.armWriteDeadline(w);
      else this.setState(w, WaiterState.Done);
    }
    if (sent === Sent.Gone) return false;
    if (sent === Sent.SlowClosed) {
      this.metrics.slowClosed.inc();
      return false;
    }
    this.metrics.answeredBy[reason].inc(); // polls answered, not stream writes
    return true;
  }

  /** Writes to a stream, which ends (Done) when it cannot take it; true when written. */
  private writeStream(w: Waiter, body: Buffer): boolean {
    const sent = w.transport.write(w, body);
    if (sent === Sent.Written) return true;
    if (w.state !== WaiterState.Done) this.setState(w, WaiterState.Done);
    if (sent === Sent.SlowClosed) this.metrics.slowClosed.inc();
    return false;
  }

  /** Delivery metrics: `messages` went out to `waiters` waiters, with their latency (live) or age (from history). */
  private count(kind: Waiter['transport']['kind'], messages: readonly Message[], live: boolean, waiters: number): void {
    if (messages.length === 0) return;
    const by = this.metrics.deliveryBy[kind];
    by.delivered.inc(messages.length * waiters);
    const now = Date.now();
    const histogram = live ? by.latency : by.catchup;
    for (const m of messages) histogram.observe((now - m.time) / 1000, waiters);
  }

  /** Answers every waiting poll with its cursor and a jittered retry hint; ends every stream. */
  drain(retryMs: number): void {
    this.draining = true;
    this.drainRetryMs = retryMs;
    for (const w of this.registry.all()) {
      if (w.state === WaiterState.Parked) this.endOrAnswer(w, 'drain');
    }
  }

  close(): void {
    this.wheel.stop();
  }
}
