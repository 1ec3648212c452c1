/**
 * Writing answers. Every answer, immediate or late, goes through `send()`: it checks that the
 * client is still there, corks (so status, headers and body leave in one syscall even when
 * called outside the request's own callback), and honours socket backpressure with
 * tryEnd/onWritable, closing a response whose unsent bytes pass the configured limit.
 */

import type { HttpResponse } from './uws.js';
import { HoldfastError, statusText } from './errors.js';

/** uWS lets us attach fields to a response; these are the ones Holdfast uses. */
export interface Res extends HttpResponse {
  /** The response ended or the client went away: nothing may be written any more. */
  closed?: boolean;
  /** Access-Control-Allow-Origin value for this request, when its origin is allowed. */
  corsOrigin?: string;
  /** A HEAD request: the answer carries headers only (set by the route wrapper). */
  head?: boolean;
}

export const JSON_TYPE = 'application/json';
export const MSGPACK_TYPE = 'application/msgpack';

/** What send() reports, so callers can count and put back undelivered seed messages. */
export const enum Sent {
  /** All bytes are with the kernel, or will be as the socket drains. */
  Written,
  /** The client was gone before anything was written. */
  Gone,
  /** The client reads too slowly: the connection was closed. */
  SlowClosed,
  /** Part of the body waits for the socket to drain (onWritable); `closed` is set when done. */
  Pending,
}

export interface SendOptions {
  headers?: readonly string[] | undefined; // flat [name, value, name, value…]
  noStore?: boolean;
  closeConnection?: boolean;
  /** Unsent bytes above which the response is closed (slow reader). */
  maxBackpressure?: number;
  /** The body is compressed with this coding (Content-Encoding). */
  contentEncoding?: 'br' | 'gzip';
  /** The answer depends on Accept-Encoding (Vary), compressed or not. */
  varyAcceptEncoding?: boolean;
}

const STATUS_LINES = new Map<number, string>();
function statusLine(status: number): string {
  let line = STATUS_LINES.get(status);
  if (!line) STATUS_LINES.set(status, (line = `${status} ${statusText(status)}`));
  return line;
}

const NO_OPTIONS: SendOptions = {};

/**
 * Header names and values as bytes. uWS copies bytes as they are but converts every JS string
 * to UTF-8 first: measured with callgrind, a string header costs ~1,800 instructions, bytes a
 * fraction of that, on every answer of a fan-out.
 */
const CONTENT_TYPE = Buffer.from('Content-Type');
const ALLOW_ORIGIN = Buffer.from('Access-Control-Allow-Origin');
const EXPOSE_HEADERS = Buffer.from('Access-Control-Expose-Headers');
const RETRY_AFTER = Buffer.from('Retry-After');
const VARY = Buffer.from('Vary');
const ORIGIN = Buffer.from('Origin');

/** The bytes of a header value that recurs (content types, allowed origins); bounded. */
const valueBytes = new Map<string, Buffer>();
const MAX_CACHED_VALUES = 64;
function headerValue(value: string): Buffer | string {
  const cached = valueBytes.get(value);
  if (cached) return cached;
  if (valueBytes.size >= MAX_CACHED_VALUES) return value;
  const bytes = Buffer.from(value);
  valueBytes.set(value, bytes);
  return bytes;
}

/**
 * `Content-Type: <type>` and the fixed headers that go with it (Cache-Control: no-store,
 * Content-Encoding, Vary: Accept-Encoding) in one header call: uWS writes a value as it is,
 * so the value carries the following header lines. One call instead of up to four per answer
 * (each call is a round trip into uWS: ~1,000 instructions). Only fixed bytes go in here,
 * kept per combination of those headers and content type.
 */
const headBlocks: Map<string, Buffer | string>[] = [];
function typeBlock(contentType: string, options: SendOptions): Buffer | string {
  const encoding = options.contentEncoding === 'br' ? 1 : options.contentEncoding === 'gzip' ? 2 : 0;
  const flags = (options.noStore ? 1 : 0) | (options.varyAcceptEncoding ? 2 : 0) | (encoding << 2);
  const blocks = (headBlocks[flags] ??= new Map());
  let bytes = blocks.get(contentType);
  if (bytes === undefined) {
    let text = contentType.replace(/[\r\n]/g, '');
    if (options.noStore) text += '\r\nCache-Control: no-store';
    if (options.contentEncoding) text += `\r\nContent-Encoding: ${options.contentEncoding}`;
    if (options.varyAcceptEncoding) text += '\r\nVary: Accept-Encoding';
    if (blocks.size >= MAX_CACHED_VALUES) return text;
    blocks.set(contentType, (bytes = Buffer.from(text)));
  }
  return bytes;
}

/**
 * Bodies up to this size are ended in one call: a fresh answer this small fits the socket's
 * send buffer, and in the rare case it does not, uWS keeps the rest and closes the connection
 * if it is still stuck after its 10 s timeout. Larger bodies go through tryEnd, so a slow reader
 * is seen (LP_WRITE_TIMEOUT_MS, LP_MAX_BACKPRESSURE). tryEnd costs an array and a second call
 * per answer.
 */
export const WHOLE_ANSWER_BYTES = 16 * 1024;

/**
 * The write in progress. cork() runs its callback synchronously and send() never re-enters, so
 * one shared callback reading these fields replaces a closure per answer (fan-out writes
 * thousands of answers per flush).
 */
const pending = {
  res: undefined as unknown as Res,
  status: 200,
  contentType: '',
  body: '' as Buffer | string,
  options: NO_OPTIONS,
  outcome: Sent.Written,
};

function writeCorked(): void {
  const { res, status, contentType, body, options } = pending;
  if (status !== 200) res.writeStatus(statusLine(status)); // uWS writes 200 OK itself
  res.writeHeader(CONTENT_TYPE, typeBlock(contentType, options));
  writeCorsHeaders(res);
  const h = options.headers;
  if (h) for (let i = 0; i < h.length; i += 2) res.writeHeader(h[i]!, h[i + 1]!);
  if (res.head) {
    // No body after a HEAD answer, or a keep-alive client reads it as the next answer. uWS
    // v20.30's endWithoutBody(length) closes the connection, so the length is a plain header.
    if (options.closeConnection) res.end('', true); // writes Content-Length: 0
    else {
      res.writeHeader('Content-Length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length));
      res.endWithoutBody();
    }
    res.closed = true;
    pending.outcome = Sent.Written;
    return;
  }
  if (options.closeConnection || options.maxBackpressure === undefined || typeof body === 'string' || body.length <= WHOLE_ANSWER_BYTES) {
    res.end(body, options.closeConnection);
    res.closed = true; // the response object is no longer ours to touch
    pending.outcome = Sent.Written;
    return;
  }
  pending.outcome = writeWithBackpressure(res, body, options.maxBackpressure);
}

/** The CORS answer headers, when the request's origin is allowed (see http/cors.ts). */
export function writeCorsHeaders(res: Res): void {
  if (res.corsOrigin === undefined) return;
  res.writeHeader(ALLOW_ORIGIN, headerValue(res.corsOrigin));
  if (res.corsOrigin !== '*') res.writeHeader(VARY, ORIGIN);
  res.writeHeader(EXPOSE_HEADERS, RETRY_AFTER);
}

export function send(res: Res, status: number, contentType: string, body: Buffer | string, options: SendOptions = NO_OPTIONS): Sent {
  if (res.closed) return Sent.Gone;
  pending.res = res;
  pending.status = status;
  pending.contentType = contentType;
  pending.body = body;
  pending.options = options;
  res.cork(writeCorked);
  pending.res = pending.body = undefined as never; // do not keep the last answer alive
  return pending.outcome;
}

function writeWithBackpressure(res: Res, body: Buffer, limit: number): Sent {
  const start = res.getWriteOffset();
  const [ok, done] = res.tryEnd(body, body.length);
  if (done) {
    res.closed = true;
    return Sent.Written;
  }
  if (!ok && body.length - (res.getWriteOffset() - start) > limit) {
    res.close();
    return Sent.SlowClosed;
  }
  res.onWritable((offset) => {
    const [ok2, done2] = res.tryEnd(body.subarray(offset - start), body.length);
    if (done2) res.closed = true;
    return ok2;
  });
  return Sent.Pending;
}

/** A JSON answer ends with a newline, as curl users and line-oriented tools expect. */
export function sendJson(res: Res, status: number, value: unknown, options?: SendOptions): Sent {
  return send(res, status, JSON_TYPE, JSON.stringify(value) + '\n', options);
}

export function retryAfterHeader(retryMs: number): string[] {
  return ['Retry-After', String(Math.max(1, Math.ceil(retryMs / 1000)))];
}

/** Adds up to ±25% jitter, so shed clients do not come back in one wave. */
export function jitter(ms: number): number {
  return Math.round(ms * (0.75 + Math.random() * 0.5));
}

export function sendError(res: Res, err: HoldfastError, closeConnection = false): Sent {
  const headers: string[] = [];
  const body: { error: { code: string; message: string }; retryMs?: number } = {
    error: { code: err.code, message: err.message },
    ...err.extras.body,
  };
  if (err.extras.retryMs !== undefined) {
    const retryMs = jitter(err.extras.retryMs);
    body.retryMs = retryMs;
    headers.push(...retryAfterHeader(retryMs));
  }
  if (err.extras.allow) headers.push('Allow', err.extras.allow);
  return sendJson(res, err.status, body, { headers, noStore: true, closeConnection });
}
