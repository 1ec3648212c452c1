/** Reading requests: query strings, path parameters and bodies, with limits. */

import { HoldfastError } from '../errors.js';
import type { Res } from '../respond.js';
import type { HttpRequest } from '../uws.js';

/** Longest request line (path + query) served; longer is 431. Fits 32 names of 200 bytes and a cursor. */
export const MAX_URL_BYTES = 32 * 1024;

/**
 * Body framing a proxy in front could read differently (RFC 9112 §6.1, §6.3): Content-Length
 * headers that disagree, a Transfer-Encoding other than a lone "chunked", or both at once.
 * uWS v20.30 frames by the first Content-Length and takes any Transfer-Encoding that contains
 * "chunked" as chunked, so these are refused before it reads a byte of the body. (uWS itself
 * drops connections whose Content-Length is not a number.) The header lines are walked only
 * when a framing header is present: polls, the hot path, carry none. A first framing header
 * with an empty value hides later ones from that pre-check (uWS then reads no body); nginx and
 * other compliant proxies refuse such heads themselves, and a direct client can only confuse
 * its own connection. Walking every head would close that too, at ~0.8 µs a request.
 */
export function framingError(req: HttpRequest): HoldfastError | undefined {
  if (req.getHeader('content-length') === '' && req.getHeader('transfer-encoding') === '') return undefined;
  let length: string | undefined;
  let lengths = 0;
  let conflicting = false;
  let coding: string | undefined;
  req.forEach((name, value) => {
    if (name === 'content-length') {
      lengths++;
      if (length === undefined) length = value.trim();
      else if (value.trim() !== length) conflicting = true;
    } else if (name === 'transfer-encoding') {
      coding = coding === undefined ? value : `${coding}, ${value}`;
    }
  });
  if (conflicting) return new HoldfastError('bad_request', `the request has ${lengths} Content-Length headers that disagree: send one`);
  if (coding !== undefined) {
    if (coding.trim().toLowerCase() !== 'chunked') {
      return new HoldfastError('bad_request', `Transfer-Encoding ${JSON.stringify(coding.slice(0, 80))} is not supported: send a lone "chunked" or a Content-Length`);
    }
    if (length !== undefined) return new HoldfastError('bad_request', 'the request has both Content-Length and Transfer-Encoding: send one');
  }
  return undefined;
}

/** Parses `a=1&b=2&b=3` into name → values, decoding %XX and `+`; throws 400 on bad escapes. */
export function parseQuery(query: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (query.length === 0) return out;
  for (const part of query.split('&')) {
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    const key = decode(eq === -1 ? part : part.slice(0, eq));
    const value = eq === -1 ? '' : decode(part.slice(eq + 1));
    const list = out.get(key);
    if (list) list.push(value);
    else out.set(key, [value]);
  }
  return out;
}

function decode(s: string): string {
  if (s.indexOf('%') === -1 && s.indexOf('+') === -1) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    throw new HoldfastError('bad_request', `query string has a malformed %-escape near ${JSON.stringify(s.slice(0, 40))}`);
  }
}

/** The one value of a parameter; 400 when given twice. */
export function single(query: Map<string, string[]>, name: string): string | undefined {
  const values = query.get(name);
  if (!values) return undefined;
  if (values.length > 1) throw new HoldfastError('bad_request', `query parameter "${name}" is given ${values.length} times; give it once`);
  return values[0];
}

/** Decodes a path segment (channel names may arrive %-encoded). */
export function pathSegment(raw: string): string {
  if (raw.indexOf('%') === -1) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HoldfastError('bad_channel', 'channel in the path has a malformed %-escape');
  }
}

/** Parses a decimal integer parameter; 400 naming the parameter otherwise. */
export function intParam(raw: string | undefined, name: string, min: number): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) {
    throw new HoldfastError('bad_request', `${name} must be an integer >= ${min}, got ${JSON.stringify(raw.slice(0, 40))}`);
  }
  return Number(raw);
}

/**
 * Reads a request body up to `limit` bytes. uWS hands out chunks that are only valid during
 * the callback, so each is copied. `done` gets the body, or a 413 error once the limit is
 * passed (the rest of the body is then ignored and the connection closed by the caller).
 */
export function readBody(res: Res, limit: number, done: (err: HoldfastError | undefined, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  res.onData((chunk, isLast) => {
    if (over) return;
    size += chunk.byteLength;
    if (size > limit) {
      over = true;
      done(tooLarge(limit), Buffer.alloc(0));
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) done(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
}

export function tooLarge(limit: number): HoldfastError {
  return new HoldfastError('body_too_large', `body is larger than LP_MAX_BODY_BYTES (${limit} bytes)`);
}
