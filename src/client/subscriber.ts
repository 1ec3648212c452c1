/**
 * One subscription: the cursor, dedup, callbacks, status, backoff and tokens, over whichever
 * transport works. A transport connection is a "link" (poll-link, sse-link, ws-link); the
 * subscriber opens one link at a time and owns everything that must survive a switch.
 *
 *   transport "auto": candidates websocket → sse → poll (those this runtime has)
 *
 *     start at the remembered one ──fails before the server answered──> the next one, at once
 *        │                             (a proxy that blocks WebSocket, buffers SSE)
 *        │ opened: remember it, stay on it
 *        ▼
 *     a link that ends (poll answered, stream closed by the server) ──> the same, at once
 *     a link that fails after it opened, or every candidate failed ──> backoff, then again
 *        from the remembered one
 *
 * An error answer from Holdfast itself (401, 403, 400, 503…) shows the transport works: it is
 * handled as such (new token, gap, backoff), never a reason to switch. The cursor and the
 * highest seq delivered per channel carry across links and transports, so a switch repeats
 * and skips nothing.
 */

import { openPoll } from './poll-link.js';
import { rememberTransport, rememberedTransport } from './remember.js';
import { openSse } from './sse-link.js';
import {
  type Answer,
  type Clock,
  type Link,
  type LinkEnd,
  type PollMessage,
  type Status,
  TRANSPORT_ORDER,
  type TransportName,
  type TransportOption,
  type WebSocketConstructor,
  HoldfastHttpError,
  backoffDelay,
  realClock,
  tokenExpiry,
} from './types.js';
import { openWebSocket } from './ws-link.js';

export interface SubscribeOptions {
  /** Base URL of the Holdfast server, e.g. `https://rt.example.com`. */
  url: string;
  channels: readonly string[];
  /** Resume from a cursor saved earlier (`sub.cursor`); `'earliest'` for all retained history. */
  cursor?: string;
  /** A subscriber JWT, or a function that fetches a fresh one (called again when it expires). */
  token?: string;
  getToken?: () => string | Promise<string>;
  onMessage(message: PollMessage): void;
  /** The server could not give everything after the cursor: resynchronise these channels. */
  onGap?(channels: string[]): void;
  onError?(error: Error): void;
  /**
   * `connecting` right after subscribe() (on the next microtask), `connected` once the server
   * answered on a transport (a poll within about a second: see PROBE_HOLD_MS), `reconnecting`
   * (with the backoff delay) after a failure, `stopped` after stop(). `detail.transport` says
   * which transport is in use.
   */
  onStatus?(status: Status, detail: { attempt: number; delayMs?: number; transport?: TransportName }): void;
  /**
   * `auto` tries WebSocket, then SSE, then long-poll, and remembers what worked for this URL.
   * @default 'auto'
   */
  transport?: TransportOption;
  /** A WebSocket constructor (the `ws` package in Node 20). @default globalThis.WebSocket */
  WebSocket?: WebSocketConstructor;
  /** A WebSocket or SSE link must get its first frame or event within this. @default 5000 */
  openTimeoutMs?: number;
  /** An SSE stream silent for this long (no heartbeat) is reconnected. @default 45000 */
  sseIdleMs?: number;
  /** Server-side hold per poll. @default 30000 */
  holdMs?: number;
  /** Messages per poll answer. @default 100 */
  max?: number;
  /** Full-jitter backoff: delay = random(0, min(capMs, baseMs · 2^attempt)). @default {baseMs: 500, capMs: 30000} */
  backoff?: { baseMs?: number; capMs?: number };
  /** Added to holdMs for the client-side poll timeout. @default 10000 */
  graceMs?: number;
  fetch?: typeof fetch;
  clock?: Clock;
}

export interface Subscription {
  /** The position to persist and pass back as `cursor` to resume. */
  readonly cursor: string | undefined;
  readonly channels: readonly string[];
  readonly status: Status;
  /** The transport in use, or being tried. */
  readonly transport: TransportName | undefined;
  /** Changes channels without losing position on the channels kept. */
  setChannels(channels: readonly string[]): void;
  /** Closes the connection and cancels every timer. */
  stop(): void;
  /** Skips a pending backoff and connects now (e.g. on the browser's `online` event). */
  reconnectNow(): void;
}

/**
 * The hold of a poll sent while not connected (the first one, and the first after a failure):
 * the server's minimum, so `connected` is reported within about a second even on a quiet
 * channel. Once connected, polls hold for `holdMs`.
 */
export const PROBE_HOLD_MS = 1000;

export class Subscriber implements Subscription {
  cursor: string | undefined;
  channels: readonly string[];
  status: Status = 'connecting';
  transport: TransportName | undefined;
  private readonly base: string;
  private readonly clock: Clock;
  private readonly fetch: typeof fetch;
  private readonly WebSocket: WebSocketConstructor | undefined;
  private readonly auto: boolean;
  /** The transports this subscription may use, in order. */
  private readonly candidates: TransportName[];
  /** The candidate the next link uses. */
  private index = 0;
  private token: string | undefined;
  private link: Link | undefined;
  /** Bumped for every link (and by stop): events of an older link are ignored. */
  private linkId = 0;
  private linkOpened = false;
  private timer: unknown;
  private renewal: unknown;
  private attempt = 0;
  private stopped = false;
  /** Highest seq delivered per channel (within the channel's current numbering). */
  private readonly delivered = new Map<string, number>();

  constructor(private readonly o: SubscribeOptions) {
    this.base = o.url.replace(/\/+$/, '');
    this.clock = o.clock ?? realClock;
    this.fetch = o.fetch ?? globalThis.fetch.bind(globalThis);
    this.WebSocket = o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.cursor = o.cursor;
    this.channels = [...o.channels];
    this.token = o.token;
    const wanted = o.transport ?? 'auto';
    this.auto = wanted === 'auto';
    const available = (t: TransportName) => (t === 'websocket' ? this.WebSocket !== undefined : t === 'sse' ? typeof ReadableStream !== 'undefined' : true);
    if (!this.auto && !available(wanted as TransportName)) {
      throw new Error(`transport "${wanted}" is not available here: ${wanted === 'websocket' ? 'pass a WebSocket constructor (in Node 20, the ws package) as the WebSocket option' : 'this runtime cannot stream fetch bodies'}`);
    }
    this.candidates = this.auto ? TRANSPORT_ORDER.filter(available) : [wanted as TransportName];
    this.index = this.preferred();
    // Said once the caller has its Subscription (the callback may read it), before any I/O.
    queueMicrotask(() => {
      if (!this.stopped && this.status === 'connecting') this.o.onStatus?.('connecting', { attempt: 0 });
    });
    this.schedule(0);
  }

  setChannels(channels: readonly string[]): void {
    this.channels = [...channels];
    for (const ch of this.delivered.keys()) if (!channels.includes(ch)) this.delivered.delete(ch);
    // Reconnect now with the new list; the cursor keeps the place of the channels kept, and an
    // answer cut mid-way is asked again from the same cursor (dedup drops repeats).
    this.restart();
  }

  reconnectNow(): void {
    if (this.status === 'reconnecting') this.restart();
  }

  stop(): void {
    this.stopped = true;
    this.closeLink();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.setStatus('stopped', {});
  }

  /** The candidate to start a cycle with: the one that worked last for this URL, or the first. */
  private preferred(): number {
    if (!this.auto) return 0;
    const known = rememberedTransport(this.base);
    const i = known ? this.candidates.indexOf(known) : -1;
    return i === -1 ? 0 : i;
  }

  private restart(): void {
    if (this.stopped) return;
    this.closeLink();
    this.schedule(0);
  }

  private closeLink(): void {
    this.linkId++;
    this.link?.close();
    this.link = undefined;
    if (this.renewal !== undefined) this.clock.clearTimeout(this.renewal);
    this.renewal = undefined;
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, delayMs);
  }

  private setStatus(status: Status, detail: { delayMs?: number }): void {
    if (this.status === status && status === 'connected') return;
    this.status = status;
    this.o.onStatus?.(status, { attempt: this.attempt, ...detail, transport: this.transport });
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.closeLink();
    const id = this.linkId;
    let token: string | undefined;
    try {
      if (this.token === undefined && this.o.getToken) this.token = await this.o.getToken();
      token = this.token;
    } catch (err) {
      if (id === this.linkId && !this.stopped) this.failed(err instanceof Error ? err : new Error(String(err)), true);
      return;
    }
    if (id !== this.linkId || this.stopped) return;
    const name = this.candidates[this.index]!;
    this.transport = name;
    this.linkOpened = false;
    const target = { base: this.base, channels: this.channels, cursor: this.cursor, token, clock: this.clock, openTimeoutMs: this.o.openTimeoutMs ?? 5000 };
    const events = {
      opened: () => id === this.linkId && this.opened(name),
      answer: (a: Answer) => id === this.linkId && this.deliver(a),
      problem: (err: Error) => id === this.linkId && this.o.onError?.(err),
      ended: (end: LinkEnd) => id === this.linkId && this.ended(end),
    };
    if (name === 'websocket') {
      this.link = openWebSocket(target, this.WebSocket!, events);
    } else if (name === 'sse') {
      this.link = openSse(target, { fetch: this.fetch, idleMs: this.o.sseIdleMs ?? 45_000 }, events);
    } else {
      const hold = this.o.holdMs ?? 30_000;
      this.link = openPoll(target, { holdMs: this.status === 'connected' ? hold : Math.min(PROBE_HOLD_MS, hold), max: this.o.max, graceMs: this.o.graceMs ?? 10_000, fetch: this.fetch }, events);
    }
  }

  private opened(name: TransportName): void {
    this.linkOpened = true;
    this.attempt = 0;
    if (this.auto) rememberTransport(this.base, name);
    this.setStatus('connected', {});
    if (name === 'websocket') this.scheduleRenewal();
  }

  /** An answer, frame or event: gaps first, then each message not delivered before, then the cursor. */
  private deliver(a: Answer): void {
    if (a.gap && Array.isArray(a.gapChannels)) {
      // The numbering of these channels may have restarted: forget what was delivered.
      for (const ch of a.gapChannels) this.delivered.delete(ch);
      this.o.onGap?.(a.gapChannels);
    }
    for (const m of a.messages ?? []) {
      const last = this.delivered.get(m.ch) ?? 0;
      if (m.seq <= last) continue; // already delivered
      this.delivered.set(m.ch, m.seq);
      try {
        this.o.onMessage(m);
      } catch (err) {
        this.o.onError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }
    if (typeof a.cursor === 'string' && a.cursor !== '') this.cursor = a.cursor;
  }

  private ended(end: LinkEnd): void {
    const opened = this.linkOpened;
    this.link = undefined;
    if (end.tokenExpired) this.token = undefined; // the next link fetches a new one
    if (end.error) return this.failed(end.error, opened);
    // A normal end (a poll answered, a stream the server closed): again, from the cursor.
    this.schedule(end.retryMs ?? 0);
  }

  private failed(err: Error, opened: boolean): void {
    this.o.onError?.(err);
    // An answer from Holdfast itself: the transport works; act on what it said.
    const fromServer = err instanceof HoldfastHttpError && err.code !== 'http_error';
    if (err instanceof HoldfastHttpError) {
      if (err.status === 401 && this.o.getToken) {
        // One immediate retry with a fresh token; repeated 401s back off like other errors.
        this.token = undefined;
        if (this.attempt === 0) {
          this.attempt++;
          return this.schedule(0);
        }
      }
      if (err.status === 400 && err.code === 'bad_cursor') {
        this.cursor = undefined;
        this.o.onGap?.([...this.channels]);
        return this.schedule(0);
      }
    }
    // The transport never worked here (blocked, buffered, missing): the next one, at once.
    if (this.auto && !opened && !fromServer && this.index + 1 < this.candidates.length) {
      this.index++;
      return this.schedule(0);
    }
    const { baseMs = 500, capMs = 30_000 } = this.o.backoff ?? {};
    const hinted = err instanceof HoldfastHttpError ? err.retryMs : undefined;
    const delayMs = hinted ?? backoffDelay(this.attempt, baseMs, capMs, this.clock.random);
    this.attempt++;
    this.index = this.preferred();
    this.setStatus('reconnecting', { delayMs });
    this.schedule(delayMs);
  }

  /** Before the socket's token expires, fetch a new one and hand it over (the token op). */
  private scheduleRenewal(): void {
    const exp = this.token && this.o.getToken ? tokenExpiry(this.token) : undefined;
    if (exp === undefined) return;
    const left = exp - Date.now();
    const delay = Math.max(1000, left - Math.min(30_000, left / 2));
    const id = this.linkId;
    this.renewal = this.clock.setTimeout(async () => {
      this.renewal = undefined;
      try {
        const token = await this.o.getToken!();
        if (id !== this.linkId) return;
        this.token = token;
        this.link?.renewToken?.(token);
        this.scheduleRenewal();
      } catch (err) {
        this.o.onError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }, delay);
  }
}
