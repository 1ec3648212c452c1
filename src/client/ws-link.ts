/**
 * The WebSocket link: GET /v1/ws, then `{"op":"subscribe","ch","cursor"?,"token"?}`. The token
 * travels in the op (not the URL, which servers and proxies log). The server answers a
 * subscribe at once: an error frame (the subscribe was refused: an HTTP-like error), or a
 * frame shaped like a poll answer (the link is open). Close codes: 4001 token expired,
 * 1012 drain or stream age (reason `{"retryMs"}`), 1013 too slow; all resume from the cursor.
 */

import { type Link, type LinkEnd, type LinkEvents, type LinkTarget, type WebSocketConstructor, type WebSocketLike, HoldfastHttpError, statusOfCode } from './types.js';

export const CLOSE_TOKEN_EXPIRED = 4001;
export const CLOSE_RESTART = 1012;
export const CLOSE_TOO_SLOW = 1013;

export function openWebSocket(t: LinkTarget, WebSocketCtor: WebSocketConstructor, events: LinkEvents): Link {
  let done = false;
  let opened = false;
  /** Subscribe ops sent minus answers seen: an error frame answers the oldest. */
  let awaiting = 0;
  /** Stops the link; false when it had stopped already. */
  const stop = (): boolean => {
    if (done) return false;
    done = true;
    t.clock.clearTimeout(timer);
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000);
    } catch {
      /* not open yet, or already closed */
    }
    return true;
  };
  const end = (e: LinkEnd) => {
    if (stop()) events.ended(e);
  };
  const timer = t.clock.setTimeout(() => end({ error: new Error(`no WebSocket answer within ${t.openTimeoutMs} ms`) }), t.openTimeoutMs);

  let ws: WebSocketLike;
  try {
    ws = new WebSocketCtor(`${t.base.replace(/^http/, 'ws')}/v1/ws`);
  } catch (err) {
    t.clock.clearTimeout(timer);
    queueMicrotask(() => events.ended({ error: err instanceof Error ? err : new Error(String(err)) }));
    return { close() {} };
  }

  const subscribe = (channels: readonly string[], cursor: string | undefined, token: string | undefined) => {
    const op: Record<string, unknown> = { op: 'subscribe', ch: channels };
    if (cursor) op.cursor = cursor;
    if (token) op.token = token;
    awaiting++;
    ws.send(JSON.stringify(op));
  };

  ws.onopen = () => subscribe(t.channels, t.cursor, t.token);
  ws.onmessage = (event: { data: unknown }) => {
    if (done || typeof event.data !== 'string') return;
    let frame: Record<string, any>;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.error) {
      const err = new HoldfastHttpError(statusOfCode(frame.error.code), frame.error.code, frame.error.message, frame.retryMs);
      if (awaiting > 0 && !opened) return end({ error: err }); // the subscribe was refused
      if (awaiting > 0) awaiting--;
      events.problem(err);
      return;
    }
    if (awaiting > 0) awaiting--;
    if (!opened) {
      opened = true;
      t.clock.clearTimeout(timer);
      events.opened();
    }
    events.answer(frame);
  };
  ws.onerror = () => undefined; // onclose follows with the code
  ws.onclose = (event: { code: number; reason: string }) => {
    if (!opened) return end({ error: new Error(`the WebSocket closed before its first frame (${event.code})`) });
    if (event.code === CLOSE_TOKEN_EXPIRED) return end({ tokenExpired: true });
    if (event.code === CLOSE_RESTART || event.code === CLOSE_TOO_SLOW) return end({ retryMs: retryOf(event.reason) });
    end({ error: new Error(`the WebSocket closed (${event.code}${event.reason ? ` ${event.reason}` : ''})`) });
  };

  return {
    close() {
      stop();
    },
    resubscribe(channels, cursor) {
      if (!done) subscribe(channels, cursor, undefined);
    },
    renewToken(token) {
      if (!done) ws.send(JSON.stringify({ op: 'token', token }));
    },
  };
}

function retryOf(reason: string): number | undefined {
  try {
    const r = JSON.parse(reason) as { retryMs?: unknown };
    return typeof r.retryMs === 'number' ? r.retryMs : undefined;
  } catch {
    return undefined;
  }
}
