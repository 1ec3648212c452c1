/**
 * Poll cursors: opaque, URL-safe tokens that say, per channel, the epoch, the last seq the
 * client has seen, and a fingerprint of that message. Channel names are not stored as a rule
 * (32 names of 200 bytes would not fit the ~2 KiB budget); a 48-bit hash of the name
 * identifies each entry instead, and the full name is stored only for channels of one cursor
 * whose hashes collide, so two channels of one poll can never swap positions.
 *
 *   base64url( version:u8 | count:u8 | count × entry | check:u16 )
 *   entry (v2) = flags:u8 | id | seq:u48 | fp:u32 | epochLength:u8 | epoch:ascii
 *     id = nameHash:u48                    (flags & NAMED = 0)
 *        | nameLength:u8 | name:ascii      (flags & NAMED = 1)
 *   entry (v1, still read) = nameHash:u48 | seq:u48 | epochLength:u8 | epoch   (fp unknown)
 *
 * The fingerprint (see `fingerprint`) identifies the message at `seq`: a store that lost
 * acknowledged writes and handed their seqs to new messages is caught by comparing it (the
 * lost-writes rule of the spec). 0 means "not known" and is never compared.
 *
 * The 16-bit check catches truncated or hand-edited cursors so they are rejected (400)
 * instead of silently read as some other position.
 */

import { HoldfastError } from './errors.js';

const V1 = 1;
const V2 = 2;
const NAMED = 1;
const MAX_EPOCH_LENGTH = 64;
const MAX_ENTRIES = 255;
const MAX_CURSOR_CHARS = 16384;

export interface Position {
  readonly epoch: string;
  readonly seq: number;
  /** Fingerprint of the message at `seq` (0: unknown, or seq 0). */
  readonly fp: number;
}

/**
 * The fingerprint of a message: its publish time in microseconds, modulo 2^32. The store
 * stamps every message with its own clock, so a message that replaced a lost one under the
 * same seq has another fingerprint (unless published at the very same microsecond, modulo
 * ~71 minutes). Never 0 for a real message.
 */
export function fingerprint(timeMs: number): number {
  return (Math.round(timeMs * 1000) % 0x1_0000_0000 >>> 0) || 1;
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

/** Which channels of a set must be stored by name: those whose hash another one shares. */
function collidingIndexes(hashes: readonly number[]): Set<number> | undefined {
  let out: Set<number> | undefined;
  for (let i = 1; i < hashes.length; i++) {
    for (let j = 0; j < i; j++) {
      if (hashes[i] === hashes[j]) (out ??= new Set()).add(i).add(j);
    }
  }
  return out;
}

/** Encodes the positions of `channels` (same order). */
export function encodeCursor(channels: readonly string[], positions: readonly Position[]): string {
  const n = channels.length;
  if (n > MAX_ENTRIES) throw new RangeError(`a cursor holds at most ${MAX_ENTRIES} channels`);
  const hashes = n === 1 ? [channelHash(channels[0]!)] : channels.map(channelHash);
  const named = n > 1 ? collidingIndexes(hashes) : undefined;
  let size = 2 + 2;
  for (let i = 0; i < n; i++) size += 1 + (named?.has(i) ? 1 + channels[i]!.length : 6) + 6 + 4 + 1 + positions[i]!.epoch.length;
  const buf = Buffer.allocUnsafe(size);
  buf[0] = V2;
  buf[1] = n;
  let o = 2;
  for (let i = 0; i < n; i++) {
    const p = positions[i]!;
    if (named?.has(i)) {
      const name = channels[i]!;
      buf[o] = NAMED;
      buf[o + 1] = name.length;
      buf.write(name, o + 2, 'latin1');
      o += 2 + name.length;
    } else {
      buf[o] = 0;
      buf.writeUIntBE(hashes[i]!, o + 1, 6);
      o += 7;
    }
    buf.writeUIntBE(p.seq, o, 6);
    buf.writeUInt32BE(p.fp >>> 0, o + 6);
    buf[o + 10] = p.epoch.length;
    buf.write(p.epoch, o + 11, 'latin1');
    o += 11 + p.epoch.length;
  }
  buf.writeUInt16BE(check16(buf, o), o);
  return buf.toString('base64url');
}

/** Marks a hash the cursor holds twice. */
const AMBIGUOUS = Symbol('ambiguous');

/** A decoded cursor: the positions it holds for the channels of a poll. */
export class DecodedCursor {
  /** @internal */
  constructor(
    private readonly byHash: Map<number, Position | typeof AMBIGUOUS>,
    private readonly byName: Map<string, Position> | undefined,
  ) {}

  /**
   * The position of each of `channels` (same order); undefined where the cursor does not
   * cover a channel. An entry found only by a hash that several of these channels share (or
   * that the cursor holds twice) cannot be told apart: those channels get `UNKNOWN_POSITION`,
   * which reads as a gap — never as another channel's place.
   */
  positionsFor(channels: readonly string[]): (Position | undefined)[] {
    const hashes = channels.map(channelHash);
    const shared = channels.length > 1 ? collidingIndexes(hashes) : undefined;
    return channels.map((ch, i) => {
      const named = this.byName?.get(ch);
      if (named) return named;
      const p = this.byHash.get(hashes[i]!);
      if (p === undefined) return undefined;
      return p === AMBIGUOUS || shared?.has(i) ? UNKNOWN_POSITION : p;
    });
  }
}

/** A position that matches no store's epoch: a read from it reports a gap. */
export const UNKNOWN_POSITION: Position = Object.freeze({ epoch: '', seq: 0, fp: 0 });

/** Decodes a cursor; throws 400 bad_cursor on anything malformed. */
export function decodeCursor(cursor: string): DecodedCursor {
  if (cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw badCursor();
  const buf = Buffer.from(cursor, 'base64url');
  if (buf.length < 4 || (buf[0] !== V1 && buf[0] !== V2)) throw badCursor();
  const v2 = buf[0] === V2;
  const n = buf[1]!;
  const end = buf.length - 2;
  const byHash = new Map<number, Position | typeof AMBIGUOUS>();
  let byName: Map<string, Position> | undefined;
  let o = 2;
  for (let i = 0; i < n; i++) {
    let hash = -1;
    let name: string | undefined;
    if (v2) {
      if (o + 1 > end) throw badCursor();
      const flags = buf[o++]!;
      if (flags === NAMED) {
        const len = buf[o] ?? 0;
        if (len === 0 || o + 1 + len > end) throw badCursor();
        name = buf.toString('latin1', o + 1, o + 1 + len);
        o += 1 + len;
      } else if (flags === 0) {
        if (o + 6 > end) throw badCursor();
        hash = buf.readUIntBE(o, 6);
        o += 6;
      } else {
        throw badCursor();
      }
    } else {
      if (o + 6 > end) throw badCursor();
      hash = buf.readUIntBE(o, 6);
      o += 6;
    }
    const fixed = v2 ? 11 : 7;
    if (o + fixed > end) throw badCursor();
    const seq = buf.readUIntBE(o, 6);
    const fp = v2 ? buf.readUInt32BE(o + 6) : 0;
    const len = buf[o + fixed - 1]!;
    if (len === 0 || len > MAX_EPOCH_LENGTH || o + fixed + len > end) throw badCursor();
    const position: Position = { epoch: buf.toString('latin1', o + fixed, o + fixed + len), seq, fp };
    o += fixed + len;
    if (name !== undefined) {
      if ((byName ??= new Map()).has(name)) throw badCursor();
      byName.set(name, position);
    } else {
      // Two hash entries alike: nothing says which channel each belongs to.
      byHash.set(hash, byHash.has(hash) ? AMBIGUOUS : position);
    }
  }
  if (o !== end || buf.readUInt16BE(o) !== check16(buf, o)) throw badCursor();
  return new DecodedCursor(byHash, byName);
}

function badCursor(): HoldfastError {
  return new HoldfastError(
    'bad_cursor',
    'cursor is not one this server issued: pass back the "cursor" of a previous answer unchanged, ' +
      'omit it to start from now, or use cursor=earliest',
  );
}
