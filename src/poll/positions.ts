/**
 * Pure rules about what a waiter gets and where it stands afterwards: which notified messages
 * join up with a position, how many fit one answer, the order across channels, and a
 * channel's position once an answer is sent. No I/O, no state.
 */

import type { ReadFrom, ReadResult } from '../broker/broker.js';
import type { Position } from '../cursor.js';
import type { Message } from '../message.js';
import { hasPrefix } from '../names.js';

/**
 * The notified messages that follow `pos` directly, or undefined when they do not join up
 * with it (a lost notification, another epoch): then only a history read is trustworthy.
 */
export function contiguous(ch: string, list: readonly Message[], pos: Position, conflatePrefixes: readonly string[]): Message[] | undefined {
  const fresh: Message[] = [];
  const conflated = hasPrefix(ch, conflatePrefixes);
  let expect = pos.seq + 1;
  for (const m of list) {
    if (m.ch !== ch) throw new Error(`a notification for ${m.ch} was queued under ${ch}`);
    if (m.epoch !== pos.epoch) return undefined;
    // The message at the position itself, with another fingerprint: the store lost the one the
    // waiter saw and reused its seq (lost writes). Not a duplicate: re-read, which reports the gap.
    if (m.seq === pos.seq && pos.fp !== 0 && m.fp !== pos.fp) return undefined;
    if (m.seq < expect) continue; // already seen (duplicate notification)
    // A conflated channel skips ahead by design: only its newest value counts.
    if (m.seq !== expect && !conflated) return undefined;
    fresh.push(m);
    expect = m.seq + 1;
  }
  if (fresh.length > 1 && conflated) return [fresh[fresh.length - 1]!];
  return fresh;
}

/** The first messages that fit `max` and the body budget (at least one). */
export function fit(messages: Message[], max: number, bodyBudget: number): Message[] {
  let bytes = 0;
  let n = 0;
  while (n < messages.length && n < max) {
    bytes += messages[n]!.json.length + messages[n]!.ch.length + 32;
    if (n > 0 && bytes > bodyBudget) break;
    n++;
  }
  return n === messages.length ? messages : messages.slice(0, n);
}

/** Oldest first across channels; ties keep read order (Array.prototype.sort is stable). */
export function byTime(a: Message, b: Message): number {
  return a.time - b.time;
}

/** A channel's position once `delivered` is sent. */
export function positionAfter(ch: string, r: ReadResult, from: ReadFrom, delivered: readonly Message[]): Position {
  for (let i = delivered.length - 1; i >= 0; i--) {
    const m = delivered[i]!;
    if (m.ch === ch) return { epoch: m.epoch, seq: m.seq, fp: m.fp };
  }
  // Nothing of this channel went out. Without a gap, a cursor position stays as it was; a
  // channel read from now stands at its head.
  const first = r.messages[0];
  if (!r.gap && typeof from === 'object') return from;
  if (!first) return { epoch: r.epoch, seq: r.lastSeq, fp: r.headFp };
  // Stand just before its first unsent message, so the retained messages follow; after a
  // gap the gap is reported once.
  return { epoch: r.epoch, seq: first.seq - 1, fp: 0 };
}
