/**
 * holdfast/client — a subscriber for browsers and Node 20 over WebSocket, Server-Sent Events
 * or long polls, and a publish helper for Node backends. Zero dependencies: it needs only
 * `fetch` and `AbortController` (and a WebSocket constructor for that transport).
 *
 *   const sub = subscribe({ url: 'https://rt.example.com', channels: ['user:42', 'news'],
 *                           onMessage: (m) => console.log(m.ch, m.seq, m.data) });
 *   // later: sub.setChannels([...]); sub.stop(); localStorage.cursor = sub.cursor;
 *
 * What it gets right, because most real-time bugs live in the client:
 * - one cursor across answers, timeouts, errors, reconnects and transports, and any seq it has
 *   already delivered is dropped, so the application sees each message once;
 * - `transport: "auto"` tries WebSocket, then SSE, then long polls, and remembers what worked
 *   (a proxy that blocks WebSocket upgrades, or buffers event streams, costs one attempt);
 * - it honours `retryMs`, `Retry-After`, drain hints and close codes, and backs off with full
 *   jitter on errors, so a fleet of clients does not reconnect in one wave;
 * - tokens: `getToken()` again on 401 or expiry; on a WebSocket, renewed before they expire;
 * - its own timeouts notice a connection that died silently behind a proxy;
 * - it says `connecting` at once and `connected` as soon as the server answered (a first poll
 *   uses the shortest hold the server allows, so a quiet channel says so within a second).
 */

import { Subscriber, type SubscribeOptions, type Subscription } from './subscriber.js';
import { HoldfastHttpError, retryHint } from './types.js';

export { PROBE_HOLD_MS, type SubscribeOptions, type Subscription } from './subscriber.js';
export { type Clock, type PollMessage, type Status, type TransportName, type TransportOption, type WebSocketConstructor, type WebSocketLike, HoldfastHttpError, backoffDelay } from './types.js';

export function subscribe(options: SubscribeOptions): Subscription {
  return new Subscriber(options);
}

// ---- publishing (Node backends) ----

export interface PublishTarget {
  url: string;
  /** LP_PUBLISH_KEY of the server. */
  key?: string;
  fetch?: typeof fetch;
}

export interface PublishResult {
  ch: string;
  seq: number;
  epoch: string;
}

/** Publishes one JSON value. Pass an idempotencyKey to make retries safe. */
export async function publish(target: PublishTarget, ch: string, data: unknown, options: { idempotencyKey?: string } = {}): Promise<PublishResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.key) headers.authorization = `Bearer ${target.key}`;
  if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
  return post(target, `/v1/publish/${encodeURIComponent(ch)}`, JSON.stringify(data), headers);
}

/** Publishes a batch; `id` makes an item idempotent. */
export async function publishBatch(target: PublishTarget, messages: { ch: string; data: unknown; id?: string }[]): Promise<PublishResult[]> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.key) headers.authorization = `Bearer ${target.key}`;
  const body = await post<{ results: PublishResult[] }>(target, '/v1/publish', JSON.stringify({ messages }), headers);
  return body.results;
}

async function post<T>(target: PublishTarget, path: string, body: string, headers: Record<string, string>): Promise<T> {
  const f = target.fetch ?? globalThis.fetch.bind(globalThis);
  const res = await f(`${target.url.replace(/\/+$/, '')}${path}`, { method: 'POST', headers, body });
  const json = (await res.json().catch(() => ({}))) as Record<string, any>;
  if (res.status !== 200) throw new HoldfastHttpError(res.status, json?.error?.code ?? 'http_error', json?.error?.message ?? `HTTP ${res.status}`, retryHint(res, json));
  return json as T;
}
