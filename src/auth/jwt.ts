/**
 * Subscriber tokens: HS256 JWTs with a required `exp` and a `channels` claim (names or
 * `prefix*` patterns). Any standard JWT library can mint them. A verified token is cached
 * (bounded) with its compiled grants, so a client's re-poll costs a Map lookup, not an HMAC.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import { HoldfastError } from '../errors.js';
import { Grants } from '../names.js';

export interface VerifiedToken {
  /** Expiry, seconds since the epoch (leeway not included). */
  exp: number;
  grants: Grants;
}

const CACHE_SIZE = 10_000;

export class TokenVerifier {
  private readonly cache = new Map<string, VerifiedToken>();

  constructor(
    private readonly secret: string,
    private readonly leewayS: number,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The token's grants; throws 401 for a missing, malformed, forged or expired token. */
  verify(token: string): Grants {
    let verified = this.cache.get(token);
    if (!verified) {
      verified = this.check(token);
      if (this.cache.size >= CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(token, verified);
    }
    if (this.nowMs() / 1000 > verified.exp + this.leewayS) {
      this.cache.delete(token);
      throw unauthorized('token has expired: fetch a new one');
    }
    return verified.grants;
  }

  private check(token: string): VerifiedToken {
    const parts = token.split('.');
    if (parts.length !== 3 || token.length > 8192) throw unauthorized('token is not a JWT (header.payload.signature)');
    const [h, p, s] = parts as [string, string, string];
    const header = parseJson(h);
    if (header?.alg !== 'HS256') throw unauthorized('token must be signed with HS256');
    const expected = createHmac('sha256', this.secret).update(`${h}.${p}`).digest();
    const given = Buffer.from(s, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw unauthorized('token signature is invalid');
    const payload = parseJson(p);
    if (!payload) throw unauthorized('token payload is not a JSON object');
    if (typeof payload.exp !== 'number' || !Number.isFinite(payload.exp)) throw unauthorized('token has no numeric "exp" claim');
    if (typeof payload.nbf === 'number' && this.nowMs() / 1000 + this.leewayS < payload.nbf) throw unauthorized('token is not valid yet (nbf)');
    const channels = payload.channels;
    if (!Array.isArray(channels) || !channels.every((c) => typeof c === 'string')) {
      throw unauthorized('token has no "channels" claim (an array of channel names or prefix* patterns)');
    }
    return { exp: payload.exp, grants: new Grants(channels as string[]) };
  }
}

function parseJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function unauthorized(message: string): HoldfastError {
  return new HoldfastError('unauthorized', message);
}

/** The bearer token of an Authorization header, or undefined. */
export function bearer(authorization: string): string | undefined {
  if (authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = authorization.slice(7).trim();
  return token.length > 0 ? token : undefined;
}

/** Mints a token (for tests, the demo and the README's examples). */
export function signToken(secret: string, claims: { channels: string[]; exp: number; [k: string]: unknown }): string {
  const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}
