/**
 * Notifications in: what arrives on the subscriber connections, turned into broker events.
 * Channel envelopes are batched per event-loop turn and decoded as one batch (inline, or on
 * the piscina pool with LP_DECODE_THREADS), then handed over per channel, in arrival order; a
 * full decode queue pauses the subscriber sockets until it drains (Redis buffers meanwhile).
 * Seed-queue notifications are one byte: "r" (ready) or "d" (disconnected).
 */

import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { Decoded } from '../../decode/envelope.js';
import { type Decoder, InlineDecoder, PoolDecoder } from '../../decode/pool.js';
import { Message } from '../../message.js';
import type { BrokerEvents } from '../broker.js';
import type { RedisKeys } from './keys.js';

export interface Flow {
  pause(): void;
  resume(): void;
}

export class NotificationIntake {
  private readonly decoder: Decoder;
  private envelopes: Buffer[] = [];
  private flushScheduled = false;
  /** Keeps pool-decoded batches in arrival order. */
  private delivery: Promise<void> = Promise.resolve();
  private flow: Flow | undefined;

  constructor(
    config: Pick<Config, 'decodeThreads'>,
    private readonly keys: RedisKeys,
    private readonly events: () => BrokerEvents | undefined,
    private readonly log: Logger | undefined,
  ) {
    this.decoder = config.decodeThreads > 0 ? new PoolDecoder(config.decodeThreads) : new InlineDecoder();
    this.decoder.onDrain(() => this.flow?.resume());
  }

  /** The sockets to pause while the decode queue is full. */
  setFlow(flow: Flow): void {
    this.flow = flow;
  }

  queueDepth(): number {
    return this.decoder.queueDepth();
  }

  close(): Promise<void> {
    return this.decoder.close();
  }

  /** One notification from a subscriber connection. */
  receive(channel: string, payload: Buffer): void {
    const target = this.keys.parseNotify(channel);
    if (!target) return;
    if (target.kind === 'queue') {
      if (payload.length === 1 && payload[0] === 0x64 /* d */) this.events()?.queueDisconnected(target.name);
      else this.events()?.queueReady(target.name);
      return;
    }
    this.envelopes.push(payload);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Decodes this turn's envelopes as one batch and hands them to the core, in order. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.envelopes;
    this.envelopes = [];
    const decoded = this.decoder.decode(batch);
    if (Array.isArray(decoded)) {
      this.dispatch(decoded);
      return;
    }
    // Settle at once (so a failure is never an unhandled rejection), deliver in batch order.
    const settled = decoded.then(
      (d) => ({ d, err: undefined }),
      (err: unknown) => ({ d: [] as Decoded[], err }),
    );
    this.delivery = this.delivery
      .then(() => settled)
      .then(({ d, err }) => {
        if (err) {
          this.log?.error({ err }, 'decode failed; re-reading history');
          this.events()?.resync();
        } else {
          this.dispatch(d);
        }
      })
      .catch((err: unknown) => this.log?.error({ err }, 'delivery failed'));
    if (this.decoder.saturated) this.flow?.pause();
  }

  private dispatch(decoded: Decoded[]): void {
    const events = this.events();
    if (!events) return;
    const byChannel = new Map<string, Message[]>();
    for (const d of decoded) {
      if (!(d instanceof Message)) {
        events.reset(d.ch, d.epoch);
        continue;
      }
      const list = byChannel.get(d.ch);
      if (list) list.push(d);
      else byChannel.set(d.ch, [d]);
    }
    for (const [ch, list] of byChannel) events.messages(ch, list);
  }
}
