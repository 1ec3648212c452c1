/**
 * Compression worker (piscina): compresses one answer body that arrives as a transferred
 * buffer, and moves the result back.
 */

import { Piscina } from 'piscina';
import type { Encoding } from './accept.js';
import { compressSync } from './codec.js';

export interface CompressTask {
  body: ArrayBuffer;
  encoding: Encoding;
}

export default function compress({ body, encoding }: CompressTask): unknown {
  const out = compressSync(new Uint8Array(body), encoding);
  // A fresh ArrayBuffer of exactly the result (a Buffer may be a slice of a shared pool).
  const result = new ArrayBuffer(out.length);
  new Uint8Array(result).set(out);
  return Piscina.move(result);
}
