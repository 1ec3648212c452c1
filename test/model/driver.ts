/**
 * The HTTP driver: every request the checker makes, over real HTTP (fetch) to a real server,
 * with bodies in JSON, text or MessagePack and answers decoded by their Content-Type. Nothing
 * here judges an answer; run.ts does, against the model.
 */

import { SignJWT } from 'jose';
import { pack, unpack } from 'msgpackr';

export type BodyKind = 'json' | 'text' | 'msgpack';
export type AnswerFormat = 'json' | 'msgpack';

export interface Reply {
  status: number;
  /** JSON or MessagePack decoded; the raw text otherwise. */
  body: any;
  at: number;
}

const TYPES: Record<BodyKind, string> = {
  json: 'application/json',
  text: 'text/plain; charset=utf-8',
  msgpack: 'application/msgpack',
};

export function encode(kind: BodyKind, value: unknown): { type: string; body: string | Blob } {
  if (kind === 'msgpack') return { type: TYPES.msgpack, body: new Blob([new Uint8Array(pack(value))]) };
  if (kind === 'text') return { type: TYPES.text, body: String(value) };
  return { type: TYPES.json, body: JSON.stringify(value) };
}

async function decode(res: Response): Promise<Reply> {
  const raw = Buffer.from(await res.arrayBuffer());
  const type = res.headers.get('content-type') ?? '';
  let body: unknown = raw.toString('utf8');
  try {
    if (type.startsWith('application/json')) body = JSON.parse(raw.toString('utf8'));
    else if (type.startsWith('application/msgpack')) body = unpack(raw);
  } catch (err) {
    body = { undecodable: String(err), raw: raw.toString('utf8').slice(0, 200) };
  }
  return { status: res.status, body, at: Date.now() };
}

export async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  return decode(await fetch(url, init));
}

export function publishOne(base: string, ch: string, kind: BodyKind, value: unknown, idempotencyKey?: string): Promise<Reply> {
  const { type, body } = encode(kind, value);
  const headers: Record<string, string> = { 'content-type': type };
  if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
  return call(`${base}/v1/publish/${encodeURIComponent(ch)}`, { method: 'POST', headers, body });
}

export interface BatchItem {
  ch: string;
  data: unknown;
  id?: string;
}

export function publishBatch(base: string, kind: 'json' | 'msgpack', items: readonly BatchItem[]): Promise<Reply> {
  const { type, body } = encode(kind, { messages: items });
  return call(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': type }, body });
}

export function deleteChannel(base: string, ch: string): Promise<Reply> {
  return call(`${base}/v1/channels/${encodeURIComponent(ch)}`, { method: 'DELETE' });
}

export function channelInfo(base: string, ch: string): Promise<Reply> {
  return call(`${base}/v1/channels/${encodeURIComponent(ch)}`);
}

export function seedPush(base: string, clientId: string, message: unknown): Promise<Reply> {
  return call(`${base}/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ clientId, message }) });
}

export function seedDisconnect(base: string, clientId: string): Promise<Reply> {
  return call(`${base}/disconnect?clientId=${encodeURIComponent(clientId)}`, { method: 'DELETE' });
}

/** A request that may be aborted while the server holds it (a parked poll). */
export class Pending {
  private readonly controller = new AbortController();
  /** The answer, or undefined when aborted before one arrived. */
  readonly reply: Promise<Reply | undefined>;
  done = false;
  aborted = false;

  constructor(url: string, headers: Record<string, string>) {
    this.reply = fetch(url, { headers, signal: this.controller.signal })
      .then(decode)
      .catch((err: unknown) => {
        if (this.aborted) return undefined;
        throw err;
      })
      .finally(() => {
        this.done = true;
      });
    // Judged later (run.ts awaits it); never an unhandled rejection meanwhile.
    this.reply.catch(() => undefined);
  }

  abort(): void {
    if (this.done || this.aborted) return;
    this.aborted = true;
    this.controller.abort();
  }
}

export interface PollRequest {
  channels: readonly string[];
  cursor?: string | undefined;
  max?: number | undefined;
  timeoutMs?: number | undefined;
  format: AnswerFormat;
  token?: string | undefined;
  /** Send the token as ?token= instead of the Authorization header. */
  tokenInQuery?: boolean;
  /** A ?token= sent besides the header's token (the header wins). */
  queryToken?: string | undefined;
}

export function startPoll(base: string, r: PollRequest): Pending {
  const q = new URLSearchParams();
  for (const ch of r.channels) q.append('ch', ch);
  if (r.cursor !== undefined) q.set('cursor', r.cursor);
  if (r.max !== undefined) q.set('max', String(r.max));
  if (r.timeoutMs !== undefined) q.set('timeout', String(r.timeoutMs));
  const headers: Record<string, string> = {};
  if (r.format === 'msgpack') headers.accept = 'application/msgpack';
  if (r.token !== undefined) {
    if (r.tokenInQuery) q.set('token', r.token);
    else headers.authorization = `Bearer ${r.token}`;
  }
  if (r.queryToken !== undefined) q.set('token', r.queryToken);
  return new Pending(`${base}/v1/poll?${q}`, headers);
}

export function startSeedPoll(base: string, clientId: string, timeoutMs: number, token: string | undefined): Pending {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return new Pending(`${base}/poll?clientId=${encodeURIComponent(clientId)}&timeout=${timeoutMs}`, headers);
}

/** An HS256 subscriber token granting `channels` (names or prefix* patterns), valid 1 h. */
export function mintToken(secret: string, channels: readonly string[]): Promise<string> {
  return new SignJWT({ channels: [...channels] })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret));
}
