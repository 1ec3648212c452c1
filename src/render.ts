/**
 * Answer bodies. Poll answers are assembled from per-message fragments that were rendered
 * once (see Message), so a body costs one concatenation, whatever the payloads.
 */

import { pack } from 'msgpackr';
import type { Message } from './message.js';

export type AnswerFormat = 'json' | 'msgpack';

export interface PollAnswer {
  messages: readonly Message[];
  cursor: string;
  gapChannels: readonly string[] | undefined;
  retryMs: number | undefined;
}

export function renderPoll(answer: PollAnswer, format: AnswerFormat): Buffer {
  return format === 'json' ? renderPollJson(answer) : renderPollMsgpack(answer);
}

function renderPollJson(a: PollAnswer): Buffer {
  let s = '{"messages":[';
  for (let i = 0; i < a.messages.length; i++) {
    if (i > 0) s += ',';
    s += a.messages[i]!.jsonFragment();
  }
  s += '],"cursor":"' + a.cursor + '","gap":';
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
function renderPollMsgpack(a: PollAnswer): Buffer {
  const parts: Buffer[] = [];
  let entries = 3;
  if (a.gapChannels) entries++;
  if (a.retryMs !== undefined) entries++;
  parts.push(Buffer.from([0x80 | entries]), KEY_MESSAGES, arrayHeader(a.messages.length));
  for (const m of a.messages) parts.push(m.msgpackFragment());
  parts.push(KEY_CURSOR, pack(a.cursor), KEY_GAP, a.gapChannels ? TRUE : FALSE);
  if (a.gapChannels) parts.push(KEY_GAP_CHANNELS, pack(a.gapChannels));
  if (a.retryMs !== undefined) parts.push(KEY_RETRY, pack(a.retryMs));
  return Buffer.concat(parts);
}

export const SEED_TIMEOUT_BODY = Buffer.from('{"status":"timeout"}');

export function renderSeedMessage(json: string): Buffer {
  return Buffer.from('{"data":' + json + '}');
}
