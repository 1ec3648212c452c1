/**
 * Subscriber tokens: JWTs with a required `exp` and a `channels` claim (names or `prefix*`
 * patterns), verified with `jose` against LP_JWT_SECRET, LP_JWT_PUBLIC_KEY and/or
 * LP_JWT_JWKS_URL (see keys.ts for which `alg` each accepts), plus LP_JWT_AUDIENCE/ISSUER.
 *
 * Verification is async (WebCrypto, and a JWKS fetch when a token names an unknown `kid`), so
 * it runs only on a cache miss: a verified token is kept, keyed by its exact text, with its
 * compiled grants and expiry, and a client's re-poll costs one Map lookup.
 *
 * Strict: a token has exactly one accepted spelling. Each part must be canonical base64url
 * (no padding, no stray characters, unused bits zero), because jose's decoder ignores some of
 * those and a cache keyed by spelling must not hold one token under many keys. `crit` is
 * refused (no extension is supported), and `alg` must be in the key's set.
 */

import { createHmac } from 'node:crypto';
import { type JWTPayload, type JWTVerifyGetKey, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { HoldfastError } from '../errors.js';
import { Grants } from '../names.js';
import { ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, type PublicKey, readPublicKey } from './keys.js';

export interface TokenKeys {
  /** LP_JWT_SECRET: HS256/384/512. */
  secret?: string | undefined;
  /** LP_JWT_PUBLIC_KEY, read by readPublicKey(). */
  publicKey?: PublicKey | undefined;
  /** LP_JWT_JWKS_URL. */
  jwksUrl?: string | undefined;
}

export interface VerifierOptions {
  /** LP_JWT_LEEWAY_S: clock leeway for exp and nbf. */
  leewayS: number;
  audience?: string | undefined;
  issuer?: string | undefined;
  /**
   * Least time between two JWKS fetches triggered by unknown `kid`s (jose's own default is
   * 30 s). A rotated-in key is found at most this long after the previous fetch; a flood of
   * made-up kids costs the identity provider one fetch per this interval per process.
   * @default 5000
   */
  jwksCooldownMs?: number;
  /** The JWKS is refetched when older than this, even if every kid is known. @default 600000 */
  jwksMaxAgeMs?: number;
  nowMs?: () => number;
}

interface Verified {
  /** Seconds since the epoch (leeway not included). */
  exp: number;
  grants: Grants;
}

/** Bounds of the verified-token cache: entries, and characters of token text. */
const CACHE_ENTRIES = 10_000;
const CACHE_CHARS = 16 * 1024 * 1024;
/** Retry hint when the JWKS cannot be fetched. */
const JWKS_RETRY_MS = 2000;

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const PARTS = ['header', 'payload', 'signature'] as const;

export class TokenVerifier {
  private readonly cache = new Map<string, Verified>();
  private cacheChars = 0;
  private readonly inflight = new Map<string, Promise<Verified>>();
  private readonly secret: Uint8Array | undefined;
  private readonly publicKey: PublicKey | undefined;
  private readonly jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  private readonly algorithms: string[];
  private readonly leewayS: number;
  private readonly audience: string | undefined;
  private readonly issuer: string | undefined;
  private readonly nowMs: () => number;

  /** `keys` may be a bare HS secret (LP_JWT_SECRET), as the server built it before jose. */
  constructor(keys: TokenKeys | string, options: VerifierOptions | number) {
    const k: TokenKeys = typeof keys === 'string' ? { secret: keys } : keys;
    const o: VerifierOptions = typeof options === 'number' ? { leewayS: options } : options;
    this.secret = k.secret ? new TextEncoder().encode(k.secret) : undefined;
    this.publicKey = k.publicKey;
    this.jwks = k.jwksUrl
      ? createRemoteJWKSet(new URL(k.jwksUrl), { cooldownDuration: o.jwksCooldownMs ?? 5000, cacheMaxAge: o.jwksMaxAgeMs ?? 600_000 })
      : undefined;
    const algs = new Set<string>();
    if (this.secret) for (const a of HMAC_ALGORITHMS) algs.add(a);
    if (this.publicKey) for (const a of this.publicKey.algorithms) algs.add(a);
    if (this.jwks) for (const a of ASYMMETRIC_ALGORITHMS) algs.add(a);
    if (algs.size === 0) throw new Error('TokenVerifier needs at least one key');
    this.algorithms = [...algs];
    this.leewayS = o.leewayS;
    this.audience = o.audience;
    this.issuer = o.issuer;
    this.nowMs = o.nowMs ?? Date.now;
  }

  /** The algorithms tokens may be signed with, for messages and the start-up log. */
  get acceptedAlgorithms(): readonly string[] {
    return this.algorithms;
  }

  /** Fetches the JWKS now (start-up), so the first polls do not wait for it. */
  async prefetch(): Promise<void> {
    await this.jwks?.reload();
  }

  /**
   * The hot path: the grants of a token verified before, or undefined when it has not been
   * (call verify()). Throws 401 when a cached token has expired since.
   */
  cached(token: string): Grants | undefined {
    const hit = this.cache.get(token);
    if (!hit) return undefined;
    if (this.nowMs() / 1000 >= hit.exp + this.leewayS) {
      this.forget(token);
      throw unauthorized('token has expired: fetch a new one');
    }
    return hit.grants;
  }

  /**
   * When a verified token stops being accepted (ms since the epoch, leeway included), so a
   * stream can end then. Call it only for a token verify() accepted: one the cache has dropped
   * since still ends at its exp claim (required at verification), never later.
   */
  expiresAt(token: string): number {
    const hit = this.cache.get(token);
    if (hit) return (hit.exp + this.leewayS) * 1000;
    try {
      const exp = decodeJwt(token).exp;
      return exp === undefined ? this.nowMs() : (exp + this.leewayS) * 1000;
    } catch {
      return this.nowMs();
    }
  }

  /** Verifies a token (or takes it from the cache); rejects with 401, or 503 when the JWKS is unreachable. */
  async verify(token: string): Promise<Grants> {
    const hit = this.cached(token);
    if (hit) return hit;
    let pending = this.inflight.get(token);
    if (!pending) {
      pending = this.check(token).finally(() => this.inflight.delete(token));
      this.inflight.set(token, pending);
    }
    const verified = await pending;
    this.remember(token, verified);
    return verified.grants;
  }

  private async check(token: string): Promise<Verified> {
    checkSpelling(token);
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw unauthorized('token header is not a JSON object');
    }
    if (header.crit !== undefined) throw unauthorized('token header has "crit": no JWS extension is accepted');
    if (typeof header.alg !== 'string' || !this.algorithms.includes(header.alg)) {
      throw unauthorized(`token alg ${JSON.stringify(header.alg ?? null)} is not accepted; this server accepts ${this.algorithms.join(', ')}`);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keyFor, {
        algorithms: this.algorithms,
        audience: this.audience,
        issuer: this.issuer,
        clockTolerance: this.leewayS,
        requiredClaims: ['exp'],
        currentDate: new Date(this.nowMs()),
      }));
    } catch (err) {
      throw explain(err, this);
    }
    const channels = payload.channels;
    if (!Array.isArray(channels) || !channels.every((c) => typeof c === 'string')) {
      throw unauthorized('token has no "channels" claim (an array of channel names or prefix* patterns)');
    }
    return { exp: payload.exp!, grants: new Grants(channels as string[]) };
  }

  /** Which key verifies a token: the secret for HS*, else the PEM key or the JWKS (by kid). */
  private readonly keyFor: JWTVerifyGetKey = async (header, token) => {
    const alg = header.alg;
    if (HMAC_ALGORITHMS.includes(alg)) return this.secret!;
    const pem = this.publicKey?.algorithms.includes(alg) ? this.publicKey : undefined;
    // A token naming a kid comes from the JWKS when there is one; the PEM key has no kid.
    if (this.jwks && (header.kid !== undefined || !pem)) {
      try {
        return await this.jwks(header, token);
      } catch (err) {
        if (err instanceof errors.JWKSNoMatchingKey) {
          throw unauthorized(`no key in LP_JWT_JWKS_URL matches the token (kid ${JSON.stringify(header.kid ?? null)}, alg ${alg})`);
        }
        if (err instanceof errors.JWKSMultipleMatchingKeys) throw unauthorized('several JWKS keys match the token: it must name its key with "kid"');
        throw new HoldfastError('auth_unavailable', `cannot fetch the JWKS from LP_JWT_JWKS_URL (${(err as Error).message}); retry shortly`, { retryMs: JWKS_RETRY_MS });
      }
    }
    return pem!.key;
  };

  private remember(token: string, verified: Verified): void {
    if (this.cache.has(token)) return;
    // Oldest first (Map order); a forgotten token is just verified again.
    for (const old of this.cache.keys()) {
      if (this.cache.size < CACHE_ENTRIES && this.cacheChars + token.length <= CACHE_CHARS) break;
      this.forget(old);
    }
    this.cache.set(token, verified);
    this.cacheChars += token.length;
  }

  private forget(token: string): void {
    if (this.cache.delete(token)) this.cacheChars -= token.length;
  }
}

/** Three parts of canonical base64url: the one spelling a token may have. */
function checkSpelling(token: string): void {
  const parts = token.split('.');
  if (parts.length !== 3) throw unauthorized('token is not a JWT (three base64url parts: header.payload.signature)');
  for (let i = 0; i < 3; i++) {
    const part = parts[i]!;
    // (An empty signature is well spelled; `alg: none` is refused by the alg check.)
    if ((part.length === 0 && i < 2) || !BASE64URL.test(part) || part.length % 4 === 1 || Buffer.from(part, 'base64url').toString('base64url') !== part) {
      throw unauthorized(`token ${PARTS[i]} is not canonical base64url (no padding, no other characters; a token has one spelling)`);
    }
  }
}

/** jose's errors, as messages that say what to fix. */
function explain(err: unknown, v: TokenVerifier): HoldfastError {
  if (err instanceof HoldfastError) return err;
  if (err instanceof errors.JWTExpired) return unauthorized('token has expired: fetch a new one');
  if (err instanceof errors.JWSSignatureVerificationFailed) return unauthorized('token signature is invalid');
  if (err instanceof errors.JOSEAlgNotAllowed) return unauthorized(`token alg is not accepted; this server accepts ${v.acceptedAlgorithms.join(', ')}`);
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return unauthorized(`token has no "${err.claim}" claim`);
    if (err.claim === 'nbf' && err.reason === 'check_failed') return unauthorized('token is not valid yet (nbf)');
    if (err.claim === 'aud' || err.claim === 'iss') return unauthorized(`token "${err.claim}" is not the one LP_JWT_${err.claim === 'aud' ? 'AUDIENCE' : 'ISSUER'} requires`);
    return unauthorized(`token claim "${err.claim}" is invalid: ${err.message}`);
  }
  if (err instanceof errors.JOSEError) return unauthorized(`token is not a valid JWT: ${err.message}`);
  if (err instanceof TypeError) return unauthorized(`token cannot be verified with the configured key: ${err.message}`);
  return err as HoldfastError; // a bug: fail() logs it as a 500
}

function unauthorized(message: string): HoldfastError {
  return new HoldfastError('unauthorized', message);
}

/**
 * The verifier the configuration asks for (undefined: no key set, polls need no token). Reads
 * LP_JWT_PUBLIC_KEY and starts fetching the JWKS; throws ConfigError for a bad key file.
 */
export function createTokenVerifier(config: Config, log?: Logger): TokenVerifier | undefined {
  if (!config.jwtSecret && !config.jwtPublicKeyFile && !config.jwtJwksUrl) return undefined;
  const verifier = new TokenVerifier(
    {
      secret: config.jwtSecret,
      publicKey: config.jwtPublicKeyFile ? readPublicKey(config.jwtPublicKeyFile) : undefined,
      jwksUrl: config.jwtJwksUrl,
    },
    { leewayS: config.jwtLeewayS, audience: config.jwtAudience, issuer: config.jwtIssuer },
  );
  log?.info({ algorithms: verifier.acceptedAlgorithms }, 'subscriber tokens required (except LP_PUBLIC_PREFIXES)');
  if (config.jwtJwksUrl) {
    verifier.prefetch().then(
      () => log?.info({ url: config.jwtJwksUrl }, 'JWKS fetched'),
      (err: Error) => log?.warn({ url: config.jwtJwksUrl, err: err.message }, 'cannot fetch the JWKS yet; polls needing a token get 503 until it can be fetched'),
    );
  }
  return verifier;
}

/**
 * Mints an HS256 token synchronously (tests, the demo). Production code should mint with jose
 * or an identity provider; see the README.
 */
export function signToken(secret: string, claims: { channels: string[]; exp: number; [k: string]: unknown }): string {
  const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}
