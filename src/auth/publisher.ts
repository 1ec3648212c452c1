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
  remoteAddress: string;
  forwarded: boolean;
}

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address === '0000:0000:0000:0000:0000:0000:0000:0001' ||
    address.startsWith('::ffff:127.') || address.startsWith('0000:0000:0000:0000:0000:ffff:7f');
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
