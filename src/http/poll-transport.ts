/**
 * The long-poll transport: each poll is answered once, on its own HTTP response. A client
 * that accepts gzip or br gets answers of at least LP_COMPRESS_MIN_BYTES compressed (once per
 * shared body: src/compress); one compressed on the pool is written when it is ready, the poll
 * staying in Writing meanwhile.
 */

import type { AnswerCompressor } from '../compress/compressor.js';
import type { Config } from '../config.js';
import type { Poll } from '../poll/poll.js';
import type { Transport } from '../poll/waiter.js';
import { JSON_TYPE, MSGPACK_TYPE, type SendOptions, Sent, send, sendError } from '../respond.js';

export function longPollTransport(config: Pick<Config, 'maxBackpressure'>, compressor?: AnswerCompressor): Transport<Poll> {
  // One options object per coding for every answer: no literal per answer on the fan-out path.
  const vary = compressor?.enabled === true;
  const plain: SendOptions = { noStore: true, maxBackpressure: config.maxBackpressure, varyAcceptEncoding: vary };
  const coded = {
    br: { ...plain, contentEncoding: 'br' } as SendOptions,
    gzip: { ...plain, contentEncoding: 'gzip' } as SendOptions,
  };
  return {
    kind: 'poll',
    streams: false,
    start() {},
    write(poll, body) {
      const type = poll.format === 'msgpack' ? MSGPACK_TYPE : JSON_TYPE;
      const encoding = poll.encoding;
      if (encoding === undefined || !compressor || poll.res.head) return send(poll.res, 200, type, body, plain);
      const z = compressor.compressed(body, encoding);
      if (z === null) return send(poll.res, 200, type, body, plain);
      if (!(z instanceof Promise)) return send(poll.res, 200, type, z, coded[encoding]);
      // Compressing on the pool: the answer goes out when it is ready (or as it is, if the
      // pool could not make it smaller). The client may leave meanwhile (res.closed).
      void z.then((ready) => {
        if (!poll.res.closed) send(poll.res, 200, type, ready ?? body, ready ? coded[encoding] : plain);
      });
      return Sent.Pending;
    },
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
