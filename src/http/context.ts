/** What every HTTP handler shares, and the wrapper that turns thrown errors into answers. */

import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
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
import { MAX_URL_BYTES } from './request.js';

export interface ServerContext {
  readonly config: Config;
  readonly broker: Broker;
  readonly hub: PollHub;
  readonly seed: SeedHub;
  readonly metrics: Metrics;
  readonly publisher: PublisherAuth;
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
}

/**
 * Wraps a route handler: sets the CORS origin, refuses new work while draining, rejects
 * oversized request lines, and answers anything thrown with its JSON error.
 */
export function handle(ctx: ServerContext, fn: Handler, options: HandleOptions = {}): Handler {
  return (res, req) => {
    try {
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
