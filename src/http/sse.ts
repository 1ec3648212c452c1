/**
 * GET /v1/sse — Server-Sent Events on the same hub, channels and cursors as /v1/poll.
 *
 *   200 text/event-stream, Cache-Control: no-store, X-Accel-Buffering: no
 *   retry: <ms>                                  the reconnect hint
 *   id: <cursor>                                 where the stream starts, when nothing is waiting
 *   event: gap / id: <cursor> / data: {"gapChannels":[…]}     before the retained messages
 *   id: <cursor just after it> / data: {"ch","seq","data"}    one event per message
 *   : (comment)                                  every LP_SSE_HEARTBEAT_MS on an idle stream
 *
 * A reconnecting EventSource sends Last-Event-ID: it is the cursor (it wins over ?cursor=).
 * The id-only event at the start (no data: EventSource dispatches nothing, but remembers the
 * id) makes a stream that is cut before its first message resume where it started, not "from
 * now", so nothing published in between is skipped.
 *
 * Errors before the stream opens are the usual JSON errors; the stream opens once the first
 * history read succeeded. It ends at LP_STREAM_MAX_S, when its token expires (`event: error`
 * first), on a drain (a jittered `retry:` first), or when its unsent bytes pass
 * LP_MAX_BACKPRESSURE (the client resumes from its last event id).
 *
 * Unsent bytes (uWS v20.30, measured): `getWriteOffset()` does not move for chunked
 * `write()`s, so it cannot tell what is still buffered. `write()` answers whether uWS's buffer
 * is empty afterwards; `backlog` counts the bytes written since it last was (an upper bound of
 * what is unsent). A write uWS cannot flush also arms its 10 s HTTP timeout, which would cut a
 * healthy stream 10 s after it caught up. With an onWritable handler, uWS clears that timeout
 * on each writable event, but then drains its buffer only when written to: the handler writes
 * an empty comment line (`:`), which flushes what is buffered first. It is registered at the
 * first write uWS cannot flush. (A buffer that our next event drains before any writable
 * event leaves the timeout armed: the stream then closes 10 s later and the client resumes
 * from its last id; rare, and nothing is lost.)
 */

import { bearer } from '../auth/bearer.js';
import { authorizeSubscriber } from '../auth/subscribers.js';
import type { Config } from '../config.js';
import { encodeCursor } from '../cursor.js';
import type { HoldfastError } from '../errors.js';
import { hasPrefix } from '../names.js';
import { type Res, Sent, jitter, sendError, writeCorsHeaders } from '../respond.js';
import { type Transport, Waiter } from '../poll/waiter.js';
import type { HttpRequest } from '../uws.js';
import { type ServerContext, resumeAfter } from './context.js';
import { MAX_MAX } from './poll.js';
import { parseQuery, single } from './request.js';
import { checkChannels, startPositions } from './subscription.js';

export class SseStream extends Waiter {
  /** Bytes written since uWS last reported its buffer empty (chunk framing included). */
  backlog = 0;
  /** An onWritable handler is registered (see the file comment). */
  watching = false;
  lastWriteAt = 0;
  constructor(
    transport: SseTransport,
    readonly res: Res,
    channels: readonly string[],
    deadline: number,
    /** When its token expires (ms), or Infinity. */
    readonly tokenExpiresAt: number,
  ) {
    super(transport as Transport, channels, MAX_MAX, 'sse', deadline);
  }
}

/** Chunked transfer encoding adds about this much per write (hex length, two CRLFs). */
const CHUNK_FRAMING = 8;
const HEARTBEAT = Buffer.from(':\n\n');
const TOKEN_EXPIRED = 'event: error\ndata: {"error":{"code":"unauthorized","message":"token has expired: fetch a new one"}}\n\n';
/** Written by the onWritable handler to make uWS flush its buffer (an SSE comment line). */
const DRAIN = Buffer.from(':\n');

/**
 * The write in progress: cork() runs its callback synchronously, so one shared callback
 * replaces a closure per stream on the fan-out path (as respond.ts does for polls).
 */
const corked = { transport: undefined as unknown as SseTransport, stream: undefined as unknown as SseStream, chunk: '' as Buffer | string };
function writeCorked(): void {
  corked.transport.put(corked.stream, corked.chunk);
}

export class SseTransport implements Transport<SseStream> {
  readonly kind = 'sse';
  readonly streams = true;
  /** Open streams, for heartbeats, the gauge and the drain. */
  readonly open = new Set<SseStream>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly config: Pick<Config, 'sseHeartbeatMs' | 'maxBackpressure'>) {
    this.timer = setInterval(() => this.heartbeat(), Math.max(500, config.sseHeartbeatMs / 2));
    this.timer.unref();
  }

  start(s: SseStream): void {
    if (s.res.closed) return;
    this.open.add(s);
    s.res.cork(() => {
      s.res.writeStatus('200 OK');
      s.res.writeHeader('Content-Type', 'text/event-stream');
      s.res.writeHeader('Cache-Control', 'no-store');
      s.res.writeHeader('X-Accel-Buffering', 'no');
      writeCorsHeaders(s.res);
      this.put(s, `retry: ${this.config.sseHeartbeatMs < 3000 ? 1000 : 3000}\n\n`);
    });
  }

  write(s: SseStream, body: Buffer): Sent {
    if (s.res.closed) return Sent.Gone;
    // An answer with nothing to show (a stream's first, when nothing is waiting) still says
    // where the stream stands.
    this.corkedPut(s, body.length > 0 ? body : `id: ${encodeCursor(s.channels, s.positions)}\n\n`);
    if (s.backlog > this.config.maxBackpressure) {
      this.closeNow(s);
      return Sent.SlowClosed;
    }
    return Sent.Written;
  }

  reject(s: SseStream, err: HoldfastError): void {
    if (!s.res.closed) sendError(s.res, err);
  }

  end(s: SseStream, why: 'expired' | 'drain'): void {
    if (s.res.closed) return;
    let last = '';
    if (why === 'drain') last = `retry: ${jitter(1000)}\n\n`;
    else if (Date.now() >= s.tokenExpiresAt) last = TOKEN_EXPIRED;
    s.res.cork(() => {
      if (last) this.put(s, last);
      s.res.end();
    });
    this.forget(s);
  }

  closeSlow(): boolean {
    return false;
  }

  /** The client went away (onAborted), or the stream ended. */
  forget(s: SseStream): void {
    s.res.closed = true;
    this.open.delete(s);
  }

  /** Stops the heartbeat timer (server shutdown). */
  stop(): void {
    clearInterval(this.timer);
  }

  /** Writes one chunk (inside a cork) and keeps the backlog. */
  put(s: SseStream, chunk: Buffer | string): void {
    const flushed = s.res.write(chunk);
    s.lastWriteAt = Date.now();
    if (flushed) {
      s.backlog = 0;
      return;
    }
    s.backlog += (typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length) + CHUNK_FRAMING;
    if (!s.watching) {
      s.watching = true;
      s.res.onWritable(() => this.drainBuffer(s));
    }
  }

  /** The socket can take more: flush uWS's buffer (see the file comment). True once it is empty. */
  private drainBuffer(s: SseStream): boolean {
    if (s.res.closed) return true;
    const flushed = s.res.write(DRAIN);
    if (flushed) s.backlog = 0;
    return flushed;
  }

  private corkedPut(s: SseStream, chunk: Buffer | string): void {
    corked.transport = this;
    corked.stream = s;
    corked.chunk = chunk;
    s.res.cork(writeCorked);
    corked.stream = corked.chunk = undefined as never; // keep nothing alive
  }

  /** Closes a slow reader; onAborted then takes the stream out of the hub. */
  private closeNow(s: SseStream): void {
    this.forget(s);
    s.res.close();
  }

  private heartbeat(): void {
    const idleSince = Date.now() - this.config.sseHeartbeatMs;
    for (const s of this.open) {
      if (s.lastWriteAt > idleSince || s.res.closed) continue;
      this.corkedPut(s, HEARTBEAT);
      if (s.backlog > this.config.maxBackpressure) this.closeNow(s);
    }
  }
}

export function sseHandler(ctx: ServerContext, transport: SseTransport) {
  const { config } = ctx;
  return (res: Res, req: HttpRequest): void => {
    const query = parseQuery(req.getQuery() ?? '');
    const authorization = req.getHeader('authorization');
    const lastEventId = req.getHeader('last-event-id');

    // Bad input (400) before auth; Last-Event-ID wins over ?cursor=.
    const channels = checkChannels(query.get('ch'), config, '/v1/sse?ch=<channel>');
    const from = startPositions(channels, lastEventId !== '' ? lastEventId : single(query, 'cursor'));
    const tokenParam = single(query, 'token');
    const token = ctx.tokens ? (bearer(authorization) ?? tokenParam) : undefined;
    // Only a token that guards something can expire the stream.
    const guarded = token !== undefined && channels.some((ch) => !hasPrefix(ch, config.publicPrefixes));

    const open = (): void => {
      const now = Date.now();
      const tokenExpiresAt = guarded ? (ctx.tokens?.expiresAt(token!) ?? Infinity) : Infinity;
      const stream = new SseStream(transport, res, channels, Math.min(now + config.streamMaxS * 1000, tokenExpiresAt), tokenExpiresAt);
      res.onAborted(() => {
        transport.forget(stream);
        ctx.hub.abort(stream);
      });
      ctx.hub.begin(stream, from);
    };
    const pending = authorizeSubscriber(ctx.tokens, config.publicPrefixes, { names: channels, what: 'channel' }, token);
    if (pending === undefined) open();
    else resumeAfter(ctx, res, pending, open);
  };
}
