/**
 * The seed-compatible endpoints, in the classic tutorial's own wire format:
 *   GET /poll?clientId=…      → {"data": message} | {"status":"timeout"}
 *   POST /push {clientId, message} → {"status":"ok"}
 *   DELETE /disconnect?clientId=… → {"status":"ok"}
 */

import { bearer } from '../auth/bearer.js';
import { authorizeSubscriber } from '../auth/subscribers.js';
import { BrokerUnavailableError, HoldfastError } from '../errors.js';
import { checkChannel } from '../names.js';
import { decodeBody, toJsonText } from '../payload.js';
import { SeedPoll } from '../seed/seed-hub.js';
import type { HttpRequest } from '../uws.js';
import { type ServerContext, fail, resumeAfter } from './context.js';
import { pollTimeout } from './poll.js';
import { admitPublish, withBody } from './publish.js';
import { parseQuery, single } from './request.js';
import { JSON_TYPE, type Res, send, sendError, sendJson } from '../respond.js';
import type { SeedWriter } from '../seed/seed-hub.js';

const OK = { status: 'ok' };

function clientIdFrom(query: Map<string, string[]>): string {
  const id = single(query, 'clientId') ?? single(query, 'client_id');
  if (id === undefined) throw new HoldfastError('bad_request', 'clientId is required: /poll?clientId=<id>');
  return checkChannel(id, 'clientId');
}

export function seedPoll(ctx: ServerContext) {
  return (res: Res, req: HttpRequest): void => {
    const query = parseQuery(req.getQuery() ?? '');
    const authorization = req.getHeader('authorization');
    const id = clientIdFrom(query);
    const timeout = pollTimeout(single(query, 'timeout'), ctx.config.pollTimeoutMs);
    const tokenParam = single(query, 'token');
    const token = bearer(authorization) ?? tokenParam;
    const park = (): void => {
      if (!ctx.broker.isAvailable()) throw new BrokerUnavailableError();
      const full = ctx.hub.parkedCount + ctx.seed.parkedCount >= ctx.config.maxParked;
      ctx.seed.begin(new SeedPoll(res, id, Date.now() + timeout), full);
    };
    // A token seen before is checked now; a new one is verified first (the request is copied).
    const pending = authorizeSubscriber(ctx.tokens, ctx.config.publicPrefixes, { names: [id], what: 'clientId' }, token);
    if (pending === undefined) park();
    else resumeAfter(ctx, res, pending, park);
  };
}

export function seedPush(ctx: ServerContext) {
  return (res: Res, req: HttpRequest): void => {
    // LP_SEED_OPEN=1: anyone may push, as in the tutorial; limits still apply.
    const format = admitPublish(ctx, res, req, false, !ctx.config.seedOpen);
    withBody(ctx, res, async (body) => {
      const value = decodeBody(body, format, -1);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new HoldfastError('bad_request', 'body must be {"clientId": id, "message": value}');
      }
      const v = value as Record<string, unknown>;
      const rawId = v.clientId ?? v.client_id;
      if (typeof rawId !== 'string') throw new HoldfastError('bad_request', 'clientId (or client_id) must be a string');
      const id = checkChannel(rawId, 'clientId');
      const message = v.message !== undefined ? v.message : v.data;
      if (message === undefined) throw new HoldfastError('bad_request', 'message (or data) is missing');
      await ctx.broker.queuePush(id, toJsonText(message));
      ctx.metrics.published.inc();
      return OK;
    });
  };
}

export function seedDisconnect(ctx: ServerContext) {
  return (res: Res, req: HttpRequest): void => {
    const id = clientIdFrom(parseQuery(req.getQuery() ?? ''));
    if (!ctx.config.seedOpen) ctx.publisher.authorize(req, res);
    res.onAborted(() => {
      res.closed = true;
    });
    ctx.broker.queueClear(id).then(
      () => sendJson(res, 200, OK, { noStore: true }),
      (err) => fail(ctx, res, err),
    );
  };
}

/** How the seed hub writes its answers. */
export const seedWriter: SeedWriter = {
  answer: (res, body) => send(res, 200, JSON_TYPE, body, { noStore: true }),
  reject: (res, err) => {
    sendError(res, err);
  },
};
