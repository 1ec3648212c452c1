/**
 * Publisher auth for publish, channel admin, /push and /disconnect. With LP_PUBLISH_KEY set,
 * `Authorization: Bearer <key>` is required. Without it, only loopback clients may publish,
 * and not through a proxy: a relayed request could come from anywhere.
 *
 * What the keyless check trusts: the TCP peer address, nothing else. Headers can only refuse a
 * request, never admit one: any proxy header (below), or a PROXY protocol preamble, means the
 * request was relayed, so it is refused even from 127.0.0.1. A relay that adds neither (a TCP
 * tunnel, a port-forward, a sidecar that sets no header) makes its clients look local; behind
 * anything like that, set LP_PUBLISH_KEY.
 */

import { timingSafeEqual } from 'node:crypto';
import { HoldfastError } from '../errors.js';
import type { HttpRequest, HttpResponse } from '../uws.js';
import { bearer } from './bearer.js';

/** Headers that proxies, load balancers and CDNs add to a relayed request (lowercase). */
const PROXY_HEADERS: ReadonlySet<string> = new Set([
  'forwarded', // RFC 7239
  'via', // RFC 9110: every HTTP proxy should add it
  'x-real-ip', // nginx, Traefik
  'true-client-ip', // Akamai, Cloudflare Enterprise
  'cf-connecting-ip', // Cloudflare
  'fastly-client-ip', // Fastly
  'cdn-loop', // RFC 8586: CDNs
  'x-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'x-arr-clientip', // Azure / IIS ARR
  'x-proxyuser-ip',
]);
/** Header families: X-Forwarded-For/-Host/-Proto/-Port/-Prefix/-Client-Cert…, Envoy and Istio sidecars. */
const PROXY_HEADER_PREFIXES: readonly string[] = ['x-forwarded-', 'x-envoy-'];

export function isProxyHeader(lowercaseName: string): boolean {
  if (PROXY_HEADERS.has(lowercaseName)) return true;
  for (const p of PROXY_HEADER_PREFIXES) if (lowercaseName.startsWith(p)) return true;
  return false;
}

/** The first proxy header of a request (its lowercase name), or undefined. */
function proxyHeaderOf(req: HttpRequest): string | undefined {
  let found: string | undefined;
  req.forEach((name) => {
    if (found === undefined && isProxyHeader(name)) found = name;
  });
  return found;
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

const NO_KEY = 'LP_PUBLISH_KEY is not set, so publishing is for direct loopback clients only';

export class PublisherAuth {
  private readonly key: Buffer | undefined;

  constructor(key: string | undefined) {
    this.key = key === undefined ? undefined : Buffer.from(key);
  }

  /** No key: loopback-only publishing. */
  get open(): boolean {
    return this.key === undefined;
  }

  /**
   * Throws 401/403 when the request may not publish. Reads the request, so call it during the
   * handler's synchronous part.
   */
  authorize(req: HttpRequest, res: HttpResponse): void {
    if (this.key) {
      const token = bearer(req.getHeader('authorization'));
      if (token === undefined) throw new HoldfastError('unauthorized', 'publishing needs Authorization: Bearer <LP_PUBLISH_KEY>');
      const given = Buffer.from(token);
      if (given.length !== this.key.length || !timingSafeEqual(given, this.key)) {
        throw new HoldfastError('unauthorized', 'the publish key is wrong');
      }
      return;
    }
    const header = proxyHeaderOf(req);
    if (header !== undefined) {
      throw new HoldfastError('forbidden', `${NO_KEY}; this request came through a proxy (it carries ${header}): set LP_PUBLISH_KEY to publish through one`);
    }
    if (res.getProxiedRemoteAddress().byteLength > 0) {
      throw new HoldfastError('forbidden', `${NO_KEY}; this connection came through a proxy (PROXY protocol): set LP_PUBLISH_KEY to publish through one`);
    }
    if (!isLoopback(new Uint8Array(res.getRemoteAddress()))) {
      throw new HoldfastError('forbidden', `${NO_KEY}; set LP_PUBLISH_KEY to publish from elsewhere`);
    }
  }
}
