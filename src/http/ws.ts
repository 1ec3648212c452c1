/**
 * GET /v1/ws — WebSocket subscriptions on the same hub, channels and cursors as /v1/poll.
 *
 *   client → {"op":"subscribe","ch":[…],"cursor"?:…,"token"?:…}   replaces the subscription
 *   client → {"op":"token","token":…}                             renews before expiry
 *   server → {"messages":[…],"cursor":"…","gap":…}                 shaped exactly like a poll answer
 *   server → {"error":{"code","message"}}                          a bad op; the socket stays open
 *
 * Frames are JSON text; with the subprotocol `holdfast.msgpack`, binary MessagePack of the
 * same structures (a poll answer rendered once serves pollers and sockets alike). A subscribe
 * is answered at once with a frame: the messages waiting after its cursor, or none and the
 * cursor where it starts (so a socket cut before its first message resumes there, not "from
 * now"). Close codes: 1013 when unsent bytes pass LP_MAX_BACKPRESSURE (resume from the last
 * cursor), 4001 when the token expired, 1012 on a drain or at LP_STREAM_MAX_S (reason:
 * {"retryMs":…}).
 *
 * Subscribe ops apply in the order they were sent, whatever order their token checks end in:
 * each op is numbered, and one applies only if no later op has applied yet. An op that auth
 * refuses applies nothing, so the subscription before it stays.
 *
 * A GET /v1/ws that is no WebSocket upgrade gets 426 Upgrade Required.
 */

import { pack, unpack } from 'msgpackr';
import { bearer } from '../auth/bearer.js';
import { authorizeSubscriber } from '../auth/subscribers.js';
import type { Config } from '../config.js';
import { HoldfastError } from '../errors.js';
import { hasPrefix } from '../names.js';
import { type Transport, Waiter } from '../poll/waiter.js';
import type { AnswerFormat } from '../render.js';
import { type Res, Sent, jitter, sendError, writeCorsHeaders } from '../respond.js';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from '../uws.js';
import type { ServerContext } from './context.js';
import { corsOriginFor } from './cors.js';
import { MAX_MAX } from './poll.js';
import { parseQuery, single } from './request.js';
import { checkChannels, startPositions } from './subscription.js';

export const MSGPACK_PROTOCOL = 'holdfast.msgpack';
const MAX_FRAME = 64 * 1024;
export const CLOSE_TOO_SLOW = 1013;
export const CLOSE_RESTART = 1012;
export const CLOSE_TOKEN_EXPIRED = 4001;

/** What uWS keeps for each socket. */
interface Socket {
  readonly format: Exclude<AnswerFormat, 'sse'>;
  /** The token given at the upgrade (header or ?token=); an op may bring another. */
  token: string | undefined;
  sub: WsStream | undefined;
  /** Subscribe ops received (each op's number). */
  ops: number;
  /** The number of the op the current subscription came from: an older op never replaces it. */
  applied: number;
  closed: boolean;
}

type Ws = WebSocket<Socket>;

/** ws.send() results. */
const SENT = 1;
const DROPPED = 2;

/**
 * The send in progress: cork() runs its callback synchronously, so one shared callback replaces
 * a closure per socket on the fan-out path.
 */
const corked = { ws: undefined as unknown as Ws, body: undefined as unknown as Buffer, binary: false, status: SENT };
function sendCorked(): void {
  corked.status = corked.ws.send(corked.body, corked.binary);
}

export class WsStream extends Waiter {
  constructor(
    transport: WsTransport,
    readonly ws: Ws,
    /** The socket's user data (ws.getUserData() is a call into uWS). */
    readonly socket: Socket,
    channels: readonly string[],
    format: AnswerFormat,
    deadline: number,
    /** When its token expires (ms), or Infinity; a renewal moves it. */
    public tokenExpiresAt: number,
    readonly endsAt: number,
  ) {
    super(transport as Transport, channels, MAX_MAX, format, deadline);
  }
}

export class WsTransport implements Transport<WsStream> {
  readonly kind = 'ws';
  readonly streams = true;
  readonly open = new Set<Ws>();

  constructor(private readonly config: Pick<Config, 'maxBackpressure'>) {}

  start(): void {}

  write(s: WsStream, body: Buffer): Sent {
    const socket = s.socket;
    if (socket.closed || socket.sub !== s) return Sent.Gone;
    corked.ws = s.ws;
    corked.body = body;
    corked.binary = s.format === 'msgpack';
    s.ws.cork(sendCorked);
    const status = corked.status;
    corked.ws = corked.body = undefined as never; // keep nothing alive
    // 1: sent; 0: buffered (ask how much only then); 2: dropped past uWS's own limit.
    if (status !== SENT && (status === DROPPED || s.ws.getBufferedAmount() > this.config.maxBackpressure)) {
      this.closeSocket(s.ws, CLOSE_TOO_SLOW, 'too slow: resume from your last cursor');
      return Sent.SlowClosed;
    }
    return Sent.Written;
  }

  reject(s: WsStream, err: HoldfastError): void {
    const socket = s.socket;
    if (socket.closed || socket.sub !== s) return;
    socket.sub = undefined;
    this.sendError(s.ws, err);
  }

  end(s: WsStream, why: 'expired' | 'drain'): void {
    const socket = s.socket;
    if (socket.closed || socket.sub !== s) return;
    if (why === 'expired' && Date.now() >= s.tokenExpiresAt) this.closeSocket(s.ws, CLOSE_TOKEN_EXPIRED, 'token expired: fetch a new one and resubscribe');
    else this.closeSocket(s.ws, CLOSE_RESTART, JSON.stringify({ retryMs: jitter(1000) }));
  }

  closeSlow(): boolean {
    return false;
  }

  sendError(ws: Ws, err: HoldfastError): void {
    const socket = ws.getUserData();
    if (socket.closed) return;
    const frame: { error: { code: string; message: string }; retryMs?: number } = { error: { code: err.code, message: err.message } };
    if (err.extras.retryMs !== undefined) frame.retryMs = jitter(err.extras.retryMs);
    ws.cork(() => {
      if (socket.format === 'msgpack') ws.send(pack(frame), true);
      else ws.send(JSON.stringify(frame), false);
    });
  }

  /** Closes every socket (a drain): clients reconnect elsewhere from their cursor. */
  closeAll(): void {
    for (const ws of [...this.open]) this.closeSocket(ws, CLOSE_RESTART, JSON.stringify({ retryMs: jitter(1000) }));
  }

  closeSocket(ws: Ws, code: number, reason: string): void {
    const socket = ws.getUserData();
    if (socket.closed) return;
    socket.closed = true;
    this.open.delete(ws);
    ws.end(code, reason);
  }
}

/** Parses a client frame: JSON text, or MessagePack when binary. */
function parseOp(message: ArrayBuffer, isBinary: boolean): Record<string, unknown> {
  let value: unknown;
  try {
    value = isBinary ? unpack(Buffer.from(message)) : JSON.parse(Buffer.from(message).toString('utf8'));
  } catch {
    throw new HoldfastError('bad_request', `frame is not valid ${isBinary ? 'MessagePack' : 'JSON'}: send {"op":"subscribe","ch":["<channel>"]}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new HoldfastError('bad_request', 'a frame is an object: {"op":"subscribe"|"token", …}');
  return value as Record<string, unknown>;
}

function optionalString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new HoldfastError('bad_request', `${what} must be a string`);
  return v;
}

export function registerWebSocket(app: TemplatedApp, ctx: ServerContext, transport: WsTransport): void {
  const { config } = ctx;

  const subscribe = (ws: Ws, op: Record<string, unknown>): void => {
    const socket = ws.getUserData();
    const channels = checkChannels(Array.isArray(op.ch) ? op.ch : op.ch === undefined ? undefined : [op.ch], config, '{"op":"subscribe","ch":["<channel>"]}');
    const from = startPositions(channels, optionalString(op.cursor, 'cursor'));
    const token = optionalString(op.token, 'token') ?? socket.token;
    const guarded = token !== undefined && channels.some((ch) => !hasPrefix(ch, config.publicPrefixes));
    const seq = ++socket.ops;
    const replace = (): void => {
      if (socket.closed || seq < socket.applied) return; // a later op applied first
      if (ctx.state.draining) throw new HoldfastError('draining', 'this server is shutting down; reconnect to another', { retryMs: 1000 });
      const now = Date.now();
      const tokenExpiresAt = guarded ? (ctx.tokens?.expiresAt(token!) ?? Infinity) : Infinity;
      const endsAt = now + config.streamMaxS * 1000;
      const stream = new WsStream(transport, ws, socket, channels, socket.format, Math.min(endsAt, tokenExpiresAt), tokenExpiresAt, endsAt);
      const previous = socket.sub;
      socket.sub = stream;
      try {
        ctx.hub.begin(stream, from); // throws (503) when the broker is away: nothing changes then
      } catch (err) {
        socket.sub = previous;
        throw err;
      }
      socket.applied = seq;
      socket.token = token;
      if (previous) ctx.hub.abort(previous);
    };
    // A subscribe that auth refuses changes nothing.
    const pending = authorizeSubscriber(ctx.tokens, config.publicPrefixes, { names: channels, what: 'channel' }, token);
    if (pending === undefined) return replace();
    pending.then(replace).catch((err) => reply(ws, err));
  };

  const renew = (ws: Ws, op: Record<string, unknown>): void => {
    const socket = ws.getUserData();
    const token = optionalString(op.token, 'token');
    if (token === undefined) throw new HoldfastError('bad_request', 'the token op needs a "token"');
    if (!ctx.tokens) throw new HoldfastError('bad_request', 'this server checks no tokens (no LP_JWT_* key is set)');
    const sub = socket.sub;
    const names = sub ? sub.channels : [];
    const apply = (): void => {
      if (socket.closed) return;
      socket.token = token;
      // Only the subscription the token was checked against takes its expiry (a subscribe
      // may have replaced it meanwhile); one of public channels only has none.
      if (!sub || socket.sub !== sub || !sub.channels.some((ch) => !hasPrefix(ch, config.publicPrefixes))) return;
      sub.tokenExpiresAt = ctx.tokens!.expiresAt(token);
      ctx.hub.setDeadline(sub, Math.min(sub.endsAt, sub.tokenExpiresAt));
    };
    const pending = authorizeSubscriber(ctx.tokens, config.publicPrefixes, { names, what: 'channel' }, token);
    if (pending === undefined) return apply();
    pending.then(apply).catch((err) => reply(ws, err));
  };

  const reply = (ws: Ws, err: unknown): void => {
    if (err instanceof HoldfastError) {
      ctx.metrics.rejected.inc({ reason: err.code });
      transport.sendError(ws, err);
      return;
    }
    ctx.log.error({ err }, 'internal error');
    transport.sendError(ws, new HoldfastError('internal', 'internal error; it has been logged'));
  };

  app.ws<Socket>('/v1/ws', {
    maxPayloadLength: MAX_FRAME,
    maxBackpressure: config.maxBackpressure + MAX_FRAME,
    closeOnBackpressureLimit: 0, // we close with 1013 ourselves, so the client knows to resume
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      const origin = req.getHeader('origin');
      const key = req.getHeader('sec-websocket-key');
      const protocols = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      // uWS would upgrade any GET with a Sec-WebSocket-Key; a proxy that dropped the hop-by-hop
      // Upgrade header cannot relay a WebSocket, so that request gets the plain GET's 426.
      if (req.getHeader('upgrade').toLowerCase() !== 'websocket') return upgradeRequired(ctx, res as Res, origin);
      let token: string | undefined;
      try {
        token = bearer(req.getHeader('authorization')) ?? single(parseQuery(req.getQuery() ?? ''), 'token');
        if (ctx.state.draining) throw new HoldfastError('draining', 'this server is shutting down; retry on another', { retryMs: 1000 });
        if (origin !== '' && config.corsOrigins.length > 0 && corsOriginFor(config.corsOrigins, origin) === undefined) {
          throw new HoldfastError('forbidden', 'this origin is not in LP_CORS_ORIGINS');
        }
      } catch (err) {
        if (!(err instanceof HoldfastError)) throw err;
        ctx.metrics.rejected.inc({ reason: err.code });
        sendError(res as Res, err);
        return;
      }
      const msgpack = protocols.split(',').some((p) => p.trim() === MSGPACK_PROTOCOL);
      const socket: Socket = { format: msgpack ? 'msgpack' : 'json', token, sub: undefined, ops: 0, applied: 0, closed: false };
      res.cork(() => res.upgrade(socket, key, msgpack ? MSGPACK_PROTOCOL : '', extensions, context));
    },
    open(ws: Ws) {
      transport.open.add(ws);
    },
    message(ws: Ws, message: ArrayBuffer, isBinary: boolean) {
      try {
        const op = parseOp(message, isBinary);
        if (op.op === 'subscribe') subscribe(ws, op);
        else if (op.op === 'token') renew(ws, op);
        else throw new HoldfastError('bad_request', `unknown op ${JSON.stringify(op.op)}: use "subscribe" or "token"`);
      } catch (err) {
        reply(ws, err);
      }
    },
    close(ws: Ws) {
      const socket = ws.getUserData();
      socket.closed = true;
      transport.open.delete(ws);
      if (socket.sub) ctx.hub.abort(socket.sub);
      socket.sub = undefined;
    },
  });

  // A plain GET (no Sec-WebSocket-Key) falls through the WebSocket route to here.
  app.get('/v1/ws', (res: Res, req: HttpRequest) => upgradeRequired(ctx, res, req.getHeader('origin')));
}

/** 426: this path is a WebSocket endpoint. */
function upgradeRequired(ctx: ServerContext, res: Res, origin: string): void {
  if (ctx.config.corsOrigins.length > 0) {
    const allowed = corsOriginFor(ctx.config.corsOrigins, origin);
    if (allowed !== undefined) res.corsOrigin = allowed;
  }
  ctx.metrics.rejected.inc({ reason: 'upgrade_required' });
  res.cork(() => {
    res.writeStatus('426 Upgrade Required');
    res.writeHeader('Upgrade', 'websocket');
    res.writeHeader('Content-Type', 'application/json');
    res.writeHeader('Cache-Control', 'no-store');
    writeCorsHeaders(res);
    res.end(UPGRADE_REQUIRED);
  });
  res.closed = true;
}

const UPGRADE_REQUIRED = JSON.stringify({
  error: { code: 'upgrade_required', message: 'GET /v1/ws is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket), or follow the channels with /v1/sse or /v1/poll' },
}) + '\n';
