/**
 * The reference model: what the contract (/work/shared/spec/http-api.md) says the server holds
 * and may answer, kept as plain data. It knows every acknowledged publish by the unique id its
 * payload carries, so a delivered message names the one publish it must be: channel, epoch,
 * seq and value are then checked exactly. Positions say what a client has seen per channel;
 * where the contract leaves a choice to the server (a poll without cursor starts "from now",
 * which the client cannot see), a position is a range or unknown, never a guess.
 */

import { isDeepStrictEqual } from 'node:util';

/** A contract violation: the checker's only failure. */
export class Violation extends Error {
  override name = 'Violation';
}

export function violation(message: string): never {
  throw new Violation(message);
}

/** What the runs exercised (answers with gaps, duplicates refused, …), for the summary. */
export const tally = new Map<string, number>();

export function count(what: string, n = 1): void {
  tally.set(what, (tally.get(what) ?? 0) + n);
}

export function showTally(): string {
  return [...tally].sort((a, b) => a[0].localeCompare(b[0])).map(([k, v]) => `${k}: ${v}`).join(', ');
}

// ---- payloads ---------------------------------------------------------------------------

/** The shapes a published value takes; each carries the publish's unique id. */
export type Shape = 'object' | 'string' | 'array' | 'number';

/** Wraps random `content` around the unique `id` (a string like "m1k.#17", or a number). */
export function wrapPayload(shape: Shape, id: string, num: number, content: unknown): unknown {
  switch (shape) {
    case 'object':
      return { '#': id, v: content };
    case 'string':
      return `${id}|${typeof content === 'string' ? content : JSON.stringify(content)}`;
    case 'array':
      return [id, content];
    case 'number':
      return num;
  }
}

/** The id a delivered value carries, or undefined when it carries none. */
export function payloadId(value: unknown): string | number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') {
    const bar = value.indexOf('|');
    return bar === -1 ? undefined : value.slice(0, bar);
  }
  if (Array.isArray(value)) return typeof value[0] === 'string' ? value[0] : undefined;
  if (value !== null && typeof value === 'object') {
    const id = (value as Record<string, unknown>)['#'];
    return typeof id === 'string' ? id : undefined;
  }
  return undefined;
}

export function sameValue(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(a, b);
}

// ---- channels ---------------------------------------------------------------------------

/** One acknowledged (or in-flight) publish. */
export interface PubRecord {
  readonly key: string | number;
  readonly ch: string;
  readonly value: unknown;
  /** Global order of the publishing command; items of one batch share it. */
  readonly order: number;
  readonly sentAt: number;
  acked: boolean;
  epoch: number;
  seq: number;
}

interface EpochState {
  /** The server's epoch token, once an answer showed it. */
  token: string | undefined;
  head: number;
  bySeq: Map<number, PubRecord>;
}

export class ChannelModel {
  readonly epochs: EpochState[] = [{ token: undefined, head: 0, bySeq: new Map() }];
  /** Idempotency key → the first answer; `epoch` says which epoch it was recorded in. */
  readonly idempotency = new Map<string, { seq: number; epoch: number; token: string }>();
  /** Publishes sent and not yet answered (an upper bound on what the server may hold). */
  inFlight = 0;

  constructor(
    readonly name: string,
    readonly conflated: boolean,
    readonly isPublic: boolean,
    /** Messages retained: LP_HISTORY_SIZE, or 1 for a conflated channel. */
    readonly retain: number,
  ) {}

  get epoch(): number {
    return this.epochs.length - 1;
  }

  head(epoch = this.epoch): number {
    return this.epochs[epoch]!.head;
  }

  record(epoch: number, seq: number): PubRecord | undefined {
    return this.epochs[epoch]?.bySeq.get(seq);
  }

  /** Checks an epoch token an answer shows for `epoch`: stable within it, new after a delete. */
  noteToken(epoch: number, token: string, what: string): void {
    if (typeof token !== 'string' || token.length === 0) violation(`${what}: epoch ${JSON.stringify(token)} is not a token`);
    const state = this.epochs[epoch]!;
    if (state.token === undefined) {
      for (let e = 0; e < this.epochs.length; e++) {
        if (e !== epoch && this.epochs[e]!.token === token) {
          violation(`${what}: ${this.name} answers epoch ${token} for its epoch #${epoch}, but that token was its epoch #${e} (a delete must start a new epoch)`);
        }
      }
      state.token = token;
    } else if (state.token !== token) {
      violation(`${what}: ${this.name} answers epoch ${token}, but its current epoch is ${state.token} (no delete happened since)`);
    }
  }

  /** A publish answered `seq`/`token` for a new message: it must be head + 1 in this epoch. */
  acceptPublish(rec: PubRecord, seq: number, token: string, what: string): void {
    this.noteToken(this.epoch, token, what);
    const expected = this.head() + 1;
    if (seq !== expected) violation(`${what}: ${this.name} answered seq ${seq}, expected ${expected} (seqs go up by exactly 1 per publish)`);
    const state = this.epochs[this.epoch]!;
    state.head = seq;
    rec.acked = true;
    rec.epoch = this.epoch;
    rec.seq = seq;
    state.bySeq.set(seq, rec);
  }

  deleted(token: string, what: string): void {
    this.epochs.push({ token: undefined, head: 0, bySeq: new Map() });
    this.noteToken(this.epoch, token, what);
  }

  /** Whether message `seq` of `epoch` may have left the history by now (count or TTL). */
  mayBeTrimmed(epoch: number, seq: number, ttlMs: number, now: number): boolean {
    if (this.conflated) return false; // skipping on a conflated channel is not a gap
    if (seq <= this.head(epoch) - this.retain) return true;
    const rec = this.record(epoch, seq);
    return rec !== undefined && now - rec.sentAt >= ttlMs - 250;
  }

  /** The oldest seq the history may hold (TTL aside). */
  firstRetained(epoch: number): number {
    return Math.max(1, this.head(epoch) - this.retain + 1);
  }
}

// ---- client positions ----------------------------------------------------------------

/**
 * What a client has seen on one channel.
 *   exact   — up to seq `s` of epoch `e`
 *   range   — up to some seq in [lo, hi] of epoch `e` (a start "from now" or "earliest")
 *   unknown — somewhere in epoch `e` or a later one (a delete raced the read)
 */
export type Pos =
  | { readonly k: 'exact'; readonly e: number; readonly s: number }
  | { readonly k: 'range'; readonly e: number; readonly lo: number; readonly hi: number }
  | { readonly k: 'unknown'; readonly e: number };

/**
 * How a poll started on one channel: from the client's position, from now, or from the
 * oldest retained message. `e`/`acked` are the channel's epoch and head (in that epoch, or in
 * the position's epoch for a cursor) when the poll was sent.
 */
export type Start =
  | { readonly k: 'cursor'; readonly pos: Pos; readonly e: number; readonly acked: number }
  | { readonly k: 'now' | 'earliest'; readonly e: number; readonly acked: number };

export function showPos(p: Pos | undefined): string {
  if (!p) return 'none';
  if (p.k === 'exact') return `e${p.e}#${p.s}`;
  if (p.k === 'range') return p.lo === p.hi ? `e${p.e}#${p.lo}` : `e${p.e}#${p.lo}..${p.hi}`;
  return `e${p.e}+?`;
}

export function showStart(s: Start): string {
  return s.k === 'cursor' ? showPos(s.pos) : `${s.k}(e${s.e}#${s.acked})`;
}

/** Where a wake is owed: a message after (e, s) or a newer epoch. */
export interface Floor {
  e: number;
  s: number;
}

export function floorOf(start: Start): Floor | undefined {
  if (start.k !== 'cursor') return undefined;
  const p = start.pos;
  if (p.k === 'exact') return { e: p.e, s: p.s };
  if (p.k === 'range') return { e: p.e, s: p.hi };
  return undefined;
}

export function owesWake(ch: ChannelModel, f: Floor): boolean {
  return ch.epoch > f.e || ch.head(f.e) > f.s;
}

/** A position collapsed to exact when its range is one seq wide. */
export function tighten(p: Pos): Pos {
  return p.k === 'range' && p.lo === p.hi ? { k: 'exact', e: p.e, s: p.lo } : p;
}

// ---- seed queues -------------------------------------------------------------------------

export interface PushRecord {
  readonly key: string;
  readonly id: string;
  readonly value: unknown;
  readonly sentAt: number;
  state: 'sent' | 'queued' | 'delivered' | 'dropped';
  /** Pushes to this id before it (for the oldest-first check). */
  readonly index: number;
}

export class SeedModel {
  readonly pushes: PushRecord[] = [];
  constructor(
    readonly id: string,
    readonly limit: number,
    /** LP_HISTORY_TTL_S in ms: a queued push older than that may be gone. */
    readonly ttlMs: number,
  ) {}

  queued(): PushRecord[] {
    const old = Date.now() - this.ttlMs + 250;
    for (const p of this.pushes) if (p.state === 'queued' && p.sentAt <= old) p.state = 'dropped';
    return this.pushes.filter((p) => p.state === 'queued');
  }

  /** Queued beyond the history limit: the oldest may go ("when full the oldest message goes"). */
  trimOverflow(): void {
    const q = this.queued();
    for (let i = 0; i < q.length - this.limit; i++) q[i]!.state = 'dropped';
  }

  disconnect(): void {
    for (const p of this.pushes) if (p.state === 'queued' || p.state === 'sent') p.state = 'dropped';
  }
}
