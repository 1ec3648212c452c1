/** The route table: every endpoint of the contract, then 404/405 for everything else. */

import { HoldfastError } from '../errors.js';
import type { TemplatedApp } from '../uws.js';
import { channelAdmin } from './channels.js';
import { type ServerContext, fail, handle } from './context.js';
import { preflight } from './cors.js';
import { healthz, metrics, readyz } from './ops.js';
import { openapi } from './openapi.js';
import { pollHandler } from './poll.js';
import { publishBatch, publishOne } from './publish.js';
import type { Res } from '../respond.js';
import { seedDisconnect, seedPoll, seedPush } from './seed.js';

/** Path patterns and their methods, for 405's Allow header. */
const ALLOWED: ReadonlyArray<[RegExp, string]> = [
  [/^\/v1\/(poll|sse|ws|openapi\.json)$/, 'GET'],
  [/^\/v1\/publish(\/.*)?$/, 'POST'],
  [/^\/v1\/channels\/.*$/, 'GET, DELETE'],
  [/^\/poll$/, 'GET'],
  [/^\/push$/, 'POST'],
  [/^\/disconnect$/, 'DELETE'],
  [/^\/(healthz|readyz|metrics)$/, 'GET, HEAD'],
];

export function registerRoutes(app: TemplatedApp, ctx: ServerContext): void {
  const ops = { duringDrain: true };
  const opsHead = { duringDrain: true, head: true };
  app.get('/v1/poll', handle(ctx, pollHandler(ctx)));
  app.post('/v1/publish', handle(ctx, publishBatch(ctx)));
  app.post('/v1/publish/*', handle(ctx, publishOne(ctx)));
  app.get('/v1/channels/*', handle(ctx, channelAdmin(ctx, 'info')));
  app.del('/v1/channels/*', handle(ctx, channelAdmin(ctx, 'delete')));
  app.get('/poll', handle(ctx, seedPoll(ctx)));
  app.post('/push', handle(ctx, seedPush(ctx)));
  app.del('/disconnect', handle(ctx, seedDisconnect(ctx)));
  // Load balancers probe with HEAD too: the operations endpoints answer it (headers only).
  for (const [path, fn] of [['/healthz', healthz(ctx)], ['/readyz', readyz(ctx)], ['/metrics', metrics(ctx)]] as const) {
    app.get(path, handle(ctx, fn, ops));
    app.head(path, handle(ctx, fn, opsHead));
  }
  app.get('/v1/openapi.json', handle(ctx, openapi(ctx), ops));
  app.options('/*', handle(ctx, preflight(ctx.config.corsOrigins), ops));
  const unrouted = handle(ctx, (res: Res, req) => {
    const url = req.getUrl();
    const method = req.getMethod().toUpperCase();
    const match = ALLOWED.find(([re]) => re.test(url));
    if (!match) return fail(ctx, res, new HoldfastError('not_found', `no route for ${method} ${url.slice(0, 200)}`));
    fail(ctx, res, new HoldfastError('method_not_allowed', `${method} is not allowed on ${url.slice(0, 200)}; use ${match[1]}`, { allow: match[1] }));
  }, ops);
  app.any('/*', (res: Res, req) => {
    if (req.getMethod() === 'head') res.head = true; // a HEAD error answer has no body either
    unrouted(res, req);
  });
}
