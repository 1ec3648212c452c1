/**
 * What the pieces of holdfast/client share: the public types, the error class, the clock,
 * backoff, and how one connection ("link") of any transport reports back to the subscriber.
 */

export interface PollMessage {
  ch: string;
  seq: number;
  data: unknown;
}

export type Status = 'connecting' | 'connected' | 'reconnecting' | 'stopped';

/** The ways to follow channels; `auto` tries them in this order and keeps the first that works. */
export type TransportName = 'websocket' | 'sse' | 'poll';
export type TransportOption = 'auto' | TransportName;
export const TRANSPORT_ORDER: readonly TransportName[] = ['websocket', 'sse', 'poll'];

/** Timers and randomness, injectable so tests can drive time. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

export const realClock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  random: Math.random,
};

/**
 * The part of the WebSocket API the client uses: the browser's `WebSocket`, or in Node the
 * `ws` package's (pass it as the `WebSocket` option; Node 20 has no global one).
 */
export interface WebSocketLike {
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export class HoldfastHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryMs?: number,
  ) {
    super(message);
  }
}

/** Full jitter (AWS architecture blog): uniform in [0, min(cap, base · 2^attempt)]. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30)));
}

/** `retryMs` from the body, else `Retry-After` (seconds or an HTTP date), else undefined. */
export function retryHint(res: Response, body: Record<string, any>): number | undefined {
  if (typeof body?.retryMs === 'number') return body.retryMs;
  const header = res.headers.get('retry-after');
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

/** An error answer (any transport) as a HoldfastHttpError. */
export async function httpError(res: Response): Promise<HoldfastHttpError> {
  const body = (await res.json().catch(() => ({}))) as Record<string, any>;
  return new HoldfastHttpError(res.status, body?.error?.code ?? 'http_error', body?.error?.message ?? `HTTP ${res.status}`, retryHint(res, body));
}

/** What a poll answer, a WebSocket frame and (one at a time) SSE events carry. */
export interface Answer {
  messages?: PollMessage[];
  cursor?: string;
  gap?: boolean;
  gapChannels?: string[];
  retryMs?: number;
}

/** How a link ended. No `error`: a normal end (a poll answered, a stream closed by the server). */
export interface LinkEnd {
  error?: Error;
  /** The server's hint for the next attempt. */
  retryMs?: number;
  /** The token expired: fetch a new one, then reconnect at once. */
  tokenExpired?: boolean;
}

/** What a link reports, in this order: opened (once), answers, ended (once). */
export interface LinkEvents {
  /** The server answered on this link: the transport works here. */
  opened(): void;
  answer(answer: Answer): void;
  /** A problem that does not end the link (a refused token renewal). */
  problem(error: Error): void;
  ended(end: LinkEnd): void;
}

/** Where and how a link connects. */
export interface LinkTarget {
  /** Base URL, without a trailing slash. */
  base: string;
  channels: readonly string[];
  cursor: string | undefined;
  token: string | undefined;
  clock: Clock;
  /** The server must answer on the link within this (a proxy that buffers or blocks it). */
  openTimeoutMs: number;
}

/** One connection of one transport. */
export interface Link {
  close(): void;
  /** WebSocket only: changes channels without reconnecting. */
  resubscribe?(channels: readonly string[], cursor: string | undefined): void;
  /** WebSocket only: renews the token on the open socket. */
  renewToken?(token: string): void;
}

/** The HTTP status an error code maps to (WebSocket error frames carry only the code). */
export function statusOfCode(code: string): number {
  if (code === 'unauthorized') return 401;
  if (code === 'forbidden') return 403;
  if (code === 'too_many_polls' || code === 'draining' || code === 'broker_unavailable' || code === 'auth_unavailable') return 503;
  if (code === 'internal') return 500;
  return 400;
}

/** The `exp` of a JWT in ms, when the token is one (no verification: only to renew in time). */
export function tokenExpiry(token: string): number | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
