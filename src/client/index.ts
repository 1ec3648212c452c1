/**
 * holdfast/client — a long-poll subscriber for browsers and Node 20, and a publish helper for
 * Node backends. Zero dependencies: it needs only `fetch` and `AbortController`.
 *
 *   const sub = subscribe({ url: 'https://rt.example.com', channels: ['user:42', 'news'],
 *                           onMessage: (m) => console.log(m.ch, m.seq, m.data) });
 *   // later: sub.setChannels([...]); sub.stop(); localStorage.cursor = sub.cursor;
 *
 * What it gets right, because most long-poll bugs live in the client:
 * - it keeps the cursor across answers, timeouts, errors and reconnects, and drops any seq it
 *   has already delivered, so the application sees each message once;
 * - it polls again at once after an answer, honours `retryMs` and `Retry-After`, and backs off
 *   with full jitter on errors, so a fleet of clients does not reconnect in one wave;
 * - it calls `getToken()` again on 401;
 * - its own timeout is a little longer than the server's hold, so a connection that died
 *   silently behind a proxy is noticed;
 * - it says `connecting` at once and `connected` within about a second: until the server has
 *   answered once, it polls with the shortest hold the server allows (a poll's headers come
 *   with its answer, so a full hold on a quiet channel would say nothing for 30 s).
 */

export interface PollMessage {
  ch: string;
  seq: number;
  data: unknown;
}

export type Status = 'connecting' | 'connected' | 'reconnecting' | 'stopped';

/** Timers and randomness, injectable so tests can drive time. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

export interface SubscribeOptions {
  /** Base URL of the Holdfast server, e.g. `https://rt.example.com`. */
  url: string;
  channels: readonly string[];
  /** Resume from a cursor saved earlier (`sub.cursor`); `'earliest'` for all retained history. */
  cursor?: string;
  /** A subscriber JWT, or a function that fetches a fresh one (called again after a 401). */
  token?: string;
  getToken?: () => string | Promise<string>;
  onMessage(message: PollMessage): void;
  /** The server could not give everything after the cursor: resynchronise these channels. */
  onGap?(channels: string[]): void;
  onError?(error: Error): void;
  /**
   * `connecting` right after subscribe() (on the next microtask), `connected` once the server
   * has answered a poll (within about a second: see PROBE_HOLD_MS), `reconnecting` (with the
   * backoff delay) after a failure, `stopped` after stop().
   */
  onStatus?(status: Status, detail: { attempt: number; delayMs?: number }): void;
  /** Server-side hold per poll. @default 30000 */
  holdMs?: number;
  /** Messages per answer. @default 100 */
  max?: number;
  /** Full-jitter backoff: delay = random(0, min(capMs, baseMs · 2^attempt)). @default {baseMs: 500, capMs: 30000} */
  backoff?: { baseMs?: number; capMs?: number };
  /** Added to holdMs for the client-side timeout. @default 10000 */
  graceMs?: number;
  fetch?: typeof fetch;
  clock?: Clock;
}

export interface Subscription {
  /** The position to persist and pass back as `cursor` to resume. */
  readonly cursor: string | undefined;
  readonly channels: readonly string[];
  readonly status: Status;
  /** Changes channels without losing position on the channels kept. */
  setChannels(channels: readonly string[]): void;
  /** Aborts the poll in flight and cancels every timer. */
  stop(): void;
  /** Skips a pending backoff and polls now (e.g. on the browser's `online` event). */
  reconnectNow(): void;
}

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

/**
 * The hold of a poll sent while not connected (the first one, and the first after a failure):
 * the server's minimum, so `connected` is reported within about a second even on a quiet
 * channel. Once connected, polls hold for `holdMs`.
 */
export const PROBE_HOLD_MS = 1000;

const realClock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  random: Math.random,
};

/** Full jitter (AWS architecture blog): uniform in [0, min(cap, base · 2^attempt)]. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30)));
}

export function subscribe(options: SubscribeOptions): Subscription {
  return new Subscriber(options);
}

class Subscriber implements Subscription {
  cursor: string | undefined;
  channels: readonly string[];
  status: Status = 'connecting';
  private readonly clock: Clock;
  private readonly fetch: typeof fetch;
  private token: string | undefined;
  private controller: AbortController | undefined;
  private timer: unknown;
  /** Client-side timeouts of polls in flight (an aborted one may not have settled yet). */
  private readonly deadlines = new Set<unknown>();
  private attempt = 0;
  private stopped = false;
  /** Highest seq delivered per channel (within the channel's current numbering). */
  private readonly delivered = new Map<string, number>();
  /** Bumped by setChannels/stop so an answer to an older request is ignored. */
  private generation = 0;

  constructor(private readonly o: SubscribeOptions) {
    this.clock = o.clock ?? realClock;
    this.fetch = o.fetch ?? globalThis.fetch.bind(globalThis);
    this.cursor = o.cursor;
    this.channels = [...o.channels];
    this.token = o.token;
    // Said once the caller has its Subscription (the callback may read it), before any I/O.
    queueMicrotask(() => {
      if (!this.stopped && this.status === 'connecting') this.o.onStatus?.('connecting', { attempt: 0 });
    });
    this.schedule(0);
  }

  setChannels(channels: readonly string[]): void {
    this.channels = [...channels];
    for (const ch of this.delivered.keys()) if (!channels.includes(ch)) this.delivered.delete(ch);
    // Restart now with the new list; the cursor keeps the place of the channels kept, and a
    // poll aborted mid-answer is simply asked again from the same cursor (dedup drops repeats).
    this.restart();
  }

  reconnectNow(): void {
    if (this.status === 'reconnecting') this.restart();
  }

  stop(): void {
    this.stopped = true;
    this.generation++;
    this.controller?.abort();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    for (const t of this.deadlines) this.clock.clearTimeout(t);
    this.deadlines.clear();
    this.timer = undefined;
    this.setStatus('stopped', {});
  }

  private restart(): void {
    if (this.stopped) return;
    this.generation++;
    this.controller?.abort();
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.pollOnce();
    }, delayMs);
  }

  private setStatus(status: Status, detail: { delayMs?: number }): void {
    if (this.status === status && status === 'connected') return;
    this.status = status;
    this.o.onStatus?.(status, { attempt: this.attempt, ...detail });
  }

  private async pollOnce(): Promise<void> {
    if (this.stopped) return;
    const generation = this.generation;
    const controller = (this.controller = new AbortController());
    const hold = this.status === 'connected' ? (this.o.holdMs ?? 30_000) : Math.min(PROBE_HOLD_MS, this.o.holdMs ?? 30_000);
    const deadline = this.clock.setTimeout(() => controller.abort(), hold + (this.o.graceMs ?? 10_000));
    this.deadlines.add(deadline);
    try {
      if (this.token === undefined && this.o.getToken) this.token = await this.o.getToken();
      const res = await this.fetch(this.pollUrl(hold), {
        headers: this.token ? { authorization: `Bearer ${this.token}`, accept: 'application/json' } : { accept: 'application/json' },
        signal: controller.signal,
        cache: 'no-store',
      });
      const body = (await res.json().catch(() => ({}))) as Record<string, any>;
      if (generation !== this.generation) return;
      if (res.status === 200) return this.onAnswer(body);
      throw new HoldfastHttpError(res.status, body?.error?.code ?? 'http_error', body?.error?.message ?? `HTTP ${res.status}`, retryHint(res, body));
    } catch (err) {
      if (generation !== this.generation || this.stopped) return;
      this.onFailure(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.clock.clearTimeout(deadline);
      this.deadlines.delete(deadline);
    }
  }

  private pollUrl(hold: number): string {
    const q = new URLSearchParams();
    for (const ch of this.channels) q.append('ch', ch);
    if (this.cursor) q.set('cursor', this.cursor);
    q.set('timeout', String(hold));
    if (this.o.max) q.set('max', String(this.o.max));
    return `${this.o.url.replace(/\/+$/, '')}/v1/poll?${q}`;
  }

  private onAnswer(body: Record<string, any>): void {
    this.attempt = 0;
    this.setStatus('connected', {});
    if (body.gap && Array.isArray(body.gapChannels)) {
      // The numbering of these channels may have restarted: forget what was delivered.
      for (const ch of body.gapChannels) this.delivered.delete(ch);
      this.o.onGap?.(body.gapChannels);
    }
    for (const m of (body.messages ?? []) as PollMessage[]) {
      const last = this.delivered.get(m.ch) ?? 0;
      if (m.seq <= last) continue; // already delivered
      this.delivered.set(m.ch, m.seq);
      try {
        this.o.onMessage(m);
      } catch (err) {
        this.o.onError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }
    if (typeof body.cursor === 'string') this.cursor = body.cursor;
    this.schedule(typeof body.retryMs === 'number' ? body.retryMs : 0);
  }

  private onFailure(err: Error): void {
    this.o.onError?.(err);
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
    const { baseMs = 500, capMs = 30_000 } = this.o.backoff ?? {};
    const hinted = err instanceof HoldfastHttpError ? err.retryMs : undefined;
    const delayMs = hinted ?? backoffDelay(this.attempt, baseMs, capMs, this.clock.random);
    this.attempt++;
    this.setStatus('reconnecting', { delayMs });
    this.schedule(delayMs);
  }
}

/** `retryMs` from the body, else `Retry-After` (seconds or an HTTP date), else undefined. */
function retryHint(res: Response, body: Record<string, any>): number | undefined {
  if (typeof body?.retryMs === 'number') return body.retryMs;
  const header = res.headers.get('retry-after');
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
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
