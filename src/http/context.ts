/** What every HTTP handler shares, and the wrapper that turns thrown errors into answers. */

import type { Logger } from 'pino';
import type { Broker, ChannelStore } from '../broker/broker.js';
import type { Config } from '../config.js';
import { HoldfastError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { PollHub } from '../poll/hub.js';
import type { SeedHub } from '../seed/seed-hub.js';
import type { HttpRequest } from '../uws.js';
import type { TokenVerifier } from '../auth/jwt.js';
import type { PublisherAuth } from '../auth/publisher.js';
import { type Res, sendError } from '../respond.js';
import { corsOriginFor } from './cors.js';
import { MAX_URL_BYTES, framingError } from './request.js';

export interface ServerContext {
  readonly config: Config;
  /** Lifecycle, readiness and the seed queues. */
  readonly broker: Broker;
  /**
   * Where channels are published to and read from: the broker, or on Redis the recent-history
   * cache in front of it (which must see this process's publishes to answer reads at once).
   */
  readonly channels: ChannelStore;
  readonly hub: PollHub;
  readonly seed: SeedHub;
  readonly metrics: Metrics;
  readonly publisher: PublisherAuth;
  /** Subscriber token verifier; undefined when no LP_JWT_* key is set (polls need no token). */
  readonly tokens: TokenVerifier | undefined;
  readonly log: Logger;
  readonly state: { draining: boolean; publishesInFlight: number };
  /** Called when a publish leaves the in-flight count (wakes a drain waiting for zero). */
  inflightDone(): void;
}

export type Handler = (res: Res, req: HttpRequest) => void;

export interface HandleOptions {
  /** Still served while draining (health and metrics). */
  duringDrain?: boolean;
  /** A HEAD route: answers carry the headers of the GET answer and no body. */
  head?: boolean;
}

/**
 * Wraps a route handler: refuses ambiguous body framing, sets the CORS origin, refuses new
 * work while draining, rejects oversized request lines, and answers anything thrown with its
 * JSON error.
 */
export function handle(ctx: ServerContext, fn: Handler, options: HandleOptions = {}): Handler {
  const head = options.head === true;
  return (res, req) => {
    try {
      if (head) res.head = true;
      const framing = framingError(req);
      if (framing) return refuseFraming(ctx, res, framing);
      if (ctx.config.corsOrigins.length > 0) {
        const origin = corsOriginFor(ctx.config.corsOrigins, req.getHeader('origin'));
        if (origin !== undefined) res.corsOrigin = origin;
      }
      if (ctx.state.draining && !options.duringDrain) {
        throw new HoldfastError('draining', 'this server is shutting down; retry on another', { retryMs: 1000 });
      }
      if (req.getUrl().length + (req.getQuery() ?? '').length > MAX_URL_BYTES) {
        throw new HoldfastError('headers_too_large', `request line is longer than ${MAX_URL_BYTES} bytes`);
      }
      fn(res, req);
    } catch (err) {
      fail(ctx, res, err);
    }
  };
}

/**
 * 400 and close the connection (RFC 9112 §6.3), on the next loop turn: uWS parses the rest of
 * this read before returning to the loop, and bytes smuggled behind this request must find its
 * answer still pending (uWS then drops the connection unread) rather than be served as a
 * request of their own, which an answer written now would allow.
 */
function refuseFraming(ctx: ServerContext, res: Res, err: HoldfastError): void {
  res.onAborted(() => {
    res.closed = true;
  });
  setImmediate(() => fail(ctx, res, err, true));
}

/**
 * Continues a request after async work its handler started (a token verification on a cache
 * miss). The HttpRequest is gone by then: `next` may use only what the handler copied out of it.
 */
export function resumeAfter(ctx: ServerContext, res: Res, pending: Promise<void>, next: () => void): void {
  res.onAborted(() => {
    res.closed = true;
  });
  pending
    .then(() => {
      if (res.closed) return;
      if (ctx.state.draining) throw new HoldfastError('draining', 'this server is shutting down; retry on another', { retryMs: 1000 });
      next();
    })
    .catch((err) => fail(ctx, res, err));
}

/** Answers an error: a HoldfastError as itself, anything else as a logged 500. */
export function fail(ctx: ServerContext, res: Res, err: unknown, closeConnection = false): void {
  let error: HoldfastError;
  if (err instanceof HoldfastError) {
    error = err;
  } else {
    ctx.log.error({ err }, 'internal error');
    error = new HoldfastError('internal', 'internal error; it has been logged');
  }
  ctx.metrics.rejected.inc({ reason: error.code });
  if (!res.closed) sendError(res, error, closeConnection);
}
