/**
 * Decoding notification envelopes, inline or on a piscina pool. Envelopes are batched per
 * event-loop turn by the caller; a Decoder turns a batch into Decoded items in order.
 *
 * The pool's queue is bounded (maxQueue). `saturated` tells the caller to stop reading the
 * subscriber sockets (Redis then buffers for us) until `onDrain` fires.
 */

import { Piscina } from 'piscina';
import { Message } from '../message.js';
import { type Decoded, decodeEnvelope, toDecoded } from './envelope.js';
import type { DecodedFields } from './worker.js';

export interface Decoder {
  decode(frames: readonly Buffer[]): Decoded[] | Promise<Decoded[]>;
  /** Batches queued and not yet started. */
  queueDepth(): number;
  readonly saturated: boolean;
  onDrain(listener: () => void): void;
  close(): Promise<void>;
}

export class InlineDecoder implements Decoder {
  readonly saturated = false;

  decode(frames: readonly Buffer[]): Decoded[] {
    const out: Decoded[] = [];
    for (const frame of frames) {
      const f = decodeEnvelope(frame);
      const d = f && toDecoded(f);
      if (d) out.push(d);
    }
    return out;
  }

  queueDepth(): number {
    return 0;
  }

  onDrain(): void {}

  async close(): Promise<void> {}
}

/** Batches queued per thread before the reader pauses. */
const QUEUE_PER_THREAD = 16;

export class PoolDecoder implements Decoder {
  private readonly pool: Piscina;
  private readonly maxQueue: number;
  private drainListeners: (() => void)[] = [];

  constructor(threads: number) {
    const self = new URL(import.meta.url);
    const ext = self.pathname.endsWith('.ts') ? '.ts' : '.js';
    this.maxQueue = threads * QUEUE_PER_THREAD;
    this.pool = new Piscina({
      filename: new URL(`./worker${ext}`, self).href,
      minThreads: threads,
      maxThreads: threads,
      maxQueue: this.maxQueue,
    });
    this.pool.on('drain', () => {
      for (const l of this.drainListeners) l();
    });
  }

  get saturated(): boolean {
    return this.pool.queueSize >= this.maxQueue;
  }

  async decode(frames: readonly Buffer[]): Promise<Decoded[]> {
    // Length-prefixed frames in one buffer that is moved, not copied, to the worker.
    let size = 0;
    for (const f of frames) size += 4 + f.length;
    const packed = new ArrayBuffer(size);
    const bytes = new Uint8Array(packed);
    const view = new DataView(packed);
    let o = 0;
    for (const f of frames) {
      view.setUint32(o, f.length);
      bytes.set(f, o + 4);
      o += 4 + f.length;
    }
    let fields: (DecodedFields | null)[];
    try {
      fields = await this.pool.run(packed, { transferList: [packed] });
    } catch (err) {
      // A full queue is backpressure, not an error: decode this batch here instead.
      if ((err as Error).message?.includes('queue is at limit')) return new InlineDecoder().decode(frames);
      throw err;
    }
    const out: Decoded[] = [];
    for (const f of fields) {
      if (!f) continue;
      if (f.reset) out.push({ ch: f.ch, reset: true, epoch: f.epoch });
      else if (typeof f.seq === 'number' && typeof f.data === 'string') out.push(new Message(f.ch, f.seq, f.epoch, f.t ?? Date.now(), f.data, f.frag));
    }
    return out;
  }

  queueDepth(): number {
    return this.pool.queueSize;
  }

  onDrain(listener: () => void): void {
    this.drainListeners.push(listener);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
