/**
 * Answer bodies. Answers are assembled from per-message fragments that were rendered once
 * (see Message), so a body costs one concatenation, whatever the payloads.
 *
 *   json     {"messages":[…],"cursor":"…","gap":false}\n      a poll answer, a WebSocket text frame
 *   msgpack  the same map in MessagePack                      a poll answer, a WebSocket binary frame
 *   sse      [event: gap / id / data] then, per message,      Server-Sent Events
 *            "id: <cursor just after it>\ndata: {"ch","seq","data"}\n\n"
 */

import { pack } from 'msgpackr';
import { type Position, encodeCursor } from './cursor.js';
import type { Message } from './message.js';

export type AnswerFormat = 'json' | 'msgpack' | 'sse';

export interface Answer {
  /** The waiter's channels, in the order of the positions. */
  readonly channels: readonly string[];
  /** Where each channel stood before `messages` (after the gap, if any): SSE ids start here. */
  readonly before: readonly Position[];
  readonly messages: readonly Message[];
  /** Where each channel stands after `messages`: the answer's cursor. */
  readonly after: readonly Position[];
  readonly gapChannels: readonly string[] | undefined;
  readonly retryMs: number | undefined;
}

export function renderAnswer(answer: Answer, format: AnswerFormat): Buffer {
  if (format !== 'sse' && isShareable(answer)) {
    const last = answer.messages[answer.messages.length - 1]!;
    return last.answerFrom(answer.messages[0]!.seq, format, format === 'json' ? () => renderJson(answer) : () => renderMsgpack(answer));
  }
  switch (format) {
    case 'json':
      return renderJson(answer);
    case 'msgpack':
      return renderMsgpack(answer);
    case 'sse':
      return renderSse(answer);
  }
}

/**
 * One channel, messages in a row, no gap or hint, and the cursor at the last one: the answer
 * is determined by its first and last message (Message.answerFrom shares it).
 */
function isShareable(a: Answer): boolean {
  const n = a.messages.length;
  if (n === 0 || a.channels.length !== 1 || a.gapChannels !== undefined || a.retryMs !== undefined) return false;
  const first = a.messages[0]!;
  const last = a.messages[n - 1]!;
  const p = a.after[0]!;
  return last.ch === a.channels[0] && first.ch === last.ch && first.epoch === last.epoch && last.seq - first.seq === n - 1 &&
    p.seq === last.seq && p.epoch === last.epoch && p.fp === last.fp;
}

function renderJson(a: Answer): Buffer {
  let s = '{"messages":[';
  for (let i = 0; i < a.messages.length; i++) {
    if (i > 0) s += ',';
    s += a.messages[i]!.jsonFragment();
  }
  s += '],"cursor":"' + encodeCursor(a.channels, a.after) + '","gap":';
  s += a.gapChannels ? 'true,"gapChannels":' + JSON.stringify(a.gapChannels) : 'false';
  if (a.retryMs !== undefined) s += ',"retryMs":' + a.retryMs;
  return Buffer.from(s + '}\n');
}

const KEY_MESSAGES = pack('messages');
const KEY_CURSOR = pack('cursor');
const KEY_GAP = pack('gap');
const KEY_GAP_CHANNELS = pack('gapChannels');
const KEY_RETRY = pack('retryMs');
const TRUE = Buffer.from([0xc3]);
const FALSE = Buffer.from([0xc2]);

function arrayHeader(n: number): Buffer {
  if (n < 16) return Buffer.from([0x90 | n]);
  if (n < 0x10000) return Buffer.from([0xdc, n >> 8, n & 0xff]);
  const b = Buffer.allocUnsafe(5);
  b[0] = 0xdd;
  b.writeUInt32BE(n, 1);
  return b;
}

/** The same structure as the JSON answer, spliced from pre-encoded message fragments. */
function renderMsgpack(a: Answer): Buffer {
  const parts: Buffer[] = [];
  let entries = 3;
  if (a.gapChannels) entries++;
  if (a.retryMs !== undefined) entries++;
  parts.push(Buffer.from([0x80 | entries]), KEY_MESSAGES, arrayHeader(a.messages.length));
  for (const m of a.messages) parts.push(m.msgpackFragment());
  parts.push(KEY_CURSOR, pack(encodeCursor(a.channels, a.after)), KEY_GAP, a.gapChannels ? TRUE : FALSE);
  if (a.gapChannels) parts.push(KEY_GAP_CHANNELS, pack(a.gapChannels));
  if (a.retryMs !== undefined) parts.push(KEY_RETRY, pack(a.retryMs));
  return Buffer.concat(parts);
}

/**
 * SSE events: a gap event first (its id: the cursor the retained messages follow), then one
 * event per message whose id is the cursor just after it, so a reconnecting EventSource
 * (Last-Event-ID) resumes exactly after the last event it got.
 */
function renderSse(a: Answer): Buffer {
  let s = '';
  if (a.gapChannels) s += `event: gap\nid: ${encodeCursor(a.channels, a.before)}\ndata: {"gapChannels":${JSON.stringify(a.gapChannels)}}\n\n`;
  const positions = a.before.slice();
  for (const m of a.messages) {
    const i = a.channels.length === 1 ? 0 : a.channels.indexOf(m.ch);
    positions[i] = { epoch: m.epoch, seq: m.seq, fp: m.fp };
    s += `id: ${encodeCursor(a.channels, positions)}\ndata: ${m.jsonFragment()}\n\n`;
  }
  return Buffer.from(s);
}

export const SEED_TIMEOUT_BODY = Buffer.from('{"status":"timeout"}\n');

export function renderSeedMessage(json: string): Buffer {
  return Buffer.from('{"data":' + json + '}\n');
}
