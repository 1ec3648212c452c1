/**
 * Checks one /v1/poll answer against the model and returns what the client has seen since.
 * Every rule here is a sentence of the contract (spec "Model", "Poll"):
 *   - only requested (and so granted) channels; each message is exactly the publish at
 *     (channel, epoch, seq) its payload names;
 *   - per channel, seqs follow the cursor by exactly one and stay contiguous, unless the
 *     channel is in gapChannels; a conflated channel may skip ahead (not a gap);
 *   - a gap is justified: the epoch changed, or the next message left the history;
 *   - a poll without cursor never returns what was acknowledged before it was sent;
 *   - an empty answer without gap is a timeout: only a poll with a short timeout may get one,
 *     and never when messages after its cursor existed before it was sent.
 * Checks run after every publish of the command was answered, so the model is never behind.
 */

import { type ChannelModel, type Pos, type PubRecord, type Start, count, payloadId, sameValue, showStart, tighten, violation } from './model.js';

export interface PollView {
  readonly label: string;
  readonly channels: readonly string[];
  readonly starts: readonly Start[];
  readonly max: number;
  /** A long poll never times out within a run; a short one may. */
  readonly long: boolean;
}

export interface ModelView {
  channel(name: string): ChannelModel;
  publishByKey(key: string | number): PubRecord | undefined;
  readonly ttlMs: number;
  /** Across channels oldest first (not promised on Redis Cluster). */
  readonly orderedAcrossChannels: boolean;
}

interface Seen {
  readonly ch: string;
  readonly rec: PubRecord;
}

export interface PollBody {
  messages: { ch: string; seq: number; data: unknown }[];
  cursor: string;
  gap: boolean;
  gapChannels?: string[];
}

/** Validates `body`; returns the client's positions after it (same order as `p.channels`). */
export function checkPollAnswer(p: PollView, body: PollBody, m: ModelView, now: number): Pos[] {
  const where = `${p.label}`;
  checkShape(where, p, body);
  const gapChannels = new Set(body.gap ? body.gapChannels : []);
  const byChannel = new Map<string, Seen[]>(p.channels.map((c) => [c, []]));
  let lastOrder = -Infinity;
  for (const msg of body.messages) {
    const list = byChannel.get(msg.ch);
    const rec = m.publishByKey(payloadId(msg.data) ?? '');
    const said = `${where}: message ${msg.ch}#${msg.seq} ${JSON.stringify(msg.data)?.slice(0, 80)}`;
    if (!list) {
      const origin = rec ? ` (it was published to ${rec.ch}#${rec.seq})` : '';
      violation(`${said} is of a channel the poll did not request (it asked for ${JSON.stringify(p.channels)})${origin}`);
    }
    if (!rec || !rec.acked) violation(`${said} carries a payload that was never published (a retry's body, or invented)`);
    if (rec.ch !== msg.ch || rec.seq !== msg.seq) {
      violation(`${said} is the payload published as ${rec.ch}#${rec.seq} (epoch #${rec.epoch}), delivered under the wrong channel or seq`);
    }
    if (!sameValue(msg.data, rec.value)) violation(`${said} differs from the published value ${JSON.stringify(rec.value)}`);
    if (m.orderedAcrossChannels && rec.order < lastOrder) {
      violation(`${where}: messages are not oldest first across channels (${msg.ch}#${msg.seq} comes after a newer message)`);
    }
    lastOrder = Math.max(lastOrder, rec.order);
    list.push({ ch: msg.ch, rec });
  }

  const next: Pos[] = [];
  for (let i = 0; i < p.channels.length; i++) {
    const name = p.channels[i]!;
    const seen = byChannel.get(name)!;
    checkRun(where, m.channel(name), seen);
    next.push(checkChannel(where, m.channel(name), p.starts[i]!, seen, gapChannels.has(name), m.ttlMs, now));
  }
  if (body.messages.length === 0 && !body.gap) checkEmpty(where, p, m);
  return next;
}

function checkShape(where: string, p: PollView, body: PollBody): void {
  if (body === null || typeof body !== 'object' || !Array.isArray(body.messages) || typeof body.cursor !== 'string' || typeof body.gap !== 'boolean') {
    violation(`${where}: answer is not {"messages":[…],"cursor":…,"gap":…}: ${JSON.stringify(body)?.slice(0, 200)}`);
  }
  if (!/^[A-Za-z0-9_-]+$/.test(body.cursor)) violation(`${where}: cursor ${JSON.stringify(body.cursor)} is not URL-safe`);
  if (body.messages.length > p.max) violation(`${where}: ${body.messages.length} messages for max=${p.max}`);
  if (body.gap) {
    const g = body.gapChannels;
    if (!Array.isArray(g) || g.length === 0) violation(`${where}: gap:true without a gapChannels list`);
    for (const c of g) if (!p.channels.includes(c)) violation(`${where}: gapChannels names ${c}, which the poll did not request`);
    if (new Set(g).size !== g.length) violation(`${where}: gapChannels lists a channel twice: ${JSON.stringify(g)}`);
  } else if ('gapChannels' in body) {
    violation(`${where}: gapChannels present while gap is false`);
  }
}

/** Within one answer, one channel's messages: one epoch, strictly increasing, contiguous. */
function checkRun(where: string, ch: ChannelModel, seen: readonly Seen[]): void {
  for (let j = 1; j < seen.length; j++) {
    const a = seen[j - 1]!.rec;
    const b = seen[j]!.rec;
    if (b.epoch !== a.epoch) violation(`${where}: ${ch.name} mixes epochs #${a.epoch} and #${b.epoch} in one answer`);
    if (b.seq <= a.seq) violation(`${where}: ${ch.name} seq ${b.seq} follows ${a.seq} (not increasing)`);
    if (!ch.conflated && b.seq !== a.seq + 1) violation(`${where}: ${ch.name} jumps from seq ${a.seq} to ${b.seq} inside one answer without a gap`);
  }
}

/** One channel of the answer against where the client stood; returns where it stands now. */
function checkChannel(where: string, ch: ChannelModel, start: Start, seen: readonly Seen[], gap: boolean, ttlMs: number, now: number): Pos {
  const at = `${where}: ${ch.name} (from ${showStart(start)}${gap ? ', gap' : ''})`;
  const first = seen[0]?.rec;
  const last = seen[seen.length - 1]?.rec;
  const after: Pos | undefined = last ? { k: 'exact', e: last.epoch, s: last.seq } : undefined;

  if (start.k === 'cursor' && start.pos.k !== 'unknown') {
    const pos = start.pos;
    const lo = pos.k === 'exact' ? pos.s : pos.lo;
    const hi = pos.k === 'exact' ? pos.s : pos.hi;
    const epochChanged = ch.epoch > pos.e;
    if (gap && !epochChanged && !ch.mayBeTrimmed(pos.e, lo + 1, ttlMs, now)) {
      const why = lo + 1 > ch.head(pos.e) ? `nothing after seq ${lo} was published yet` : `seq ${lo + 1} is still retained (head ${ch.head(pos.e)}, history ${ch.retain})`;
      violation(`${at}: gap reported, but the epoch did not change and ${why}`);
    }
    if (gap) count(epochChanged ? 'gap: new epoch' : 'gap: history trimmed');
    if (first) {
      if (first.epoch < pos.e) violation(`${at}: delivers seq ${first.seq} of the older epoch #${first.epoch}`);
      if (first.epoch > pos.e && !gap) violation(`${at}: delivers seq ${first.seq} of a new epoch #${first.epoch} without reporting a gap (silent renumbering)`);
      if (first.epoch === pos.e) {
        if (first.seq <= lo) violation(`${at}: delivers seq ${first.seq}, at or before the cursor`);
        // A gap must skip something even from the lowest position the client may stand at.
        if (gap && first.seq <= lo + 1 && !ch.conflated) violation(`${at}: gap reported, yet the next seq ${first.seq} is delivered`);
        if (!gap && !ch.conflated && first.seq > hi + 1) {
          violation(`${at}: delivers seq ${first.seq}; seqs ${hi + 1}..${first.seq - 1} are skipped silently (no gap)`);
        }
        if (!gap && ch.conflated && first.seq > hi + 1) count('conflated: skipped to the newest');
      }
      return after!;
    }
    if (!gap) return pos;
    return afterGap(ch, pos.e, pos.e === ch.epoch ? lo : 0);
  }

  if (start.k === 'cursor') {
    // Unknown position: only the epoch floor is known.
    if (first && first.epoch < start.pos.e) violation(`${at}: delivers seq ${first.seq} of the older epoch #${first.epoch}`);
    return after ?? start.pos;
  }

  // No cursor ("now") or cursor=earliest: the server chose the start when it read, at or
  // after `low`. A poll that parked there and re-read later (a delete of another of its
  // channels, a lost notification) may find the history moved past it: a trimming gap.
  const epochChanged = ch.epoch > start.e;
  const low = start.k === 'now' ? start.acked : Math.max(0, start.acked - ch.retain);
  if (gap && !epochChanged && !ch.mayBeTrimmed(start.e, low + 1, ttlMs, now)) {
    violation(`${at}: gap reported for a poll without a cursor position, but the epoch did not change and nothing after seq ${low} can have left the history`);
  }
  if (gap) count(epochChanged ? 'gap: new epoch (no cursor)' : 'gap: history trimmed (no cursor)');
  if (first) {
    if (first.epoch < start.e) violation(`${at}: delivers seq ${first.seq} of the older epoch #${first.epoch}`);
    if (first.epoch > start.e && !gap) violation(`${at}: delivers seq ${first.seq} of a new epoch #${first.epoch} without reporting a gap`);
    if (first.epoch === start.e) {
      if (gap && first.seq <= low + 1 && !ch.conflated) violation(`${at}: gap reported, yet seq ${first.seq} right after the earliest possible start is delivered`);
      if (start.k === 'now' && first.seq <= start.acked) {
        violation(`${at}: without a cursor the poll returns seq ${first.seq}, acknowledged before the poll was sent (only later messages)`);
      }
      if (start.k === 'earliest') {
        const oldest = Math.max(1, start.acked - ch.retain + 1);
        const newest = ttlMs < 3_600_000 ? ch.head(start.e) : ch.firstRetained(start.e);
        if (first.seq < oldest || first.seq > newest) {
          violation(`${at}: cursor=earliest starts at seq ${first.seq}; the oldest retained was between ${oldest} and ${newest}`);
        }
      }
    }
    return after!;
  }
  if (gap) return afterGap(ch, start.e, epochChanged ? 0 : low);
  return tighten({ k: 'range', e: start.e, lo: low, hi: ch.head(start.e) });
}

/** Where a gap with no message of the channel leaves the client (the server's read point). */
function afterGap(ch: ChannelModel, e: number, lo: number): Pos {
  if (ch.epoch === e) return tighten({ k: 'range', e, lo, hi: ch.head(e) });
  if (ch.epoch === e + 1) return tighten({ k: 'range', e: ch.epoch, lo: 0, hi: ch.head() });
  return { k: 'unknown', e: e + 1 };
}

/**
 * An empty answer without gap is a timeout. A long poll must not time out within a run, and
 * no poll may when messages after its cursor were acknowledged before it was sent.
 */
function checkEmpty(where: string, p: PollView, m: ModelView): void {
  if (p.long) violation(`${where}: a long poll answered with no messages and no gap before its timeout`);
  for (let i = 0; i < p.channels.length; i++) {
    const start = p.starts[i]!;
    if (start.k !== 'cursor' || start.pos.k === 'unknown') continue;
    const pos = start.pos;
    const hi = pos.k === 'exact' ? pos.s : pos.hi;
    const name = p.channels[i]!;
    if (start.e > pos.e) violation(`${where}: timed out empty although ${name} was deleted (new epoch) before the poll was sent: a gap was due at once`);
    if (start.acked > hi) {
      violation(`${where}: timed out empty although ${name} had seq ${hi + 1}..${start.acked} after the cursor before the poll was sent`);
    }
  }
}

export type { PubRecord };
