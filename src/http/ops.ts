/** Operations endpoints: liveness, readiness, Prometheus metrics. */

import type { ServerContext } from './context.js';
import type { Res } from '../respond.js';
import { send, sendJson } from '../respond.js';
import { HoldfastError } from '../errors.js';
import { fail } from './context.js';

export function healthz(_ctx: ServerContext) {
  return (res: Res): void => {
    sendJson(res, 200, { status: 'ok' }, { noStore: true });
  };
}

export function readyz(ctx: ServerContext) {
  return (res: Res): void => {
    if (ctx.state.draining) return fail(ctx, res, new HoldfastError('draining', 'draining', { retryMs: 1000 }));
    if (!ctx.broker.isReady()) return fail(ctx, res, new HoldfastError('broker_unavailable', 'the broker is not connected', { retryMs: 1000 }));
    sendJson(res, 200, { status: 'ready', broker: ctx.broker.kind }, { noStore: true });
  };
}

export function metrics(ctx: ServerContext) {
  return (res: Res): void => {
    res.onAborted(() => {
      res.closed = true;
    });
    ctx.metrics.registry.metrics().then(
      (text) => send(res, 200, ctx.metrics.registry.contentType, text, { noStore: true }),
      (err) => fail(ctx, res, err),
    );
  };
}
