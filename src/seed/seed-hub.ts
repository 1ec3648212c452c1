/**
 * The seed-compatible long-poll (`GET /poll?clientId=…`): one queue per client id in the
 * broker, one message per answer, oldest message to the oldest waiting poll. A message leaves
 * the queue when an answer carrying it is written, and goes back to the head of the queue when
 * that write fails because the client was already gone.
 *
 * Per client id a single pump pops and hands out messages, so two polls (or two notifications)
 * never race for the same message; a notification that arrives mid-pump makes it go round again.
 */

import type { QueueStore } from '../broker/broker.js';
import { HoldfastError } from '../errors.js';
import { type Res, Sent } from '../respond.js';
import type { Metrics } from '../metrics.js';
import { SEED_TIMEOUT_BODY, renderSeedMessage } from '../render.js';
import { TimerWheel, type WheelEntry } from '../timer-wheel.js';

export class SeedPoll implements WheelEntry {
  done = false;
  wheelSlot = -1;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  constructor(
    readonly res: Res,
    readonly clientId: string,
    public deadline: number,
  ) {}
}

/** How the seed hub answers: given by the HTTP layer, so the hub imports no HTTP code. */
export interface SeedWriter {
  /** Writes a 200 JSON answer (no-store). */
  answer(res: Res, body: Buffer): Sent;
  reject(res: Res, err: HoldfastError): void;
}

export class SeedHub {
  private readonly waiters = new Map<string, SeedPoll[]>();
  /** Client ids whose notifications are confirmed to reach this process. */
  private readonly watched = new Set<string>();
  private readonly pumping = new Set<string>();
  private readonly again = new Set<string>();
  private ready = new Set<string>();
  private flushScheduled = false;
  private count = 0;
  readonly wheel: TimerWheel<SeedPoll>;

  constructor(
    private readonly broker: QueueStore,
    private readonly metrics: Metrics,
    private readonly writer: SeedWriter,
    private readonly onBug: (err: unknown) => void,
    now: () => number = Date.now,
  ) {
    this.wheel = new TimerWheel<SeedPoll>((poll) => this.answerTimeout(poll, 'timeout'), 100, 4096, now);
  }

  get parkedCount(): number {
    return this.count;
  }

  /** Whether polls for `id` wait here with their notifications confirmed (for tests, admin). */
  isWatching(id: string): boolean {
    return this.watched.has(id);
  }

  start(): void {
    this.wheel.start();
  }

  /** A new seed poll. `full`: the process is at LP_MAX_PARKED, so it may only take a waiting message. */
  begin(poll: SeedPoll, full: boolean): void {
    poll.res.onAborted(() => {
      poll.res.closed = true;
      this.leave(poll);
    });
    if (full) {
      this.takeWaitingOrReject(poll).catch(this.onBug);
      return;
    }
    let list = this.waiters.get(poll.clientId);
    let watched: Promise<void> | undefined;
    if (!list) {
      this.waiters.set(poll.clientId, (list = []));
      watched = this.broker.watchQueue(poll.clientId);
    }
    list.push(poll);
    this.count++;
    this.wheel.add(poll);
    // Look at the queue only once notifications for it are sure to arrive.
    const id = poll.clientId;
    if (watched) {
      watched
        .then(() => {
          if (this.waiters.has(id)) this.watched.add(id);
          return this.pump(id);
        })
        .catch(this.onBug);
    } else {
      if (!this.watched.has(id) && this.waiters.get(id)!.length === 1) this.watched.add(id);
      this.pump(id).catch(this.onBug);
    }
  }

  /** Broker event: the client's queue may have a message (delivered on the next loop turn). */
  onQueueReady(id: string): void {
    if (!this.waiters.has(id)) return;
    this.ready.add(id);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const ids = this.ready;
      this.ready = new Set();
      for (const id of ids) this.pump(id).catch(this.onBug);
    });
  }

  /** Broker event: the client was disconnected; its waiting polls answer as on timeout. */
  onDisconnected(id: string): void {
    const list = this.waiters.get(id);
    if (list) for (const poll of [...list]) this.answerTimeout(poll, 'timeout');
  }

  /** Notifications may have been lost: look at every watched queue again. */
  onResync(): void {
    for (const id of this.waiters.keys()) this.pump(id).catch(this.onBug);
  }

  /** Every waiting poll answers {"status":"timeout"} at once. */
  drain(): void {
    for (const list of [...this.waiters.values()]) for (const poll of [...list]) this.answerTimeout(poll, 'drain');
  }

  close(): void {
    this.wheel.stop();
  }

  private async pump(id: string): Promise<void> {
    if (this.pumping.has(id)) {
      this.again.add(id);
      return;
    }
    this.pumping.add(id);
    try {
      for (;;) {
        this.again.delete(id);
        if (!this.waiters.has(id)) break;
        let json: string | undefined;
        try {
          json = await this.broker.queuePop(id);
        } catch {
          break; // broker away: polls keep waiting; a later push or resync pumps again
        }
        if (json === undefined) {
          if (this.again.has(id)) continue;
          break;
        }
        const target = this.waiters.get(id)?.[0];
        if (!target || this.deliver(target, json) !== Sent.Written) {
          await this.broker.queueReturn(id, json);
        }
      }
    } finally {
      this.pumping.delete(id);
    }
  }

  private deliver(poll: SeedPoll, json: string): Sent {
    this.leave(poll);
    const sent = this.writer.answer(poll.res, renderSeedMessage(json));
    if (sent === Sent.Written) {
      this.metrics.answeredBy.messages.inc();
      this.metrics.delivered.inc();
    }
    return sent;
  }

  private async takeWaitingOrReject(poll: SeedPoll): Promise<void> {
    const json = await this.broker.queuePop(poll.clientId).catch(() => undefined);
    if (json !== undefined) {
      if (this.deliver(poll, json) !== Sent.Written) await this.broker.queueReturn(poll.clientId, json);
      return;
    }
    this.metrics.rejected.inc({ reason: 'too_many_polls' });
    this.writer.reject(poll.res, new HoldfastError('too_many_polls', 'this process holds LP_MAX_PARKED polls; retry shortly', { retryMs: 2000 }));
  }

  private answerTimeout(poll: SeedPoll, reason: 'timeout' | 'drain'): void {
    this.leave(poll);
    if (this.writer.answer(poll.res, SEED_TIMEOUT_BODY) === Sent.Written) {
      this.metrics.answeredBy[reason].inc();
    }
  }

  private leave(poll: SeedPoll): void {
    if (poll.done) return;
    poll.done = true;
    this.wheel.remove(poll);
    const list = this.waiters.get(poll.clientId);
    if (!list) return;
    const i = list.indexOf(poll);
    if (i === -1) return;
    list.splice(i, 1);
    this.count--;
    if (list.length === 0) {
      this.waiters.delete(poll.clientId);
      this.watched.delete(poll.clientId);
      this.broker.unwatchQueue(poll.clientId);
    }
  }
}
