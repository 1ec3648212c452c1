/** GET /v1/poll — parse and authorise on the request's own callback, then hand to the PollHub. */

import type { ReadFrom } from '../broker/broker.js';
import { preferredEncoding } from '../compress/accept.js';
import { AnswerCompressor } from '../compress/compressor.js';
import { Poll } from '../poll/poll.js';
import type { AnswerFormat } from '../render.js';
import { bearer } from '../auth/bearer.js';
import { authorizeSubscriber } from '../auth/subscribers.js';
import type { HttpRequest } from '../uws.js';
import { type ServerContext, resumeAfter } from './context.js';
import { intParam, parseQuery, single } from './request.js';
import type { Res } from '../respond.js';
import { longPollTransport } from './poll-transport.js';
import { checkChannels, startPositions } from './subscription.js';

export const MIN_TIMEOUT_MS = 1000;
export const MAX_TIMEOUT_MS = 120_000;
export const MAX_MAX = 1000;
export const DEFAULT_MAX = 100;

/** The poll hold: the request's `timeout` clamped, or the configured default. */
export function pollTimeout(raw: string | undefined, fallback: number): number {
  const t = intParam(raw, 'timeout', 0);
  return t === undefined ? fallback : Math.min(MAX_TIMEOUT_MS, Math.max(MIN_TIMEOUT_MS, t));
}

export function answerFormat(accept: string): AnswerFormat {
  return accept.includes('application/msgpack') ? 'msgpack' : 'json';
}

/** A poll's query, parsed and checked: shared by every poll that sends the same query text. */
interface PollQuery {
  readonly channels: string[];
  readonly from: ReadFrom[];
  readonly timeout: number;
  readonly max: number;
  readonly token: string | undefined;
}

/**
 * Parsed queries by their text. Clients one message behind on a channel send the same query
 * (its name and the cursor after its newest message), and parsing it and decoding the cursor
 * cost ~12,000 instructions (callgrind) against a Map lookup. Only queries that passed every
 * check, and carry no token, are kept; the memo starts over when full.
 */
const QUERY_MEMO_SIZE = 1024;

function pollQuery(memo: Map<string, PollQuery>, raw: string, config: ServerContext['config']): PollQuery {
  const known = memo.get(raw);
  if (known) return known;
  const query = parseQuery(raw);
  const channels = checkChannels(query.get('ch'), config, '/v1/poll?ch=<channel>');
  const parsed: PollQuery = {
    channels,
    from: startPositions(channels, single(query, 'cursor')),
    timeout: pollTimeout(single(query, 'timeout'), config.pollTimeoutMs),
    max: Math.min(MAX_MAX, intParam(single(query, 'max'), 'max', 1) ?? DEFAULT_MAX),
    token: single(query, 'token'),
  };
  if (parsed.token === undefined) {
    if (memo.size >= QUERY_MEMO_SIZE) memo.clear();
    memo.set(raw, parsed);
  }
  return parsed;
}

export function pollHandler(ctx: ServerContext) {
  const { config } = ctx;
  // Answer compression (LP_COMPRESS_MIN_BYTES > 0): only then is Accept-Encoding read.
  const compressor = config.compressMinBytes > 0 ? new AnswerCompressor(config) : undefined;
  const transport = longPollTransport(config, compressor);
  const memo = new Map<string, PollQuery>();
  return (res: Res, req: HttpRequest): void => {
    const rawQuery = req.getQuery() ?? '';
    const authorization = req.getHeader('authorization');
    const format = answerFormat(req.getHeader('accept'));
    const encoding = compressor ? preferredEncoding(req.getHeader('accept-encoding')) : undefined;

    // 1. Bad input (400) before auth.
    const { channels, from, timeout, max, token: tokenParam } = pollQuery(memo, rawQuery, config);

    // 3. Park (or answer at once): interest first, then history.
    const park = (): void => {
      const poll = new Poll(transport, res, channels, max, format, Date.now() + timeout, encoding);
      res.onAborted(() => {
        res.closed = true;
        ctx.hub.abort(poll);
      });
      ctx.hub.begin(poll, from);
    };

    // 2. Subscriber auth: only non-public channels need a token. A token seen before is a Map
    //    lookup and the poll parks now; a new token is verified first, and then the poll parks
    //    from what was copied out of the request above (the HttpRequest is gone by then).
    const token = ctx.tokens ? (bearer(authorization) ?? tokenParam) : undefined;
    const pending = authorizeSubscriber(ctx.tokens, config.publicPrefixes, { names: channels, what: 'channel' }, token);
    if (pending === undefined) park();
    else resumeAfter(ctx, res, pending, park);
  };
}
