/** CORS: LP_CORS_ORIGINS lists the browser origins that may call Holdfast (or `*`). */

import { HoldfastError } from '../errors.js';
import type { Res } from '../respond.js';
import type { HttpRequest } from '../uws.js';

/** The Access-Control-Allow-Origin value for `origin`, or undefined when it is not allowed. */
export function corsOriginFor(allowed: readonly string[], origin: string): string | undefined {
  if (origin === '') return undefined;
  if (allowed.includes('*')) return '*';
  return allowed.includes(origin) ? origin : undefined;
}

const ALLOW_METHODS = 'GET, POST, DELETE';
const ALLOW_HEADERS = 'Authorization, Content-Type, Accept, Idempotency-Key';

/**
 * OPTIONS preflight: 204 for a listed origin; 403 without CORS headers otherwise (thrown, so
 * the route wrapper answers it like any error).
 */
export function preflight(allowed: readonly string[]) {
  return (res: Res, req: HttpRequest): void => {
    const origin = corsOriginFor(allowed, req.getHeader('origin'));
    if (origin === undefined) throw new HoldfastError('forbidden', 'this origin is not in LP_CORS_ORIGINS');
    res.cork(() => {
      res.writeStatus('204 No Content');
      res.writeHeader('Access-Control-Allow-Origin', origin);
      if (origin !== '*') res.writeHeader('Vary', 'Origin');
      res.writeHeader('Access-Control-Allow-Methods', ALLOW_METHODS);
      res.writeHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
      res.writeHeader('Access-Control-Expose-Headers', 'Retry-After');
      res.writeHeader('Access-Control-Max-Age', '600');
      res.endWithoutBody();
    });
    res.closed = true;
  };
}
