/**
 * Decode worker (piscina): unpacks a batch of envelopes that arrive as one transferred buffer
 * of length-prefixed frames, and pre-renders each message's JSON answer fragment, so the main
 * thread only builds Message objects.
 */

import { decodeEnvelope, type EnvelopeFields } from './envelope.js';

export interface DecodedFields extends EnvelopeFields {
  frag?: string;
}

export default function decodeBatch(frames: ArrayBuffer): (DecodedFields | null)[] {
  const buf = new Uint8Array(frames);
  const view = new DataView(frames);
  const out: (DecodedFields | null)[] = [];
  for (let o = 0; o < buf.length; ) {
    const len = view.getUint32(o);
    const f = decodeEnvelope(buf.subarray(o + 4, o + 4 + len)) as DecodedFields | undefined;
    o += 4 + len;
    if (!f) {
      out.push(null);
      continue;
    }
    if (!f.reset && typeof f.data === 'string') f.frag = `{"ch":${JSON.stringify(f.ch)},"seq":${f.seq},"data":${f.data}}`;
    out.push(f);
  }
  return out;
}
