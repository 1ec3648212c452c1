/** The route table: every endpoint of the contract, then 404/405 for everything else. */

import { HoldfastError } from '../errors.js';
import type { TemplatedApp } from '../uws.js';
import { channelAdmin } from './channels.js';
import { type ServerContext, fail, handle } from './context.js';
import { preflight } from './cors.js';
import { healthz, metrics, readyz } from './ops.js';
import { pollHandler } from './poll.js';
import { publishBatch, publishOne } from './publish.js';
import type { Res } from '../respond.js';
import { seedDisconnect, seedPoll, seedPush } from './seed.js';

/** Path patterns and their methods, for 405's Allow header. */
const ALLOWED: ReadonlyArray<[RegExp, string]> = [
  [/^\/v1\/poll$/, 'GET'],
  [/^\/v1\/publish(\/.*)?$/, 'POST'],
  [/^\/v1\/channels\/.*$/, 'GET, DELETE'],
  [/^\/poll$/, 'GET'],
  [/^\/push$/, 'POST'],
  [/^\/disconnect$/, 'DELETE'],
  [/^\/(healthz|readyz|metrics)$/, 'GET'],
];

export function registerRoutes(app: TemplatedApp, ctx: ServerContext): void {
  const ops = { duringDrain: true };
  app.get('/v1/poll', handle(ctx, pollHandler(ctx)));
  app.post('/v1/publish', handle(ctx, publishBatch(ctx)));
  app.post('/v1/publish/*', handle(ctx, publishOne(ctx)));
  app.get('/v1/channels/*', handle(ctx, channelAdmin(ctx, 'info')));
  app.del('/v1/channels/*', handle(ctx, channelAdmin(ctx, 'delete')));
  app.get('/poll', handle(ctx, seedPoll(ctx)));
  app.post('/push', handle(ctx, seedPush(ctx)));
  app.del('/disconnect', handle(ctx, seedDisconnect(ctx)));
  app.get('/healthz', handle(ctx, healthz(ctx), ops));
  app.get('/readyz', handle(ctx, readyz(ctx), ops));
  app.get('/metrics', handle(ctx, metrics(ctx), ops));
  app.options('/*', preflight(ctx));
  app.any('/*', handle(ctx, (res: Res, req) => {
    const url = req.getUrl();
    const method = req.getMethod().toUpperCase();
    const match = ALLOWED.find(([re]) => re.test(url));
    if (!match) return fail(ctx, res, new HoldfastError('not_found', `no route for ${method} ${url.slice(0, 200)}`));
    fail(ctx, res, new HoldfastError('method_not_allowed', `${method} is not allowed on ${url.slice(0, 200)}; use ${match[1]}`, { allow: match[1] }));
  }, ops));
}
