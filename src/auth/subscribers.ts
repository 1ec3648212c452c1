/**
 * Subscriber auth for one request (a poll's channels, a seed poll's clientId): which names need
 * a token, and whether the token grants them all. Answers synchronously when it can (only
 * public names, or a token verified before) and returns a Promise only on a token cache miss,
 * so a re-poll never leaves the request's own callback.
 */

import { HoldfastError } from '../errors.js';
import { type Grants, hasPrefix } from '../names.js';
import type { TokenVerifier } from './jwt.js';

export interface Guarded {
  /** Names the request follows. */
  readonly names: readonly string[];
  /** What they are, for messages: "these channels" or "this clientId". */
  readonly what: 'channel' | 'clientId';
}

/**
 * Throws 401/403 when the answer is known now; returns undefined when the request may go on,
 * or a Promise (rejecting with 401/403/503) when the token must be verified first.
 */
export function authorizeSubscriber(
  tokens: TokenVerifier | undefined,
  publicPrefixes: readonly string[],
  request: Guarded,
  token: string | undefined,
): Promise<void> | undefined {
  if (!tokens) return undefined;
  const guarded = request.names.filter((name) => !hasPrefix(name, publicPrefixes));
  if (guarded.length === 0) return undefined; // a poll of only public channels ignores any token
  if (!token) {
    const who = request.what === 'channel' ? 'these channels need' : 'this clientId needs';
    throw new HoldfastError('unauthorized', `${who} a token: Authorization: Bearer <jwt> or ?token=<jwt>`);
  }
  const grants = tokens.cached(token);
  if (grants) return checkGrants(grants, guarded, request.what);
  return tokens.verify(token).then((g) => checkGrants(g, guarded, request.what));
}

function checkGrants(grants: Grants, guarded: readonly string[], what: Guarded['what']): undefined {
  const denied = guarded.filter((name) => !grants.allows(name));
  if (denied.length === 0) return undefined;
  throw new HoldfastError(
    'forbidden',
    what === 'channel' ? `the token does not grant ${JSON.stringify(denied.slice(0, 5))}` : `the token does not grant clientId ${JSON.stringify(denied[0])}`,
  );
}
