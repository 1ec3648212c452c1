/**
 * The delivery engine for /v1/poll: resolves a poll's cursor against the broker, parks it,
 * and answers it when a message arrives, its deadline passes, or the server drains.
 *
 * Wakes are batched: broker notifications are queued and delivered on the next loop turn
 * (setImmediate), never inside the publisher's request callback, because a cork from inside
 * another socket's callback is a no-op in uWS (packages.md: 8–9× slower). In one flush a
 * single-channel poll whose position matches others' gets the very same body Buffer: a
 * fan-out message is rendered once per (channel, position, format).
 */

import type { Broker, ReadFrom, ReadResult } from '../broker/broker.js';
import type { Config } from '../config.js';
import { encodeCursor, type Position } from '../cursor.js';
import { BrokerUnavailableError, HoldfastError } from '../errors.js';
import { JSON_TYPE, MSGPACK_TYPE, type SendOptions, Sent, jitter, send, sendError } from '../respond.js';
import type { Message } from '../message.js';
import type { AnswerReason, Metrics } from '../metrics.js';
import { hasPrefix } from '../names.js';
import { renderPoll } from '../render.js';
import { TimerWheel } from '../timer-wheel.js';
import { Poll, PollState } from './poll.js';
import { PollRegistry } from './registry.js';

type HubConfig = Pick<Config, 'maxParked' | 'maxBackpressure' | 'writeTimeoutMs' | 'conflatePrefixes'>;

/** The same body for every single-channel poll at the same position, within one flush. */
interface SharedAnswer {
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
  /** The same send options for every poll answer. */
  private readonly answerOptions: SendOptions;

  constructor(
    private readonly broker: Broker,
    private readonly config: HubConfig,
    private readonly metrics: Metrics,
    private readonly onBug: (err: unknown) => void,
    now: () => number = Date.now,
  ) {
    this.registry = new PollRegistry(broker);
    this.wheel = new TimerWheel<Poll>((poll) => this.expire(poll), 100, 4096, now);
    this.bodyBudget = Math.max(1024, config.maxBackpressure >>> 1);
    this.answerOptions = { noStore: true, maxBackpressure: config.maxBackpressure };
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
   * confirmed (see Poll). The deadline runs from here, so a stuck setup still answers.
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
    const polls = this.registry.pollsOn(ch);
    if (polls) for (const poll of [...polls]) this.reread(poll);
  }

  /** Notifications may have been lost: every waiting poll re-reads its channels. */
  onResync(): void {
    for (const poll of [...this.registry.all()]) this.reread(poll);
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
    const touched = new Set<Poll>();
    for (const ch of pending.keys()) {
      const polls = this.registry.pollsOn(ch);
      if (polls) for (const poll of polls) touched.add(poll);
    }
    const shared = new Map<string, SharedAnswer>();
    for (const poll of touched) {
      try {
        this.wake(poll, pending, shared);
      } catch (err) {
        this.onBug(err);
      }
    }
  }

  private wake(poll: Poll, pending: Map<string, Message[]>, shared: Map<string, SharedAnswer>): void {
    if (poll.state === PollState.Setup) {
      poll.dirty = true;
      return;
    }
    if (poll.state !== PollState.Parked) return;
    if (poll.channels.length === 1) return this.wakeSingle(poll, pending.get(poll.channels[0]!)!, shared);

    const picked: Message[] = [];
    const next = poll.positions.slice();
    for (let i = 0; i < poll.channels.length; i++) {
      const list = pending.get(poll.channels[i]!);
      if (!list) continue;
      const fresh = this.contiguous(poll.channels[i]!, list, next[i]!);
      if (fresh === undefined) return this.reread(poll);
      if (fresh.length === 0) continue;
      for (const m of fresh) picked.push(m);
    }
    if (picked.length === 0) return;
    if (picked.length > 1) picked.sort(byTime);
    const delivered = this.fit(picked, poll.max);
    for (const m of delivered) next[poll.channels.indexOf(m.ch)] = { epoch: m.epoch, seq: m.seq };
    poll.positions = next;
    this.answer(poll, delivered, undefined, 'messages');
  }

  /** The fan-out path: one body per (channel, position, format) per flush. */
  private wakeSingle(poll: Poll, list: Message[], shared: Map<string, SharedAnswer>): void {
    const pos = poll.positions[0]!;
    const key = `${pos.epoch}:${pos.seq}:${poll.format}:${poll.max}`;
    let answer = shared.get(key);
    if (!answer) {
      const fresh = this.contiguous(poll.channels[0]!, list, pos);
      if (fresh === undefined) return this.reread(poll);
      if (fresh.length === 0) return;
      const messages = this.fit(fresh, poll.max);
      const last = messages[messages.length - 1]!;
      const position = { epoch: last.epoch, seq: last.seq };
      const cursor = encodeCursor(poll.channels, [position]);
      const body = renderPoll({ messages, cursor, gapChannels: undefined, retryMs: undefined }, poll.format);
      shared.set(key, (answer = { body, messages, positions: [position] }));
    }
    poll.positions = answer.positions;
    this.finish(poll);
    this.write(poll, answer.body, answer.messages, 'messages');
  }

  /**
   * The notified messages that follow `pos` directly, or undefined when they do not join up
   * with it (a lost notification, another epoch): then only a history read is trustworthy.
   */
  private contiguous(ch: string, list: readonly Message[], pos: Position): Message[] | undefined {
    const fresh: Message[] = [];
    let expect = pos.seq + 1;
    for (const m of list) {
      if (m.epoch !== pos.epoch) return undefined;
      if (m.seq < expect) continue; // already seen (duplicate notification)
      if (m.seq !== expect) {
        // A conflated channel skips ahead by design: only its newest value counts.
        if (!hasPrefix(ch, this.config.conflatePrefixes)) return undefined;
      }
      fresh.push(m);
      expect = m.seq + 1;
    }
    if (fresh.length > 1 && hasPrefix(ch, this.config.conflatePrefixes)) return [fresh[fresh.length - 1]!];
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
    if (!initial) this.parked--;
    poll.state = PollState.Setup;
    poll.dirty = false;
    let results: ReadResult[];
    try {
      results = await Promise.all(poll.channels.map((ch, i) => this.broker.read(ch, from[i]!, poll.max)));
    } catch (err) {
      if (poll.state !== PollState.Setup) return;
      if (initial) {
        this.finish(poll);
        this.rejectNew(poll, err);
      } else {
        // Broker away: stay parked with the cursor unchanged; a resync re-reads.
        poll.state = PollState.Parked;
        this.parked++;
      }
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
    poll.positions =
      results.length === 1
        ? this.registry.sharedPosition(poll.channels[0]!, positionAfter(poll.channels[0]!, results[0]!, delivered))
        : results.map((r, i) => positionAfter(poll.channels[i]!, r, delivered));

    if (delivered.length > 0 || gapChannels) {
      return this.answer(poll, delivered, gapChannels, gapChannels ? 'gap' : 'messages');
    }
    if (this.draining) return this.answer(poll, [], undefined, 'drain', jitter(this.drainRetryMs));
    if (initial) {
      if (this.parked >= this.config.maxParked) {
        this.finish(poll);
        this.metrics.rejected.inc({ reason: 'too_many_polls' });
        sendError(poll.res, new HoldfastError('too_many_polls', `this process holds LP_MAX_PARKED (${this.config.maxParked}) polls; retry shortly`, { retryMs: 2000 }));
        return;
      }
    }
    poll.state = PollState.Parked;
    this.parked++;
    if (poll.dirty) this.reread(poll);
  }

  private rejectNew(poll: Poll, err: unknown): void {
    const error = err instanceof HoldfastError ? err : undefined;
    if (!error) this.onBug(err);
    const e = error ?? new HoldfastError('internal', 'internal error');
    this.metrics.rejected.inc({ reason: e.code });
    sendError(poll.res, e);
  }

  // ---- answering ----

  private expire(poll: Poll): void {
    if (poll.state === PollState.Writing) {
      // The answer could not be written in LP_WRITE_TIMEOUT_MS: a slow reader.
      poll.state = PollState.Done;
      if (!poll.res.closed) {
        poll.res.closed = true;
        poll.res.close();
        this.metrics.slowClosed.inc();
      }
      return;
    }
    if (poll.state === PollState.Done) return;
    if (poll.positions.length === 0) {
      // Its first read never completed (the broker is away): no cursor to answer with.
      this.finish(poll);
      this.rejectNew(poll, new BrokerUnavailableError());
      return;
    }
    this.answer(poll, [], undefined, 'timeout');
  }

  private answer(poll: Poll, messages: Message[], gapChannels: string[] | undefined, reason: AnswerReason, retryMs?: number): void {
    this.finish(poll);
    const cursor = encodeCursor(poll.channels, poll.positions);
    const body = renderPoll({ messages, cursor, gapChannels, retryMs }, poll.format);
    this.write(poll, body, messages, reason);
  }

  /** Leaves every structure: registry, wheel, parked count. */
  private finish(poll: Poll): void {
    if (poll.state === PollState.Done) return;
    if (poll.state === PollState.Parked) this.parked--;
    if (poll.state !== PollState.Writing) this.registry.remove(poll);
    poll.state = PollState.Done;
    this.wheel.remove(poll);
  }

  private write(poll: Poll, body: Buffer, messages: readonly Message[], reason: AnswerReason): void {
    const sent = send(poll.res, 200, poll.format === 'json' ? JSON_TYPE : MSGPACK_TYPE, body, this.answerOptions);
    if (sent === Sent.Gone) return;
    if (sent === Sent.SlowClosed) {
      this.metrics.slowClosed.inc();
      return;
    }
    if (sent === Sent.Pending) {
      // Give the socket LP_WRITE_TIMEOUT_MS to take the rest; the wheel closes it otherwise.
      poll.state = PollState.Writing;
      poll.deadline = Date.now() + this.config.writeTimeoutMs;
      this.wheel.add(poll);
    }
    this.metrics.answeredBy[reason].inc();
    if (messages.length > 0) {
      this.metrics.delivered.inc(messages.length);
      const now = Date.now();
      for (const m of messages) this.metrics.deliveryLatency.observe((now - m.time) / 1000);
    }
  }

  private abort(poll: Poll): void {
    poll.res.closed = true;
    this.finish(poll);
  }

  /** Answers every waiting poll with its cursor and a jittered retry hint. */
  drain(retryMs: number): void {
    this.draining = true;
    this.drainRetryMs = retryMs;
    for (const poll of [...this.registry.all()]) {
      if (poll.state === PollState.Parked) this.answer(poll, [], undefined, 'drain', jitter(retryMs));
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

/** A channel's position once `delivered` is sent: its last delivered seq, or where it stood. */
function positionAfter(ch: string, r: ReadResult, delivered: readonly Message[]): Position {
  for (let i = delivered.length - 1; i >= 0; i--) {
    const m = delivered[i]!;
    if (m.ch === ch) return { epoch: m.epoch, seq: m.seq };
  }
  // Nothing of this channel went out: stand just before its first unsent message (so a gap
  // is reported once and the retained messages follow), or at its head.
  const first = r.messages[0];
  return { epoch: r.epoch, seq: first ? first.seq - 1 : r.lastSeq };
}
