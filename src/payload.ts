/**
 * Published payloads: request bodies in JSON, MessagePack or text, checked once at the door
 * and turned into the one form every later stage shares, the value's compact JSON text.
 * A value with no JSON form (MessagePack bin/ext, non-string map keys, integers beyond 2^53,
 * NaN/Infinity) or nested deeper than MAX_DEPTH is refused with 400, never mangled.
 *
 * "Integer" is about how the number was written, not its value: a JSON number token without
 * fraction or exponent (`12345678901234567890`), or a MessagePack int/uint of any width. Those
 * are refused outside ±(2^53 − 1) (I-JSON, RFC 7493: beyond it, parsing loses digits). A float
 * (`6.02e23`, `1e16`, MessagePack float 64) is a float whatever its value, and is accepted.
 */

import { Unpackr } from 'msgpackr';
import { HoldfastError } from './errors.js';

export const MAX_DEPTH = 100;

export type BodyFormat = 'json' | 'msgpack' | 'text';

const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, int64AsType: 'bigint' });
const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** Maps a Content-Type header to a body format; throws 415 for anything else. */
export function bodyFormat(contentType: string, allowText = true): BodyFormat {
  const semi = contentType.indexOf(';');
  const type = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  if (type === 'application/json') return 'json';
  if (type === 'application/msgpack' || type === 'application/x-msgpack' || type === 'application/vnd.msgpack') return 'msgpack';
  if (allowText && type === 'text/plain') return 'text';
  const allowed = allowText ? 'application/json, application/msgpack or text/plain' : 'application/json or application/msgpack';
  throw new HoldfastError(
    'unsupported_media_type',
    type === '' ? `Content-Type is missing: send ${allowed}` : `Content-Type ${JSON.stringify(type)} is not supported: send ${allowed}`,
  );
}

/**
 * Decodes a body into a checked JSON-compatible value. `baseDepth` < 0 allows for wrapper
 * levels around the payload (a batch's {"messages":[{"data":…}]} is -3).
 */
export function decodeBody(body: Buffer, format: BodyFormat, baseDepth = 0): unknown {
  if (format === 'msgpack') {
    let value: unknown;
    try {
      value = unpackr.unpack(body);
    } catch (err) {
      throw new HoldfastError('bad_msgpack', `body is not valid MessagePack: ${(err as Error).message}`);
    }
    return fromMsgpack(value, baseDepth);
  }
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new HoldfastError(format === 'json' ? 'bad_json' : 'bad_text', 'body is not valid UTF-8');
  }
  if (format === 'text') return text;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const msg = err instanceof RangeError ? 'it is nested too deeply' : (err as Error).message;
    throw new HoldfastError('bad_json', `body is not valid JSON: ${msg}`);
  }
  if (checkJsonValue(value, baseDepth)) checkIntegerTokens(text);
  return value;
}

/** Turns a checked value into the JSON text that is stored and delivered. */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value);
}

function tooDeep(): HoldfastError {
  return new HoldfastError('unsupported_value', `value is nested deeper than ${MAX_DEPTH} levels`);
}

function beyondSafeRange(integer: string | bigint): HoldfastError {
  return new HoldfastError('unsupported_value', `integer ${integer} is beyond 2^53 and would lose precision: send it as a string`);
}

/**
 * Walks a JSON.parse result: depth, and finite numbers (a token like 1e400 parses to Infinity).
 * Returns true when some number has an integral value outside the safe range: only the text
 * can tell whether it was written as an integer (refused) or a float (accepted).
 */
export function checkJsonValue(value: unknown, depth: number): boolean {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new HoldfastError('unsupported_value', 'a number is too large for a 64-bit float (it would become Infinity)');
    return Number.isInteger(value) && !Number.isSafeInteger(value);
  }
  if (value === null || typeof value !== 'object') return false;
  if (depth >= MAX_DEPTH) throw tooDeep();
  let large = false;
  if (Array.isArray(value)) {
    for (const item of value) if (checkJsonValue(item, depth + 1)) large = true;
  } else {
    for (const key in value) if (checkJsonValue((value as Record<string, unknown>)[key], depth + 1)) large = true;
  }
  return large;
}

const MAX_SAFE_DIGITS = String(Number.MAX_SAFE_INTEGER); // "9007199254740991"

/**
 * Scans valid JSON text for integer tokens (no '.', no exponent) beyond ±(2^53 − 1). Runs
 * only when the parsed value holds such a value, so ordinary bodies never pay for it.
 */
export function checkIntegerTokens(text: string): void {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      i++;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      let integer = true;
      for (; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x2e /* . */ || d === 0x65 /* e */ || d === 0x45 /* E */) integer = false;
        else if (!(d === 0x2d || d === 0x2b || (d >= 0x30 && d <= 0x39))) break;
      }
      if (integer) {
        const digits = text.charCodeAt(start) === 0x2d ? text.slice(start + 1, i) : text.slice(start, i);
        // JSON integers have no leading zeros, so length then lexical order is numeric order.
        if (digits.length > MAX_SAFE_DIGITS.length || (digits.length === MAX_SAFE_DIGITS.length && digits > MAX_SAFE_DIGITS)) {
          throw beyondSafeRange(text.slice(start, i));
        }
      }
    } else {
      i++;
    }
  }
}

/** Converts a decoded MessagePack value to its JSON-compatible form, refusing what has none. */
function fromMsgpack(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      // A float wire type, or an int of at most 32 bits: only NaN and ±Infinity lack a JSON form.
      if (!Number.isFinite(value)) throw new HoldfastError('unsupported_value', 'NaN and Infinity have no JSON form');
      return value;
    case 'bigint':
      // An int64/uint64 wire form, which encoders use for small values too: the value decides.
      if (value < -MAX_SAFE_BIG || value > MAX_SAFE_BIG) throw beyondSafeRange(value);
      return Number(value);
    case 'object':
      break;
    default:
      throw new HoldfastError('unsupported_value', `MessagePack value of type ${typeof value} has no JSON form`);
  }
  if (value === null) return null;
  if (depth >= MAX_DEPTH) throw tooDeep();
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = fromMsgpack(value[i], depth + 1);
    return out;
  }
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) {
      if (typeof k !== 'string') {
        throw new HoldfastError('unsupported_value', 'MessagePack map keys must be strings to have a JSON form');
      }
      // defineProperty, not assignment: a "__proto__" key must stay data, as in JSON.parse.
      Object.defineProperty(out, k, { value: fromMsgpack(v, depth + 1), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  if (value instanceof Uint8Array) throw new HoldfastError('unsupported_value', 'MessagePack bin values have no JSON form');
  throw new HoldfastError('unsupported_value', 'MessagePack extension types (including timestamps) have no JSON form');
}
