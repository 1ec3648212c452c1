/** The long-poll transport: each poll is answered once, on its own HTTP response. */

import type { Config } from '../config.js';
import type { Poll } from '../poll/poll.js';
import type { Transport } from '../poll/waiter.js';
import { JSON_TYPE, MSGPACK_TYPE, type SendOptions, send, sendError } from '../respond.js';

export function longPollTransport(config: Pick<Config, 'maxBackpressure'>): Transport<Poll> {
  // One options object for every answer: no literal per answer on the fan-out path.
  const options: SendOptions = { noStore: true, maxBackpressure: config.maxBackpressure };
  return {
    kind: 'poll',
    streams: false,
    start() {},
    write: (poll, body) => send(poll.res, 200, poll.format === 'msgpack' ? MSGPACK_TYPE : JSON_TYPE, body, options),
    reject(poll, err) {
      if (!poll.res.closed) sendError(poll.res, err);
    },
    end() {
      throw new Error('a long poll is answered, never ended');
    },
    closeSlow(poll) {
      if (poll.res.closed) return false;
      poll.res.closed = true;
      poll.res.close();
      return true;
    },
  };
}
