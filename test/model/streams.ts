/**
 * Clients that follow their channels over a stream (spec "Streaming transports"): SSE
 * (`GET /v1/sse`, the cursor in `?cursor=` or `Last-Event-ID`) or a WebSocket (`GET /v1/ws`,
 * a subscribe op; JSON text frames, or MessagePack with the `holdfast.msgpack` subprotocol).
 * A stream uses the client's one cursor: it resumes where a poll or another stream stopped,
 * and a poll or another stream resumes where it stopped. That is the property under test:
 * nothing doubled or skipped across a switch.
 *
 * Every WebSocket frame is checked as a poll answer (it is "shaped exactly like" one). Every
 * SSE event is checked as an answer of its own: a message event carries one message and, in
 * its `id`, the cursor just after it; a gap event reports `gapChannels` with no message; the
 * id-only event a stream starts with is an empty answer. Messages of one HTTP chunk (one
 * answer, one write) must also be oldest first across channels, as within a poll answer.
 * The first frame or event of a stream is checked against how the stream started (cursor,
 * now, earliest), like a poll's answer; every later one against where the client stands.
 * The wire parsing is the tests' own (test/helpers/streams.ts).
 */

import { SseClient, type SseEvent, type StreamParams, WsClient, type WsFrame } from '../helpers/streams.js';
import { type Start, count, payloadId, showPos, showStart, violation } from './model.js';
import { type Client, type Run, type StreamLike, waitFor } from './run.js';
import { type PollBody, type PollView, checkPollAnswer } from './validate.js';

export type StreamTransport = 'sse' | 'ws-json' | 'ws-msgpack';
/** Where the token goes: the Authorization header, `?token=`, or (WebSocket) the subscribe op. */
export type TokenPlace = 'header' | 'query' | 'op';

export interface StreamSpec {
  readonly transport: StreamTransport;
  readonly mode: 'cursor' | 'now' | 'earliest';
  readonly token: TokenPlace;
  readonly server: number;
  /** SSE from a cursor: send it as Last-Event-ID, with an older cursor in ?cursor= (the header wins). */
  readonly lastEventId: boolean;
}

/** Streams have no `max`: an answer of a stream carries what fits its write. */
const NO_MAX = Number.MAX_SAFE_INTEGER;

class ModelStream implements StreamLike {
  counted = false;
  sse: SseClient | undefined;
  ws: WsClient | undefined;
  /** How it started, until its first frame is checked. */
  first: Start[] | undefined;
  private closedByRun = false;
  /** Events or frames consumed. */
  private consumed = 0;
  /** SSE: the chunk of the last message event and its publish order (oldest first within one). */
  private chunk = -1;
  private order = -Infinity;
  /** SSE: where each channel of the last gap event stood before it (its chunk's messages must skip). */
  private gapFrom = new Map<string, { e: number; lo: number; chunk: number }>();

  constructor(
    readonly run: Run,
    readonly client: Client,
    readonly label: string,
    readonly server: number,
    readonly transport: StreamTransport,
  ) {}

  get channels(): readonly string[] {
    return this.client.channels;
  }

  process(): void {
    if (this.closedByRun) return;
    if (this.sse) {
      const events = this.sse.events;
      while (this.consumed < events.length) this.onSse(events[this.consumed++]!);
      if (this.sse.closed) violation(`${this.label}: the server ended the stream (nothing in the run ends it: no drain, token valid for 1 h, LP_STREAM_MAX_S 3600)`);
    }
    if (this.ws) {
      const frames = this.ws.frames;
      while (this.consumed < frames.length) this.onFrame(frames[this.consumed++]!);
      if (this.ws.closed) violation(`${this.label}: the server closed the socket (${this.ws.closeCode} ${this.ws.closeReason}); nothing in the run should`);
    }
  }

  owes(): boolean {
    if (this.first) return true;
    return this.client.channels.some((name, i) => {
      const p = this.client.pos[i];
      if (!p || p.k === 'unknown') return false;
      const ch = this.run.channel(name);
      return ch.epoch > p.e || ch.head(p.e) > (p.k === 'exact' ? p.s : p.hi);
    });
  }

  hasNews(): boolean {
    if (this.sse) return this.sse.events.length > this.consumed || this.sse.closed;
    if (this.ws) return this.ws.frames.length > this.consumed || this.ws.closed;
    return false;
  }

  describe(): string {
    const at = this.first ? `its first frame (from [${this.first.map(showStart).join(', ')}])` : `[${this.client.pos.map(showPos).join(', ')}]`;
    return `${this.label} on ${JSON.stringify(this.channels)} at ${at}`;
  }

  close(judge = true): void {
    if (this.closedByRun) return;
    if (judge) this.process();
    this.closedByRun = true;
    this.sse?.close();
    this.ws?.close();
    this.run.streams.delete(this);
    if (this.client.stream === this) this.client.stream = undefined;
  }

  private onSse(e: SseEvent): void {
    if (e.id === undefined) violation(`${this.label}: an SSE ${e.event} event without id: (every event carries the cursor)`);
    if (e.event === 'gap') {
      const g = JSON.parse(e.data ?? 'null') as { gapChannels?: string[] } | null;
      count('stream: SSE gap events');
      this.gapFrom.clear();
      this.client.channels.forEach((name, i) => {
        const p = this.client.pos[i];
        if (g?.gapChannels?.includes(name) && p && p.k !== 'unknown' && !this.first) this.gapFrom.set(name, { e: p.e, lo: p.k === 'exact' ? p.s : p.lo, chunk: e.chunk });
      });
      return this.onUnit({ messages: [], cursor: e.id, gap: true, gapChannels: g?.gapChannels ?? [] });
    }
    if (e.event !== 'message') violation(`${this.label}: SSE event ${e.event} ${e.data ?? ''} (only messages and gaps are expected)`);
    if (e.data === undefined) return this.onUnit({ messages: [], cursor: e.id, gap: false });
    const msg = JSON.parse(e.data) as PollBody['messages'][number];
    const rec = this.run.publishByKey(payloadId(msg.data) ?? '');
    if (rec && this.run.orderedAcrossChannels) {
      if (e.chunk === this.chunk && rec.order < this.order) {
        violation(`${this.label}: ${msg.ch}#${msg.seq} follows a newer message in the same write (across channels oldest first)`);
      }
      this.order = e.chunk === this.chunk ? Math.max(this.order, rec.order) : rec.order;
    }
    this.chunk = e.chunk;
    // A gap event skips something: the retained messages after it (same write) start later.
    const gap = this.gapFrom.get(msg.ch);
    this.gapFrom.delete(msg.ch);
    if (gap && gap.chunk === e.chunk && rec && rec.epoch === gap.e && rec.seq <= gap.lo + 1 && !this.run.channel(msg.ch).conflated) {
      violation(`${this.label}: a gap event for ${msg.ch} (from e${gap.e}#${gap.lo}), yet the next event delivers seq ${rec.seq}`);
    }
    this.onUnit({ messages: [msg], cursor: e.id, gap: false });
  }

  private onFrame(f: WsFrame): void {
    if (f.error) violation(`${this.label}: error frame ${JSON.stringify(f.error)} for a subscribe the token grants`);
    this.onUnit(f as PollBody);
  }

  /** One answer of the stream, against the model; the client then stands where it says. */
  private onUnit(body: PollBody): void {
    const c = this.client;
    const first = this.first;
    // After the first frame the stream continues from where the client stands; an empty
    // answer then says nothing new (acked = the position: no "timed out early" check).
    const starts: Start[] = first ?? c.pos.map((pos) => ({ k: 'cursor', pos: pos!, e: pos!.e, acked: pos!.k === 'exact' ? pos!.s : pos!.k === 'range' ? pos!.hi : 0 }));
    const view: PollView = { label: this.label, channels: c.channels, starts, max: NO_MAX, long: false };
    const msgs = Array.isArray(body?.messages) ? body.messages.map((m) => `${m.ch}#${m.seq}`).join(' ') : '?';
    this.run.log(`  ${this.label} → [${msgs}]${body?.gap ? ` gap ${JSON.stringify(body.gapChannels)}` : ''}`);
    const next = checkPollAnswer(view, body, this.run, Date.now());
    this.first = undefined;
    c.pos = next;
    c.cursor = body.cursor;
    c.history.push({ cursor: body.cursor, pos: next });
    if (c.history.length > 4) c.history.shift();
    this.run.log(`    ${c.label} now at [${next.map(showPos).join(', ')}]`);
    count(`stream: ${this.transport} answers checked`);
    count('stream: messages checked', body.messages.length);
  }
}

/**
 * Opens a stream for `client` (which has no poll or stream outstanding). `during` runs once
 * the request (SSE) or the subscribe op (WebSocket) is on its way: a publish racing the open.
 */
export async function openStream(run: Run, client: Client, spec: StreamSpec, during?: () => Promise<void>): Promise<void> {
  const { index, server } = run.serverAt(spec.server);
  const on = run.world.servers.length > 1 ? `@s${index}` : '';
  const token = client.token;
  const stream = new ModelStream(run, client, `${spec.transport} ${client.label}${on}`, index, spec.transport);
  run.streams.add(stream);
  client.stream = stream;

  if (spec.transport === 'sse') {
    const { how, starts } = run.startsFor(client, spec.mode);
    const params: { -readonly [K in keyof StreamParams]: StreamParams[K] } = { ch: [...client.channels] };
    const headers: Record<string, string> = {};
    let via: string = how;
    if (how === 'cursor' && spec.lastEventId) {
      headers['Last-Event-ID'] = client.cursor!;
      const older = client.history.find((h) => h.cursor !== client.cursor)?.cursor;
      if (older) params.cursor = older; // Last-Event-ID wins over ?cursor= (spec)
      via = `Last-Event-ID${older ? ' (an older ?cursor= beside it)' : ''}`;
      count('stream: SSE resumed by Last-Event-ID');
    } else if (how === 'cursor') params.cursor = client.cursor;
    else if (how === 'earliest') params.cursor = 'earliest';
    if (token !== undefined) {
      if (spec.token === 'header') headers.authorization = `Bearer ${token}`;
      else params.token = token;
    }
    stream.first = starts;
    run.log(`${stream.label} open ${via} token in ${token === undefined ? 'none' : spec.token === 'header' ? 'header' : 'query'} from [${starts.map(showStart).join(', ')}]`);
    stream.counted = true;
    const opening = SseClient.open(server.url, params, headers);
    if (during) await during();
    const sse = await opening;
    stream.sse = sse;
    if (sse.status !== 200) {
      stream.close(false);
      violation(`${stream.label}: the stream did not open: ${sse.status} ${JSON.stringify(sse.body)?.slice(0, 300)}`);
    }
  } else {
    const msgpack = spec.transport === 'ws-msgpack';
    const where = token === undefined ? 'none' : spec.token;
    const ws = await WsClient.connect(server.url, {
      msgpack,
      token: where === 'query' ? token : undefined,
      headers: where === 'header' ? { authorization: `Bearer ${token}` } : undefined,
    });
    stream.ws = ws;
    const { how, starts } = run.startsFor(client, spec.mode);
    const op: Record<string, unknown> = { op: 'subscribe', ch: [...client.channels] };
    if (how === 'cursor') op.cursor = client.cursor;
    else if (how === 'earliest') op.cursor = 'earliest';
    if (where === 'op') op.token = token;
    stream.first = starts;
    run.log(`${stream.label} subscribe ${how} token in ${where} from [${starts.map(showStart).join(', ')}]`);
    ws.send(op);
    stream.counted = true;
    if (during) await during();
  }
  count(`stream: opened ${spec.transport}`);
  if (spec.mode === 'cursor' && client.history.length > 0) count('stream: opened from the client\'s cursor');
}

/** Closes the client's stream mid-way; it resumes later from its cursor, on any transport. */
export function closeStream(run: Run, client: Client): void {
  const s = client.stream;
  if (!s) return;
  s.close();
  run.log(`close ${s.label} (the client keeps its cursor)`);
  count('stream: closed by the client');
}

/** A stream auth must refuse: SSE answers 401/403 before the stream; a WebSocket subscribe gets an error frame. */
export async function deniedStream(
  run: Run,
  transport: StreamTransport,
  request: { channels: string[]; token: string | undefined; queryToken: string | undefined; status: number; what: string },
  serverPick: number,
  waitMs: number,
): Promise<void> {
  const { server } = run.serverAt(serverPick);
  const what = `denied ${transport} stream (${request.what}) ${JSON.stringify(request.channels)}`;
  run.log(what);
  if (transport === 'sse') {
    const params: { -readonly [K in keyof StreamParams]: StreamParams[K] } = { ch: request.channels };
    const headers: Record<string, string> = {};
    if (request.token !== undefined) headers.authorization = `Bearer ${request.token}`;
    if (request.queryToken !== undefined) params.token = request.queryToken;
    const sse = await SseClient.open(server.url, params, headers);
    sse.close();
    if (sse.status === 200) violation(`${what}: the stream opened (never any data of an ungranted channel)`);
    run.expectStatus(what, { status: sse.status, body: sse.body, at: Date.now() }, request.status);
    if (typeof sse.body?.error?.code !== 'string') violation(`${what}: error answer without {"error":{"code"}}: ${JSON.stringify(sse.body)}`);
    count(`auth: SSE refused ${request.status}`);
    return;
  }
  const ws = await WsClient.connect(server.url, {
    msgpack: transport === 'ws-msgpack',
    token: request.queryToken,
    headers: request.token !== undefined ? { authorization: `Bearer ${request.token}` } : undefined,
  });
  try {
    ws.send({ op: 'subscribe', ch: request.channels });
    await waitFor(() => ws.frames.length > 0 || ws.closed, waitMs);
    const f = ws.frames[0];
    if (!f) violation(`${what}: no error frame within ${waitMs} ms${ws.closed ? ` (socket closed ${ws.closeCode})` : ''}`);
    if (!f.error || typeof f.error.code !== 'string') violation(`${what}: answered ${JSON.stringify(f).slice(0, 300)} instead of an error frame`);
    // The socket stays open after a refused op (spec); a later subscribe would still work.
    if (ws.closed) violation(`${what}: the socket closed after a refused subscribe (${ws.closeCode}); it stays open`);
    count(`auth: WebSocket subscribe refused (${f.error.code})`);
  } finally {
    ws.close();
  }
}
