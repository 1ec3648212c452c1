/**
 * Poll cursors: opaque, URL-safe tokens that say, per channel, the epoch and the last seq the
 * client has seen. Channel names are not stored (32 names of 200 bytes would not fit the
 * ~2 KiB budget); a 48-bit hash of the name identifies each entry instead.
 *
 *   base64url( version:u8 | count:u8 | count × entry | check:u16 )
 *   entry = nameHash:u48 | seq:u48 | epochLength:u8 | epoch:ascii
 *
 * The 16-bit check catches truncated or hand-edited cursors so they are rejected (400)
 * instead of silently read as some other position.
 */

import { HoldfastError } from './errors.js';

const VERSION = 1;
const MAX_EPOCH_LENGTH = 64;
const MAX_ENTRIES = 255;

export interface Position {
  epoch: string;
  seq: number;
}

/** 48-bit hash of a channel name: FNV-1a (32 bits) joined with 16 bits of a second hash. */
export function channelHash(name: string): number {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return (a >>> 0) * 0x10000 + (b >>> 16);
}

function check16(buf: Buffer, end: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return (h ^ (h >>> 16)) & 0xffff;
}

/** Encodes the positions of `channels` (same order). */
export function encodeCursor(channels: readonly string[], positions: readonly Position[]): string {
  const n = channels.length;
  let size = 2 + 2;
  for (let i = 0; i < n; i++) size += 13 + positions[i]!.epoch.length;
  const buf = Buffer.allocUnsafe(size);
  buf[0] = VERSION;
  buf[1] = n;
  let o = 2;
  for (let i = 0; i < n; i++) {
    const p = positions[i]!;
    buf.writeUIntBE(channelHash(channels[i]!), o, 6);
    buf.writeUIntBE(p.seq, o + 6, 6);
    buf[o + 12] = p.epoch.length;
    buf.write(p.epoch, o + 13, 'latin1');
    o += 13 + p.epoch.length;
  }
  buf.writeUInt16BE(check16(buf, o), o);
  return buf.toString('base64url');
}

/** Decodes a cursor into nameHash → position; throws 400 bad_cursor on anything malformed. */
export function decodeCursor(cursor: string): Map<number, Position> {
  if (cursor.length > 16384 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw badCursor();
  const buf = Buffer.from(cursor, 'base64url');
  if (buf.length < 4 || buf[0] !== VERSION) throw badCursor();
  const n = buf[1]!;
  if (n > MAX_ENTRIES) throw badCursor();
  const out = new Map<number, Position>();
  let o = 2;
  for (let i = 0; i < n; i++) {
    if (o + 13 > buf.length - 2) throw badCursor();
    const hash = buf.readUIntBE(o, 6);
    const seq = buf.readUIntBE(o + 6, 6);
    const len = buf[o + 12]!;
    if (len === 0 || len > MAX_EPOCH_LENGTH || o + 13 + len > buf.length - 2) throw badCursor();
    const epoch = buf.toString('latin1', o + 13, o + 13 + len);
    out.set(hash, { epoch, seq });
    o += 13 + len;
  }
  if (o !== buf.length - 2 || buf.readUInt16BE(o) !== check16(buf, o)) throw badCursor();
  return out;
}

function badCursor(): HoldfastError {
  return new HoldfastError(
    'bad_cursor',
    'cursor is not one this server issued: pass back the "cursor" of a previous answer unchanged, ' +
      'omit it to start from now, or use cursor=earliest',
  );
}
