/**
 * What a poll, an SSE stream and a WebSocket subscribe op share: the channels asked for, and
 * where each one starts (the cursor rules of the spec). One set of checks, so the three
 * transports accept and refuse exactly the same requests.
 */

import type { ReadFrom } from '../broker/broker.js';
import type { Config } from '../config.js';
import { decodeCursor } from '../cursor.js';
import { HoldfastError } from '../errors.js';
import { checkChannel } from '../names.js';

/** The distinct, valid channel names of a request; 400 for none, too many or a bad name. */
export function checkChannels(requested: readonly unknown[] | undefined, config: Pick<Config, 'maxChannelsPerPoll'>, example: string): string[] {
  if (!requested || requested.length === 0) throw new HoldfastError('bad_request', `give at least one channel: ${example}`);
  for (const ch of requested) {
    if (typeof ch !== 'string') throw new HoldfastError('bad_channel', 'channel names are strings');
  }
  const channels = [...new Set(requested as string[])];
  if (channels.length > config.maxChannelsPerPoll) {
    throw new HoldfastError('bad_request', `${channels.length} channels in one subscription; LP_MAX_CHANNELS_PER_POLL allows ${config.maxChannelsPerPoll}`);
  }
  for (const ch of channels) checkChannel(ch);
  return channels;
}

/**
 * Where each channel starts: after the cursor's position for it, at the oldest retained
 * message (`earliest`), or from now (no cursor, or a channel the cursor does not cover).
 * Decoding happens here, before auth, so a bad cursor is a 400 whatever the token.
 */
export function startPositions(channels: readonly string[], cursor: string | undefined): ReadFrom[] {
  if (cursor === undefined) return channels.map(() => 'now');
  if (cursor === 'earliest') return channels.map(() => 'earliest');
  const positions = decodeCursor(cursor).positionsFor(channels);
  return positions.map((p) => p ?? 'now');
}
