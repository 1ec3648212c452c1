/**
 * The SSE link: GET /v1/sse read with fetch streaming (no EventSource: Node has none, and an
 * EventSource cannot send a token header). The cursor goes in `?cursor=` (a cross-origin
 * Last-Event-ID header would need a preflight); every event's id becomes the cursor.
 *
 *   retry: <ms>              the first is the reconnect hint; one after it announces a drain
 *   id: <cursor>             where the stream starts (no data)
 *   event: gap / id / data   {"gapChannels":[…]}
 *   id / data                one message
 *   event: error / data      the token expired: fetch a new one and reconnect
 *   : …                      heartbeats
 *
 * The link counts as open at its first event. A proxy that buffers the stream delivers
 * nothing: after `openTimeoutMs` the link fails (and `auto` falls back to polls). A stream
 * that goes silent for `idleMs` (heartbeats stopped) is presumed dead.
 */

import { type Answer, type Link, type LinkEnd, type LinkEvents, type LinkTarget, HoldfastHttpError, httpError } from './types.js';

export interface SseOptions {
  fetch: typeof fetch;
  /** No byte for this long (not even a heartbeat): reconnect. */
  idleMs: number;
}

export function openSse(t: LinkTarget, o: SseOptions, events: LinkEvents): Link {
  const controller = new AbortController();
  let done = false;
  let opened = false;
  let timer: unknown;
  const end = (e: LinkEnd) => {
    if (done) return;
    done = true;
    t.clock.clearTimeout(timer);
    controller.abort();
    events.ended(e);
  };
  /** (Re)arms the one timer: the open timeout until the first event, then the idle timeout. */
  const arm = () => {
    t.clock.clearTimeout(timer);
    const ms = opened ? o.idleMs : t.openTimeoutMs;
    timer = t.clock.setTimeout(() => end({ error: new Error(opened ? `the stream was silent for ${ms} ms` : `no event within ${ms} ms (a proxy may buffer the stream)`) }), ms);
  };
  arm();

  const q = new URLSearchParams();
  for (const ch of t.channels) q.append('ch', ch);
  if (t.cursor) q.set('cursor', t.cursor);
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (t.token) headers.authorization = `Bearer ${t.token}`;

  let retries = 0;
  let drainRetryMs: number | undefined;
  const parser = new SseParser((e) => {
    if (done) return;
    if (e.retry !== undefined) {
      if (retries++ > 0) drainRetryMs = e.retry;
      return;
    }
    if (!opened) {
      opened = true;
      arm();
      events.opened();
    }
    if (e.event === 'error') {
      const error = parseJson(e.data)?.error;
      end({ tokenExpired: error?.code === 'unauthorized', error: new HoldfastHttpError(401, error?.code ?? 'http_error', error?.message ?? 'the stream ended with an error') });
      return;
    }
    const answer: Answer = { cursor: e.id };
    if (e.event === 'gap') {
      answer.gap = true;
      answer.gapChannels = parseJson(e.data)?.gapChannels;
    } else if (e.data !== undefined) {
      const m = parseJson(e.data);
      if (m) answer.messages = [m];
    }
    events.answer(answer);
  });

  (async () => {
    const res = await o.fetch(`${t.base}/v1/sse?${q}`, { headers, signal: controller.signal, cache: 'no-store' });
    if (res.status !== 200) throw await httpError(res);
    if (!res.body) throw new Error('this fetch cannot stream a response body');
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done: finished, value } = await reader.read();
      if (done) return;
      if (finished) break;
      if (opened) arm(); // any byte (a heartbeat too) shows the stream is alive
      parser.push(decoder.decode(value, { stream: true }));
    }
    // The server ended the stream (LP_STREAM_MAX_S, a drain): come back from the cursor.
    end(opened ? { retryMs: drainRetryMs } : { error: new Error('the stream ended before its first event') });
  })().catch((err: unknown) => end({ error: err instanceof Error ? err : new Error(String(err)) }));

  return {
    close() {
      done = true;
      t.clock.clearTimeout(timer);
      controller.abort();
    },
  };
}

function parseJson(text: string | undefined): any {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

interface SseEvent {
  event: string;
  id: string | undefined;
  data: string | undefined;
  retry?: number;
}

/** The WHATWG event-stream format, fed text as it arrives. */
export class SseParser {
  private text = '';
  private event = '';
  private id: string | undefined;
  private data: string[] = [];

  constructor(private readonly emit: (e: SseEvent) => void) {}

  push(chunk: string): void {
    this.text += chunk;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.text);
      if (!m) return;
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (m[0] === '\r' && m.index === this.text.length - 1) return;
      const line = this.text.slice(0, m.index);
      this.text = this.text.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.id !== undefined || this.data.length > 0) {
        this.emit({ event: this.event || 'message', id: this.id, data: this.data.length > 0 ? this.data.join('\n') : undefined });
      }
      this.event = '';
      this.id = undefined;
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.emit({ event: 'retry', id: undefined, data: undefined, retry: Number(value) });
  }
}
