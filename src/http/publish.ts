/**
 * POST /v1/publish/<channel> and POST /v1/publish (batch). A publish is answered only after
 * the broker's write returned. Checks run cheapest first and before the body is read: auth,
 * media type, declared length, backpressure.
 */

import { BatchPublishError, type PublishItem } from '../broker/broker.js';
import { HoldfastError } from '../errors.js';
import { checkChannel } from '../names.js';
import { bodyFormat, decodeBody, toJsonText, type BodyFormat } from '../payload.js';
import type { HttpRequest } from '../uws.js';
import { type ServerContext, fail } from './context.js';
import { pathSegment, readBody, tooLarge } from './request.js';
import { type Res, sendJson } from '../respond.js';

const PUBLISH_PREFIX = '/v1/publish/';
const NO_STORE = { noStore: true } as const;
export const MAX_ID_LENGTH = 200;

/** Publisher auth, body limits and backpressure: shared by every publishing route. */
export function admitPublish(ctx: ServerContext, res: Res, req: HttpRequest, allowText: boolean, authorise = true): BodyFormat {
  if (authorise) ctx.publisher.authorize(req, res);
  const format = bodyFormat(req.getHeader('content-type'), allowText);
  const length = req.getHeader('content-length');
  if (length !== '' && Number(length) > ctx.config.maxBodyBytes) throw tooLarge(ctx.config.maxBodyBytes);
  if (ctx.state.publishesInFlight >= ctx.config.maxPublishInflight) {
    throw new HoldfastError('too_many_publishes', `more than LP_MAX_PUBLISH_INFLIGHT (${ctx.config.maxPublishInflight}) publishes are waiting on the broker`, { retryMs: 1000 });
  }
  return format;
}

export function checkId(id: unknown, what: string): string | undefined {
  if (id === undefined || id === '') return undefined;
  if (typeof id !== 'string' || id.length > MAX_ID_LENGTH) {
    throw new HoldfastError('bad_request', `${what} must be a string of 1-${MAX_ID_LENGTH} characters`);
  }
  return id;
}

/**
 * Reads the body, then runs `work` with it while counting it as in flight; answers `work`'s
 * value as JSON, or its error. The body's read errors (413) close the connection.
 */
export function withBody(ctx: ServerContext, res: Res, work: (body: Buffer) => Promise<unknown>): void {
  res.onAborted(() => {
    res.closed = true;
  });
  readBody(res, ctx.config.maxBodyBytes, (err, body) => {
    if (err) return fail(ctx, res, err, true);
    let pending: Promise<unknown>;
    try {
      pending = work(body);
    } catch (e) {
      return fail(ctx, res, e);
    }
    ctx.state.publishesInFlight++;
    // One reaction per publish (no .finally: a promise and a microtask less per publish).
    pending.then(
      (value) => {
        try {
          sendJson(res, 200, value, NO_STORE);
        } finally {
          ctx.inflightDone();
        }
      },
      (e) => {
        try {
          fail(ctx, res, e);
        } finally {
          ctx.inflightDone();
        }
      },
    );
  });
}

export function publishOne(ctx: ServerContext) {
  return (res: Res, req: HttpRequest): void => {
    const ch = checkChannel(pathSegment(req.getUrl().slice(PUBLISH_PREFIX.length)));
    const format = admitPublish(ctx, res, req, true);
    const id = checkId(req.getHeader('idempotency-key'), 'Idempotency-Key');
    withBody(ctx, res, (body) => {
      const json = toJsonText(decodeBody(body, format));
      ctx.metrics.published.inc();
      return ctx.channels.publish({ ch, json, id });
    });
  };
}

export function publishBatch(ctx: ServerContext) {
  return (res: Res, req: HttpRequest): void => {
    const format = admitPublish(ctx, res, req, false);
    withBody(ctx, res, async (body) => {
      const items = parseBatch(decodeBody(body, format, -3), ctx.config.maxBatch);
      if (items.length === 0) return { results: [] };
      try {
        const results = await ctx.channels.publishBatch(items);
        ctx.metrics.published.inc(items.length);
        return { results };
      } catch (err) {
        if (!(err instanceof BatchPublishError)) throw err;
        ctx.metrics.published.inc(err.results.length + err.alsoPublished.length);
        throw new HoldfastError('broker_unavailable', `the broker failed at item ${err.results.length} of ${items.length} (${err.cause.message}): the items before it were published (results); later ones may have been too, so retry them with their ids`, {
          retryMs: 1000,
          body: { results: err.results },
        });
      }
    });
  };
}

/** Validates a batch whole: any bad item rejects all of it. */
function parseBatch(value: unknown, maxBatch: number): PublishItem[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !Array.isArray((value as { messages?: unknown }).messages)) {
    throw new HoldfastError('bad_request', 'batch body must be {"messages":[{"ch":…,"data":…,"id"?:…}, …]}');
  }
  const list = (value as { messages: unknown[] }).messages;
  if (list.length > maxBatch) throw new HoldfastError('bad_request', `batch has ${list.length} items; LP_MAX_BATCH allows ${maxBatch}`);
  return list.map((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new HoldfastError('bad_request', `messages[${i}] must be an object`);
    const { ch, data, id } = item as { ch?: unknown; data?: unknown; id?: unknown };
    if (typeof ch !== 'string') throw new HoldfastError('bad_channel', `messages[${i}].ch must be a channel name`);
    checkChannel(ch, `messages[${i}].ch`);
    if (data === undefined) throw new HoldfastError('bad_request', `messages[${i}].data is missing`);
    return { ch, json: toJsonText(data), id: checkId(id, `messages[${i}].id`) };
  });
}
