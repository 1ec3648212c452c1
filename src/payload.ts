/**
 * Published payloads: request bodies in JSON, MessagePack or text, checked once at the door
 * and turned into the one form every later stage shares, the value's compact JSON text.
 * A value with no JSON form (MessagePack bin/ext, non-string map keys, integers beyond 2^53,
 * NaN/Infinity) or nested deeper than MAX_DEPTH is refused with 400, never mangled.
 */

import { Unpackr } from 'msgpackr';
import { HoldfastError } from './errors.js';

export const MAX_DEPTH = 100;

export type BodyFormat = 'json' | 'msgpack' | 'text';

const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, int64AsType: 'bigint' });
const utf8 = new TextDecoder('utf-8', { fatal: true });

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
  checkJsonValue(value, baseDepth);
  return value;
}

/** Turns a checked value into the JSON text that is stored and delivered. */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value);
}

function tooDeep(): HoldfastError {
  return new HoldfastError('unsupported_value', `value is nested deeper than ${MAX_DEPTH} levels`);
}

function checkNumber(n: number): void {
  if (!Number.isFinite(n)) throw new HoldfastError('unsupported_value', 'NaN and Infinity have no JSON form');
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) {
    throw new HoldfastError('unsupported_value', `integer ${n} is beyond 2^53 and would lose precision: send it as a string`);
  }
}

/** Walks a JSON.parse result: depth and integer range. */
export function checkJsonValue(value: unknown, depth: number): void {
  if (typeof value === 'number') return checkNumber(value);
  if (value === null || typeof value !== 'object') return;
  if (depth >= MAX_DEPTH) throw tooDeep();
  if (Array.isArray(value)) {
    for (const item of value) checkJsonValue(item, depth + 1);
  } else {
    for (const key in value) checkJsonValue((value as Record<string, unknown>)[key], depth + 1);
  }
}

/** Converts a decoded MessagePack value to its JSON-compatible form, refusing what has none. */
function fromMsgpack(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      checkNumber(value);
      return value;
    case 'bigint':
      throw new HoldfastError('unsupported_value', `integer ${value} is beyond 2^53 and would lose precision: send it as a string`);
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
