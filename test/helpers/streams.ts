/**
 * Stream clients for tests, at the level the tests need to see:
 *
 * - `SseClient`: Server-Sent Events over a raw TCP socket, so a test sees each HTTP chunk as
 *   the server wrote it (messages that arrive together must leave in one write), every line
 *   of the stream (retry, id-only events, comments), and can stop reading (backpressure).
 *   Answers before the stream (errors) are checked against the OpenAPI document, as http()
 *   does; every event's data against its schema.
 * - `WsClient`: the `ws` package, JSON or `holdfast.msgpack` frames decoded, every frame
 *   checked against its schema, the close code and reason kept.
 *
 * Both keep what they received, and `until()` waits for a condition on it (bounded).
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { pack, unpack } from 'msgpackr';
import calculateSlot from 'cluster-key-slot';
import { WebSocket } from 'ws';
import { RECOMMENDED_CONF } from './nginx.js';
import { assertMatchesOpenApi, schemaProblems } from './openapi.js';
import { poll, until } from './server.js';

export interface StreamMessage {
  ch: string;
  seq: number;
  data: unknown;
}

export interface SseEvent {
  /** `message` (default), `gap`, `error`… */
  event: string;
  id: string | undefined;
  data: string | undefined;
  /** The HTTP chunk it arrived in (0-based). */
  chunk: number;
}

export interface StreamParams {
  ch: string | string[];
  cursor?: string;
  token?: string;
}

export function streamQuery(params: StreamParams): string {
  const q = new URLSearchParams();
  for (const ch of Array.isArray(params.ch) ? params.ch : [params.ch]) q.append('ch', ch);
  if (params.cursor !== undefined) q.set('cursor', params.cursor);
  if (params.token !== undefined) q.set('token', params.token);
  return q.toString();
}

/** Clients opened by a test file, closed by closeStreams() in its after() hook. */
const opened = new Set<{ close(): void }>();

export function closeStreams(): void {
  for (const c of opened) c.close();
  opened.clear();
}

// ---- SSE ----

export class SseClient {
  status = 0;
  headers = new Headers();
  /** The JSON body of an answer that is not a stream (an error). */
  body: any = undefined;
  /** Events in order; comments and retry lines are kept apart. */
  readonly events: SseEvent[] = [];
  readonly retries: number[] = [];
  comments = 0;
  /** HTTP chunks of the stream body begun so far (an event's `chunk` is the one it ended in). */
  chunks = 0;
  /** The server ended the stream (terminating chunk) or the connection closed. */
  ended = false;
  /** The connection closed. */
  closed = false;
  /** The last id the stream gave (what EventSource would send as Last-Event-ID). */
  lastId: string | undefined;

  private buf: Buffer = Buffer.alloc(0);
  private headDone = false;
  private chunked = false;
  private length = -1;
  /** Bytes of the current chunk still to come; its closing CRLF follows. */
  private remaining = 0;
  private afterData = false;
  private readonly decoder = new StringDecoder('utf8');
  private text = '';
  private pending: { event: string; id: string | undefined; data: string[] } = { event: 'message', id: undefined, data: [] };
  private readonly socket: net.Socket;

  private constructor(
    readonly url: string,
    headers: Record<string, string>,
  ) {
    const u = new URL(url);
    this.socket = net.connect(Number(u.port), u.hostname);
    this.socket.setNoDelay(true);
    const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, 'Accept: text/event-stream'];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    this.socket.write(lines.join('\r\n') + '\r\n\r\n');
    this.socket.on('data', (d: Buffer) => this.receive(d));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.ended = true;
    });
    opened.add(this);
  }

  /**
   * Opens /v1/sse (params, or a raw query string) and resolves once the answer's head (and an
   * error's body) is in.
   */
  static async open(base: string, params: StreamParams | string, headers: Record<string, string> = {}): Promise<SseClient> {
    const c = new SseClient(`${base}/v1/sse?${typeof params === 'string' ? params : streamQuery(params)}`, headers);
    await until(() => c.status !== 0 && (c.status === 200 || c.body !== undefined || c.closed), 'the SSE answer', 15_000);
    return c;
  }

  /** Opens a stream that must start (200), and waits for its first event (the start id, or messages). */
  static async start(base: string, params: StreamParams, headers: Record<string, string> = {}): Promise<SseClient> {
    const c = await SseClient.open(base, params, headers);
    assert.equal(c.status, 200, `the stream opened: ${JSON.stringify(c.body)}`);
    await c.until(() => c.events.length > 0, 'the first event');
    return c;
  }

  /** Events that carry a message (not the start id, gaps or errors). */
  messageEvents(): SseEvent[] {
    return this.events.filter((e) => e.event === 'message' && e.data !== undefined);
  }

  /** Message events, parsed. */
  messages(): (StreamMessage & { id: string; chunk: number })[] {
    return this.messageEvents().map((e) => ({ ...JSON.parse(e.data!), id: e.id!, chunk: e.chunk }));
  }

  seqs(ch?: string): number[] {
    return this.messages().filter((m) => ch === undefined || m.ch === ch).map((m) => m.seq);
  }

  until(predicate: () => boolean, what: string, limitMs = 15_000): Promise<void> {
    return until(predicate, `${what} (SSE ${new URL(this.url).search})`, limitMs);
  }

  /** Stops reading: the kernel buffers fill, then the server's. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  close(): void {
    opened.delete(this);
    this.socket.destroy();
  }

  private receive(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    if (!this.headDone) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
      this.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!)?.[1]);
      for (const l of lines.slice(1)) {
        const colon = l.indexOf(':');
        this.headers.append(l.slice(0, colon).trim(), l.slice(colon + 1).trim());
      }
      this.headDone = true;
      this.chunked = /chunked/i.test(this.headers.get('transfer-encoding') ?? '');
      this.length = Number(this.headers.get('content-length') ?? -1);
      this.buf = this.buf.subarray(end + 4);
    }
    if (this.status !== 200) {
      if (this.length >= 0 && this.buf.length >= this.length) this.finishError(this.buf.subarray(0, this.length));
      return;
    }
    if (!this.chunked) {
      this.chunks++;
      this.feed(this.decoder.write(this.buf));
      this.buf = Buffer.alloc(0);
      return;
    }
    // Chunked: "<hex>\r\n<data>\r\n"… uWS sends each chunk's closing CRLF with the next chunk,
    // so data is fed as it arrives, not when its chunk is complete.
    for (;;) {
      if (this.remaining > 0) {
        if (this.buf.length === 0) return;
        const take = Math.min(this.remaining, this.buf.length);
        const data = this.buf.subarray(0, take);
        this.buf = this.buf.subarray(take);
        this.remaining -= take;
        this.feed(this.decoder.write(data));
        if (this.remaining === 0) this.afterData = true;
        continue;
      }
      if (this.afterData) {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.afterData = false;
      }
      const eol = this.buf.indexOf('\r\n');
      if (eol === -1) return;
      const size = parseInt(this.buf.subarray(0, eol).toString('latin1'), 16);
      this.buf = this.buf.subarray(eol + 2);
      if (size === 0) {
        this.ended = true;
        return;
      }
      this.chunks++;
      this.remaining = size;
    }
  }

  private finishError(raw: Buffer): void {
    assertMatchesOpenApi({ method: 'GET', url: this.url, status: this.status, headers: this.headers, body: raw });
    this.body = (this.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(raw.toString('utf8')) : raw;
  }

  /** SSE parsing (the WHATWG rules this server's output needs: \n line ends, one space after the colon). */
  private feed(text: string): void {
    if (this.events.length === 0 && this.comments === 0 && this.retries.length === 0 && this.text === '') {
      // The head of a stream that started: as documented.
      assertMatchesOpenApi({ method: 'GET', url: this.url, status: this.status, headers: this.headers, body: Buffer.alloc(0) });
    }
    this.text += text;
    for (;;) {
      const nl = this.text.indexOf('\n');
      if (nl === -1) return;
      const line = this.text.slice(0, nl).replace(/\r$/, '');
      this.text = this.text.slice(nl + 1);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) {
      this.comments++;
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') this.pending.event = value;
    else if (field === 'id') this.pending.id = value;
    else if (field === 'data') this.pending.data.push(value);
    else if (field === 'retry') this.retries.push(Number(value));
    else throw new Error(`unexpected SSE field ${JSON.stringify(line)}`);
  }

  private dispatch(): void {
    const p = this.pending;
    this.pending = { event: 'message', id: undefined, data: [] };
    if (p.id === undefined && p.data.length === 0) return; // a retry line or a blank line
    if (p.id !== undefined) this.lastId = p.id;
    const data = p.data.length > 0 ? p.data.join('\n') : undefined;
    if (data !== undefined) {
      const schema = p.event === 'gap' ? 'SseGap' : p.event === 'error' ? 'Error' : 'SseMessage';
      assert.deepEqual(schemaProblems(schema, JSON.parse(data)), [], `SSE ${p.event} event: ${data}`);
    }
    this.events.push({ event: p.event, id: p.id, data, chunk: this.chunks - 1 });
  }
}

// ---- WebSocket ----

export interface WsFrame {
  messages?: StreamMessage[];
  cursor?: string;
  gap?: boolean;
  gapChannels?: string[];
  retryMs?: number;
  error?: { code: string; message: string };
}

export class WsClient {
  readonly frames: WsFrame[] = [];
  /** Whether each frame came as binary. */
  readonly binary: boolean[] = [];
  closeCode: number | undefined;
  closeReason = '';
  /** The cursor of the last answer frame. */
  cursor: string | undefined;

  private constructor(
    readonly ws: WebSocket,
    readonly msgpack: boolean,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const frame = (isBinary ? unpack(data) : JSON.parse(data.toString('utf8'))) as WsFrame;
      assert.deepEqual(schemaProblems(frame.error ? 'WsError' : 'PollAnswer', frame), [], `frame ${JSON.stringify(frame).slice(0, 300)}`);
      if (!frame.error) this.cursor = frame.cursor;
      this.frames.push(frame);
      this.binary.push(isBinary);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeCode = code;
      this.closeReason = reason.toString('utf8');
    });
    ws.on('error', () => undefined);
    opened.add(this);
  }

  /** Connects to /v1/ws (token in the query or a header; `msgpack`: the holdfast.msgpack subprotocol). */
  static async connect(base: string, options: { msgpack?: boolean; token?: string; headers?: Record<string, string> } = {}): Promise<WsClient> {
    const q = options.token !== undefined ? `?token=${encodeURIComponent(options.token)}` : '';
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/v1/ws${q}`, options.msgpack ? ['holdfast.msgpack'] : [], { headers: options.headers });
    const c = new WsClient(ws, options.msgpack === true);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    if (options.msgpack) assert.equal(ws.protocol, 'holdfast.msgpack');
    return c;
  }

  /** Sends an op (MessagePack when the socket speaks it). */
  send(op: unknown): void {
    this.ws.send(this.msgpack ? pack(op) : JSON.stringify(op));
  }

  /** Sends a subscribe op and waits for its answer frame (the first frame after it). */
  async subscribe(ch: string | string[], extra: { cursor?: string; token?: string } = {}): Promise<WsFrame> {
    const before = this.frames.length;
    this.send({ op: 'subscribe', ch: Array.isArray(ch) ? ch : [ch], ...extra });
    await this.until(() => this.frames.length > before, 'the answer to a subscribe');
    return this.frames[before]!;
  }

  messages(): StreamMessage[] {
    return this.frames.flatMap((f) => f.messages ?? []);
  }

  seqs(ch?: string): number[] {
    return this.messages().filter((m) => ch === undefined || m.ch === ch).map((m) => m.seq);
  }

  errors(): { code: string; message: string }[] {
    return this.frames.flatMap((f) => (f.error ? [f.error] : []));
  }

  get closed(): boolean {
    return this.closeCode !== undefined;
  }

  until(predicate: () => boolean, what: string, limitMs = 15_000): Promise<void> {
    return until(predicate, `${what} (WebSocket)`, limitMs);
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  close(): void {
    opened.delete(this);
    this.ws.terminate();
  }
}

/** Asserts `seqs` is exactly from..to, once each, in order. */
export function assertRun(seqs: number[], from: number, to: number, what: string): void {
  assert.deepEqual(seqs, Array.from({ length: to - from + 1 }, (_, i) => from + i), what);
}

/**
 * `count` channel names starting with `base` that hash to one Redis Cluster slot: channels never
 * published to read the slot's store epoch, so they stand at the very same (epoch, seq).
 */
export function sameSlot(base: string, count: number): string[] {
  const slot = calculateSlot(`${base}-0`);
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) if (calculateSlot(`${base}-${i}`) === slot) out.push(`${base}-${i}`);
  return out;
}

/**
 * Proxies that break streams the way real ones do, made from the recommended nginx
 * configuration (test/proxy/nginx-holdfast.conf):
 * - `no-upgrade`: relays no `Upgrade` (as many corporate proxies): a WebSocket handshake
 *   reaches Holdfast as a plain GET (426) and fails;
 * - `buffering`: that, and it buffers answers (`proxy_buffering on`, ignoring X-Accel-Buffering
 *   as proxies that do not know it do) and compresses them: an event stream arrives late or
 *   never; whole answers (polls) pass.
 */
export function proxyConfig(kind: 'no-upgrade' | 'buffering'): string {
  let conf = readFileSync(RECOMMENDED_CONF, 'utf8');
  const swap = (from: string, to: string) => {
    if (conf.split(from).length !== 2) throw new Error(`${RECOMMENDED_CONF.pathname} must contain "${from}" once`);
    conf = conf.replace(from, to);
  };
  swap('proxy_set_header Connection $holdfast_connection;', 'proxy_set_header Connection "";');
  swap('proxy_set_header Upgrade $http_upgrade;', '');
  conf = conf.replace(/^\s*proxy_set_header Sec-WebSocket-\S+ \S+;\n/gm, '');
  // nginx alone still relays each read at once; compressing what it buffers holds events back
  // until a compression buffer fills, as compressing and scanning proxies do.
  if (kind === 'buffering') swap('proxy_buffering off;', 'proxy_buffering on; proxy_ignore_headers X-Accel-Buffering; gzip on; gzip_types text/event-stream; gzip_min_length 0;');
  return conf;
}

/**
 * Watches the event-loop turns in which the hub is handed notifications, per channel: messages
 * that arrive in one turn must leave in one write, and on Redis one batch's notifications may
 * come in over more than one turn (separate reads of the subscriber connection).
 */
export function watchArrivals(hub: { onMessages(ch: string, messages: unknown[]): void }): { turns(ch: string): number; stop(): void } {
  let turn = 0;
  let ticking = true;
  const tick = () => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const seen = new Map<string, Set<number>>();
  const original = hub.onMessages;
  hub.onMessages = function (ch, messages) {
    (seen.get(ch) ?? seen.set(ch, new Set()).get(ch)!).add(turn);
    return original.call(this, ch, messages);
  };
  return {
    turns: (ch) => seen.get(ch)?.size ?? 0,
    stop() {
      ticking = false;
      hub.onMessages = original;
    },
  };
}

/**
 * The seqs a client following `cursor` with polls gets, until it has `lastSeq` (bounded): an
 * answer may carry fewer than every message waiting, so one poll is not enough to say what a
 * cursor resumes to.
 */
export async function followWithPolls(base: string, ch: string, cursor: string, lastSeq: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < 20 && (seqs.at(-1) ?? 0) < lastSeq; i++) {
    const r = await poll(base, { ch, cursor, timeout: 1000 });
    assert.equal(r.status, 200);
    for (const m of r.body.messages) seqs.push(m.seq);
    cursor = r.body.cursor;
  }
  return seqs;
}
