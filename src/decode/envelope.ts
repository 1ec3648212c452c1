/**
 * Notification envelopes: what the publish script sends on a channel's notification channel,
 * MessagePack-encoded:
 *   {ch, seq, epoch, t, data}   a message (data is the value's JSON text, t the publish ms)
 *   {ch, reset: true, epoch}    the channel was deleted
 */

import { Unpackr } from 'msgpackr';
import { Message } from '../message.js';

export type Decoded = Message | { ch: string; reset: true; epoch: string };

/** Plain fields of a decoded envelope: what crosses a worker-thread boundary. */
export interface EnvelopeFields {
  ch: string;
  seq?: number;
  epoch: string;
  t?: number;
  data?: string;
  reset?: boolean;
}

// Envelopes come from Lua's cmsgpack: plain maps, no records.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function decodeEnvelope(buf: Uint8Array): EnvelopeFields | undefined {
  try {
    const v = unpackr.unpack(buf) as EnvelopeFields;
    if (!v || typeof v.ch !== 'string' || typeof v.epoch !== 'string') return undefined;
    return v;
  } catch {
    return undefined;
  }
}

export function toDecoded(f: EnvelopeFields): Decoded | undefined {
  if (f.reset) return { ch: f.ch, reset: true, epoch: f.epoch };
  if (typeof f.seq !== 'number' || typeof f.data !== 'string') return undefined;
  return new Message(f.ch, f.seq, f.epoch, f.t ?? Date.now(), f.data);
}
