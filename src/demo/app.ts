/**
 * The demo page: a chat on `demo:chat` and a conflated ticker on `demo:ticker`, built on
 * holdfast/client. Compiled by the project's own build (tsc) to dist/demo/app.js; the server
 * serves it with the client at /demo/ when LP_DEMO=1.
 */

import { type Status, type TransportName, type TransportOption, subscribe } from '../client/index.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const name = params.get('name') ?? `guest${Math.floor(Math.random() * 1000)}`;
$<HTMLInputElement>('name').value = name;

const statusEl = $('status');
const transportEl = $('transport');
// ?transport=websocket|sse|poll pins one; the default tries WebSocket, then SSE, then polls.
const wanted = (['auto', 'websocket', 'sse', 'poll'] as const).find((t) => t === params.get('transport')) ?? 'auto';

function showTransport(transport: TransportName | undefined): void {
  if (!transport) return;
  transportEl.dataset.transport = transport;
  transportEl.textContent = { websocket: 'WebSocket', sse: 'Server-Sent Events', poll: 'long poll' }[transport];
}
let reconnects = 0;
let wasConnected = false;

function showStatus(state: Status | 'offline'): void {
  const shown = !navigator.onLine && state !== 'stopped' ? 'offline' : state;
  statusEl.dataset.state = shown;
  statusEl.textContent = shown;
}

function append(text: string, cls?: string, seq?: number): void {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  if (seq !== undefined) li.dataset.seq = String(seq);
  li.innerHTML = text;
  const log = $('log');
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

const sub = subscribe({
  url: location.origin,
  channels: ['demo:chat', 'demo:ticker'],
  // This tab's place after a reload; a new tab starts from what the channels retain, so it
  // shows the conversation so far.
  cursor: sessionStorage.getItem('holdfast-demo-cursor') ?? 'earliest',
  transport: wanted satisfies TransportOption,
  holdMs: 25_000,
  backoff: { baseMs: 250, capMs: 4000 },
  onMessage(m) {
    if (m.ch === 'demo:ticker') {
      $('ticker').textContent = String((m.data as { px: number }).px);
      return;
    }
    const d = m.data as { from?: string; text?: string };
    append(`<b>${escape(String(d.from ?? '?'))}</b>${escape(String(d.text ?? ''))}`, 'msg', m.seq);
  },
  onGap(channels) {
    if (channels.includes('demo:chat')) append('some messages are no longer retained (gap)', 'gap');
  },
  onStatus(status, detail) {
    if (status === 'connected') showTransport(detail.transport);
    if (status === 'connected' && !wasConnected) wasConnected = true;
    if (status === 'reconnecting' && wasConnected) {
      wasConnected = false;
      $('reconnects').textContent = String(++reconnects);
    }
    showStatus(status);
    if (sub?.cursor) sessionStorage.setItem('holdfast-demo-cursor', sub.cursor);
  },
});

addEventListener('online', () => {
  // A stream may have lived through the offline spell: show its status again.
  showStatus(sub.status);
  sub.reconnectNow();
});
addEventListener('offline', () => showStatus('offline'));

$<HTMLFormElement>('send-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>('text');
  const text = input.value.trim();
  if (!text) return;
  const res = await fetch('/v1/publish/demo:chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `${name}-${Date.now()}-${Math.random()}` },
    body: JSON.stringify({ from: $<HTMLInputElement>('name').value, text }),
  }).catch(() => undefined);
  if (res?.ok) {
    input.value = '';
    return;
  }
  append(escape(`not sent: ${res ? await refusal(res) : 'the server is not reachable; try again'}`), 'gap refused');
});

/** The server's own words for a refused publish: `403 forbidden: publishing is loopback-only…`. */
async function refusal(res: Response): Promise<string> {
  const body = (await res.json().catch(() => undefined)) as { error?: { code?: string; message?: string } } | undefined;
  const error = body?.error;
  return error?.message ? `${res.status} ${error.code ?? ''}: ${error.message}` : `the server answered ${res.status} ${res.statusText}`;
}

// For tests and curious readers.
(window as unknown as { holdfast: unknown }).holdfast = sub;
