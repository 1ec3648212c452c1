/**
 * Publisher auth for publish, channel admin, /push and /disconnect. With LP_PUBLISH_KEY set,
 * `Authorization: Bearer <key>` is required. Without it, only loopback clients may publish,
 * and not through a proxy (a forwarded request could come from anywhere).
 */

import { timingSafeEqual } from 'node:crypto';
import { HoldfastError } from '../errors.js';
import { bearer } from './jwt.js';

export interface PublisherCredentials {
  authorization: string;
  /** The peer address as uWS gives it: 4 bytes (IPv4) or 16 (IPv6). */
  remoteAddress: Uint8Array;
  forwarded: boolean;
}

/** 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104, read from the address bytes (no string building). */
export function isLoopback(a: Uint8Array): boolean {
  if (a.length === 4) return a[0] === 127;
  if (a.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  if (a[10] === 0xff && a[11] === 0xff) return a[12] === 127;
  if (a[10] !== 0 || a[11] !== 0 || a[12] !== 0 || a[13] !== 0 || a[14] !== 0) return false;
  return a[15] === 1;
}

export class PublisherAuth {
  private readonly key: Buffer | undefined;

  constructor(key: string | undefined) {
    this.key = key === undefined ? undefined : Buffer.from(key);
  }

  get open(): boolean {
    return this.key === undefined;
  }

  /** Throws 401/403 when the request may not publish. */
  check(c: PublisherCredentials): void {
    if (this.key) {
      const token = bearer(c.authorization);
      if (token === undefined) throw new HoldfastError('unauthorized', 'publishing needs Authorization: Bearer <LP_PUBLISH_KEY>');
      const given = Buffer.from(token);
      if (given.length !== this.key.length || !timingSafeEqual(given, this.key)) {
        throw new HoldfastError('unauthorized', 'the publish key is wrong');
      }
      return;
    }
    if (c.forwarded) {
      throw new HoldfastError('forbidden', 'LP_PUBLISH_KEY is not set, so publishing is for direct loopback clients only; this request came through a proxy');
    }
    if (!isLoopback(c.remoteAddress)) {
      throw new HoldfastError('forbidden', 'LP_PUBLISH_KEY is not set, so only loopback clients may publish; set LP_PUBLISH_KEY to publish from elsewhere');
    }
  }
}
