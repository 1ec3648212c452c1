/** The long-poll link: one GET /v1/poll, answered once (or failed, or timed out client-side). */

import { type Link, type LinkEvents, type LinkTarget, HoldfastHttpError, httpError } from './types.js';

export interface PollOptions {
  /** The server-side hold of this poll. */
  holdMs: number;
  max: number | undefined;
  /** Added to the hold for the client-side timeout (a connection that died silently). */
  graceMs: number;
  fetch: typeof fetch;
}

export function openPoll(t: LinkTarget, o: PollOptions, events: LinkEvents): Link {
  const controller = new AbortController();
  let done = false;
  const end = (e: Parameters<LinkEvents['ended']>[0]) => {
    if (done) return;
    done = true;
    t.clock.clearTimeout(deadline);
    events.ended(e);
  };
  const deadline = t.clock.setTimeout(() => {
    controller.abort();
    end({ error: new Error(`no answer within ${o.holdMs + o.graceMs} ms`) });
  }, o.holdMs + o.graceMs);

  const q = new URLSearchParams();
  for (const ch of t.channels) q.append('ch', ch);
  if (t.cursor) q.set('cursor', t.cursor);
  q.set('timeout', String(o.holdMs));
  if (o.max) q.set('max', String(o.max));
  const headers: Record<string, string> = { accept: 'application/json' };
  if (t.token) headers.authorization = `Bearer ${t.token}`;

  (async () => {
    const res = await o.fetch(`${t.base}/v1/poll?${q}`, { headers, signal: controller.signal, cache: 'no-store' });
    if (res.status !== 200) throw await httpError(res);
    const body = (await res.json()) as Record<string, any>;
    if (done) return;
    events.opened();
    events.answer(body);
    end({ retryMs: typeof body.retryMs === 'number' ? body.retryMs : undefined });
  })().catch((err: unknown) => end({ error: err instanceof Error ? err : new HoldfastHttpError(0, 'http_error', String(err)) }));

  return {
    close() {
      done = true;
      t.clock.clearTimeout(deadline);
      controller.abort();
    },
  };
}
