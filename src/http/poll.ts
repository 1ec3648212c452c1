/** GET /v1/poll — parse and authorise on the request's own callback, then hand to the PollHub. */

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

export function pollHandler(ctx: ServerContext) {
  const { config } = ctx;
  const transport = longPollTransport(config);
  return (res: Res, req: HttpRequest): void => {
    const query = parseQuery(req.getQuery() ?? '');
    const authorization = req.getHeader('authorization');
    const format = answerFormat(req.getHeader('accept'));

    // 1. Bad input (400) before auth.
    const channels = checkChannels(query.get('ch'), config, '/v1/poll?ch=<channel>');
    const from = startPositions(channels, single(query, 'cursor'));
    const timeout = pollTimeout(single(query, 'timeout'), config.pollTimeoutMs);
    const max = Math.min(MAX_MAX, intParam(single(query, 'max'), 'max', 1) ?? DEFAULT_MAX);
    const tokenParam = single(query, 'token');

    // 3. Park (or answer at once): interest first, then history.
    const park = (): void => {
      const poll = new Poll(transport, res, channels, max, format, Date.now() + timeout);
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
