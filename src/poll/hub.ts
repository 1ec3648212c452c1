/**
 * The delivery engine for /v1/poll: resolves a poll's cursor against the broker, parks it,
 * and answers it when a message arrives, its deadline passes, or the server drains.
 *
 * Wakes are batched: broker notifications are queued and delivered on the next loop turn
 * (setImmediate), never inside the publisher's request callback, because a cork from inside
 * another socket's callback is a no-op in uWS (packages.md: 8–9× slower).
 *
 * Fan-out: single-channel polls parked at one position of one channel form a PositionGroup in
 * that channel's spool (see PollRegistry). A wake renders the group's answer once per
 * (format, max), in a cache that is a local of that one group's wake: it cannot serve another
 * channel or another position. Multi-channel polls are answered one by one.
 *
 * Every state change goes through setState(), against the table in poll.ts.
 */

import type { Broker, ReadFrom, ReadResult } from '../broker/broker.js';
import type { Config } from '../config.js';
import { encodeCursor, type Position } from '../cursor.js';
import { BrokerUnavailableError, HoldfastError } from '../errors.js';
import type { Message } from '../message.js';
import type { AnswerReason, Metrics } from '../metrics.js';
import { hasPrefix } from '../names.js';
import { type AnswerFormat, renderPoll } from '../render.js';
import { type Res, Sent, jitter } from '../respond.js';
import { TimerWheel } from '../timer-wheel.js';
import { Poll, PollState, canMove, stateName } from './poll.js';
import { type ChannelSpool, type PositionGroup, PollRegistry } from './registry.js';

type HubConfig = Pick<Config, 'maxParked' | 'maxBackpressure' | 'writeTimeoutMs' | 'conflatePrefixes'>;

/** How the hub answers: given by the HTTP layer, so the hub imports no HTTP code. */
export interface AnswerWriter {
  /** Writes a 200 poll answer (no-store, with the slow-reader limit). */
  answer(res: Res, body: Buffer, format: AnswerFormat): Sent;
  /** Writes an error answer (503 while the broker is away, LP_MAX_PARKED reached). */
  reject(res: Res, err: HoldfastError): void;
}

/** One rendered answer for the members of a group that share a format and max. */
interface GroupAnswer {
  format: AnswerFormat;
  max: number;
  body: Buffer;
  messages: Message[];
  positions: readonly Position[];
}

export class PollHub {
  readonly registry: PollRegistry;
  readonly wheel: TimerWheel<Poll>;
  private parked = 0;
  private pending = new Map<string, Message[]>();
  private flushScheduled = false;
  private draining = false;
  private drainRetryMs = 0;
  /** Answers never exceed this, so a normal answer never trips the slow-reader limit. */
  private readonly bodyBudget: number;

  constructor(
    private readonly broker: Broker,
    private readonly config: HubConfig,
    private readonly metrics: Metrics,
    private readonly writer: AnswerWriter,
    private readonly onBug: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.registry = new PollRegistry(broker);
    this.wheel = new TimerWheel<Poll>((poll) => this.expire(poll), 100, 4096, now);
    this.bodyBudget = Math.max(1024, config.maxBackpressure >>> 1);
  }

  /** Polls parked (waiting), for the gauge and admission. */
  get parkedCount(): number {
    return this.parked;
  }

  start(): void {
    this.wheel.start();
  }

  /**
   * Takes a new poll: registers interest first, then reads history once the subscriptions are
   * confirmed (see PollRegistry). The deadline runs from here, so a stuck setup still answers.
   */
  begin(poll: Poll, from: readonly ReadFrom[]): void {
    if (!this.broker.isAvailable()) throw new BrokerUnavailableError();
    poll.res.onAborted(() => this.abort(poll));
    this.wheel.add(poll);
    const confirmed = this.registry.add(poll);
    if (!confirmed) {
      this.resolve(poll, from, true).catch(this.onBug);
      return;
    }
    confirmed.then(() => {
      if (poll.state === PollState.Setup) return this.resolve(poll, from, true);
    }).catch(this.onBug);
  }

  // ---- the state machine's one choke point ----

  /**
   * Moves a poll to `to`, and keeps everything that depends on its state in step: the parked
   * count, its place in the registry, and its deadline on the wheel.
   */
  private setState(poll: Poll, to: PollState): void {
    const from = poll.state;
    if (!canMove(from, to)) throw new Error(`poll state ${stateName(from)} -> ${stateName(to)} is not allowed`);
    poll.state = to;
    if (from === PollState.Parked) this.parked--;
    switch (to) {
      case PollState.Parked:
        this.parked++;
        this.registry.park(poll);
        return;
      case PollState.Setup:
        this.registry.unpark(poll);
        return;
      case PollState.Writing:
        this.registry.remove(poll);
        // Give the socket LP_WRITE_TIMEOUT_MS to take the answer; the wheel closes it otherwise.
        poll.deadline = this.now() + this.config.writeTimeoutMs;
        this.wheel.add(poll);
        return;
      case PollState.Done:
        if (from !== PollState.Writing) this.registry.remove(poll);
        this.wheel.remove(poll);
        return;
    }
  }

  // ---- notifications from the broker ----

  onMessages(ch: string, messages: Message[]): void {
    if (this.registry.countOn(ch) === 0) return;
    const list = this.pending.get(ch);
    if (list) for (const m of messages) list.push(m);
    else this.pending.set(ch, messages.slice());
    this.scheduleFlush();
  }

  /** A deleted channel: every poll on it re-reads and so sees the new epoch as a gap. */
  onReset(ch: string): void {
    for (const poll of this.registry.pollsOn(ch)) this.reread(poll);
  }

  /** Notifications may have been lost: every waiting poll re-reads its channels. */
  onResync(): void {
    for (const poll of this.registry.all()) this.reread(poll);
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
    let multi: Set<Poll> | undefined;
    for (const [ch, list] of pending) {
      const spool = this.registry.spool(ch);
      if (!spool) continue;
      for (const poll of spool.reading) poll.dirty = true;
      if (spool.groups.size > 0) this.wakeGroups(spool, list);
      for (const poll of spool.multi) (multi ??= new Set()).add(poll);
    }
    if (multi) {
      for (const poll of multi) {
        try {
          this.wakeMulti(poll, pending);
        } catch (err) {
          this.onBug(err);
        }
      }
    }
  }

  /** The fan-out path: each group of one channel's spool is answered from one rendering. */
  private wakeGroups(spool: ChannelSpool, list: readonly Message[]): void {
    for (const group of spool.groups.values()) {
      try {
        const fresh = this.contiguous(spool.ch, list, group.position);
        if (fresh === undefined) {
          for (const poll of group.members) this.reread(poll);
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
    for (const poll of group.members) {
      let answer: GroupAnswer | undefined;
      for (const a of rendered) if (a.format === poll.format && a.max === poll.max) answer = a;
      if (!answer) {
        const messages = this.fit(fresh, poll.max);
        const last = messages[messages.length - 1]!;
        const positions = [{ epoch: last.epoch, seq: last.seq, fp: last.fp }];
        const body = renderPoll({ messages, cursor: encodeCursor(spool.single, positions), gapChannels: undefined, retryMs: undefined }, poll.format);
        rendered.push((answer = { format: poll.format, max: poll.max, body, messages, positions }));
      }
      poll.positions = answer.positions;
      this.deliver(poll, answer.body, answer.messages, 'messages', true);
    }
  }

  private wakeMulti(poll: Poll, pending: ReadonlyMap<string, readonly Message[]>): void {
    if (poll.state === PollState.Setup) {
      poll.dirty = true;
      return;
    }
    if (poll.state !== PollState.Parked) return;
    const picked: Message[] = [];
    const next = poll.positions.slice();
    for (let i = 0; i < poll.channels.length; i++) {
      const list = pending.get(poll.channels[i]!);
      if (!list) continue;
      const fresh = this.contiguous(poll.channels[i]!, list, next[i]!);
      if (fresh === undefined) return this.reread(poll);
      for (const m of fresh) picked.push(m);
    }
    if (picked.length === 0) return;
    if (picked.length > 1) picked.sort(byTime);
    const delivered = this.fit(picked, poll.max);
    for (const m of delivered) next[poll.channels.indexOf(m.ch)] = { epoch: m.epoch, seq: m.seq, fp: m.fp };
    poll.positions = next;
    this.answer(poll, delivered, undefined, 'messages', true);
  }

  /**
   * The notified messages that follow `pos` directly, or undefined when they do not join up
   * with it (a lost notification, another epoch): then only a history read is trustworthy.
   */
  private contiguous(ch: string, list: readonly Message[], pos: Position): Message[] | undefined {
    const fresh: Message[] = [];
    const conflated = hasPrefix(ch, this.config.conflatePrefixes);
    let expect = pos.seq + 1;
    for (const m of list) {
      if (m.ch !== ch) throw new Error(`a notification for ${m.ch} was queued under ${ch}`);
      if (m.epoch !== pos.epoch) return undefined;
      if (m.seq < expect) continue; // already seen (duplicate notification)
      // A conflated channel skips ahead by design: only its newest value counts.
      if (m.seq !== expect && !conflated) return undefined;
      fresh.push(m);
      expect = m.seq + 1;
    }
    if (fresh.length > 1 && conflated) return [fresh[fresh.length - 1]!];
    return fresh;
  }

  /** The first messages that fit `max` and the body budget (at least one). */
  private fit(messages: Message[], max: number): Message[] {
    let bytes = 0;
    let n = 0;
    while (n < messages.length && n < max) {
      bytes += messages[n]!.json.length + messages[n]!.ch.length + 32;
      if (n > 0 && bytes > this.bodyBudget) break;
      n++;
    }
    return n === messages.length ? messages : messages.slice(0, n);
  }

  // ---- reading history ----

  private reread(poll: Poll): void {
    if (poll.state === PollState.Setup) {
      poll.dirty = true;
      return;
    }
    if (poll.state !== PollState.Parked) return;
    this.resolve(poll, poll.positions, false).catch(this.onBug);
  }

  /**
   * Reads each channel from `from`; answers at once when there is anything to send (or a gap),
   * parks otherwise. Runs for a new poll and again for a parked poll whose wake could not be
   * served from notifications alone.
   */
  private async resolve(poll: Poll, from: readonly ReadFrom[], initial: boolean): Promise<void> {
    if (!initial) this.setState(poll, PollState.Setup);
    poll.dirty = false;
    let results: ReadResult[];
    try {
      results = await Promise.all(poll.channels.map((ch, i) => this.broker.read(ch, from[i]!, poll.max)));
    } catch (err) {
      if (poll.state !== PollState.Setup) return;
      if (initial) return this.refuse(poll, err);
      // Broker away: stay parked with the cursor unchanged; a resync re-reads.
      this.setState(poll, PollState.Parked);
      return;
    }
    if (poll.state !== PollState.Setup) return; // aborted or timed out meanwhile

    const picked: Message[] = [];
    let gapChannels: string[] | undefined;
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const f = from[i]!;
      if (r.gap) (gapChannels ??= []).push(poll.channels[i]!);
      if (initial && typeof f === 'object' && f.epoch === r.epoch) this.metrics.pollLag.observe(Math.max(0, r.lastSeq - f.seq));
      for (const m of r.messages) picked.push(m);
    }
    if (picked.length > 1 && results.length > 1) picked.sort(byTime);
    const delivered = this.fit(picked, poll.max);
    poll.positions = results.map((r, i) => positionAfter(poll.channels[i]!, r, from[i]!, delivered));

    if (delivered.length > 0 || gapChannels) {
      return this.answer(poll, delivered, gapChannels, gapChannels ? 'gap' : 'messages', false);
    }
    if (this.draining) return this.answer(poll, [], undefined, 'drain', false, jitter(this.drainRetryMs));
    if (initial && this.parked >= this.config.maxParked) {
      return this.refuse(poll, new HoldfastError('too_many_polls', `this process holds LP_MAX_PARKED (${this.config.maxParked}) polls; retry shortly`, { retryMs: 2000 }));
    }
    this.setState(poll, PollState.Parked);
    if (poll.dirty) this.reread(poll);
  }

  /** Ends a poll that never got a cursor with an error answer. */
  private refuse(poll: Poll, err: unknown): void {
    this.setState(poll, PollState.Done);
    const error = err instanceof HoldfastError ? err : undefined;
    if (!error) this.onBug(err);
    const e = error ?? new HoldfastError('internal', 'internal error');
    this.metrics.rejected.inc({ reason: e.code });
    if (!poll.res.closed) this.writer.reject(poll.res, e);
  }

  // ---- answering ----

  private expire(poll: Poll): void {
    if (poll.state === PollState.Writing) {
      // The answer could not be written in LP_WRITE_TIMEOUT_MS: a slow reader.
      this.setState(poll, PollState.Done);
      if (!poll.res.closed) {
        poll.res.closed = true;
        poll.res.close();
        this.metrics.slowClosed.inc();
      }
      return;
    }
    if (poll.state === PollState.Done) return;
    // Its first read never completed (the broker is away): no cursor to answer with.
    if (poll.positions.length === 0) return this.refuse(poll, new BrokerUnavailableError());
    this.answer(poll, [], undefined, 'timeout', false);
  }

  private answer(poll: Poll, messages: Message[], gapChannels: string[] | undefined, reason: AnswerReason, live: boolean, retryMs?: number): void {
    const cursor = encodeCursor(poll.channels, poll.positions);
    const body = renderPoll({ messages, cursor, gapChannels, retryMs }, poll.format);
    this.deliver(poll, body, messages, reason, live);
  }

  /**
   * Writes an answer: the poll leaves the registry first (it can never be woken twice), then
   * the body goes out; a socket that cannot take it all keeps the poll in Writing.
   * `live`: the messages come from notifications (delivery latency), else from history
   * (catch-up age).
   */
  private deliver(poll: Poll, body: Buffer, messages: readonly Message[], reason: AnswerReason, live: boolean): void {
    this.setState(poll, PollState.Writing);
    const sent = this.writer.answer(poll.res, body, poll.format);
    if (sent !== Sent.Pending && poll.state === PollState.Writing) this.setState(poll, PollState.Done);
    if (sent === Sent.Gone) return;
    if (sent === Sent.SlowClosed) {
      this.metrics.slowClosed.inc();
      return;
    }
    this.metrics.answeredBy[reason].inc();
    if (messages.length > 0) {
      this.metrics.delivered.inc(messages.length);
      const now = Date.now();
      const histogram = live ? this.metrics.deliveryLatency : this.metrics.catchupAge;
      for (const m of messages) histogram.observe((now - m.time) / 1000);
    }
  }

  private abort(poll: Poll): void {
    poll.res.closed = true;
    if (poll.state !== PollState.Done) this.setState(poll, PollState.Done);
  }

  /** Answers every waiting poll with its cursor and a jittered retry hint. */
  drain(retryMs: number): void {
    this.draining = true;
    this.drainRetryMs = retryMs;
    for (const poll of this.registry.all()) {
      if (poll.state === PollState.Parked) this.answer(poll, [], undefined, 'drain', false, jitter(retryMs));
    }
  }

  close(): void {
    this.wheel.stop();
  }
}

/** Oldest first across channels; ties keep read order (Array.prototype.sort is stable). */
function byTime(a: Message, b: Message): number {
  return a.time - b.time;
}

/** A channel's position once `delivered` is sent. */
function positionAfter(ch: string, r: ReadResult, from: ReadFrom, delivered: readonly Message[]): Position {
  for (let i = delivered.length - 1; i >= 0; i--) {
    const m = delivered[i]!;
    if (m.ch === ch) return { epoch: m.epoch, seq: m.seq, fp: m.fp };
  }
  // Nothing of this channel went out. Without a gap, a cursor position stays as it was; a
  // channel read from now stands at its head.
  const first = r.messages[0];
  if (!r.gap && typeof from === 'object') return from;
  if (!first) return { epoch: r.epoch, seq: r.lastSeq, fp: r.headFp };
  // Stand just before its first unsent message, so the retained messages follow; after a
  // gap the gap is reported once.
  return { epoch: r.epoch, seq: first.seq - 1, fp: 0 };
}
