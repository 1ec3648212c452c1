/**
 * What the commands do to the world: publishes (single, batch, idempotent retries), deletes,
 * channel info, polls (normal, racing a publish, refused by auth) and rewinds. Each checks
 * its own answer against the model and ends at the run's quiescence point.
 */

import * as driver from './driver.js';
import type { BodyKind } from './driver.js';
import { type ChannelModel, type PubRecord, type Shape, count, owesWake, violation } from './model.js';
import { type Client, LONG_TIMEOUT_MS, type Run, WAKE_LIMIT_MS, untilDeadline } from './run.js';
import { type StreamSpec, type StreamTransport, deniedStream, openStream } from './streams.js';

export type IdemChoice = 'none' | 'new' | 'retry' | 'cross';

export interface PublishSpec {
  readonly ch: number;
  readonly kind: BodyKind;
  readonly shape: Shape;
  readonly content: unknown;
  readonly idem: IdemChoice;
  /** Which existing key a retry or cross-channel reuse picks (mod their count). */
  readonly pick: number;
  readonly server: number;
}

export interface BatchItemSpec {
  readonly ch: number;
  readonly shape: Shape;
  readonly content: unknown;
  /** 'repeat': the key of the previous keyed item on the same channel in this batch. */
  readonly idem: IdemChoice | 'repeat';
  readonly pick: number;
}

export interface BatchSpec {
  readonly items: readonly BatchItemSpec[];
  readonly format: 'json' | 'msgpack';
  readonly server: number;
}

let keys = 0;

/** A fresh idempotency key; some look like Redis key syntax (a key is any 1–200 characters). */
function freshKey(): string {
  const n = ++keys;
  return [`k${n}`, `{k${n}}:i:`, `k${n}:*:n`, `q:k${n}`][n % 4]!;
}

/** Resolves an idempotency choice to (channel, key): retries reuse a key where it was used. */
function chooseKey(run: Run, ch: ChannelModel, idem: IdemChoice, pick: number): { ch: ChannelModel; key: string | undefined } {
  if (idem === 'none') return { ch, key: undefined };
  const used = [...run.channelModels.values()].flatMap((c) => [...c.idempotency.keys()].map((k) => ({ ch: c, key: k })));
  if (idem === 'retry' && used.length > 0) return used[pick % used.length]!;
  if (idem === 'cross') {
    // The same key on another channel is another key: it publishes (scoped per channel).
    const elsewhere = used.filter((u) => u.ch !== ch && !ch.idempotency.has(u.key));
    if (elsewhere.length > 0) return { ch, key: elsewhere[pick % elsewhere.length]!.key };
  }
  return { ch, key: freshKey() };
}

/** Applies one publish answer {ch, seq, epoch} to the model (retries publish nothing); says what it was. */
export function acceptResult(run: Run, ch: ChannelModel, rec: PubRecord, key: string | undefined, result: unknown, what: string): string {
  const r = result as { ch?: unknown; seq?: unknown; epoch?: unknown } | null;
  if (!r || r.ch !== ch.name || typeof r.seq !== 'number' || typeof r.epoch !== 'string') {
    violation(`${what}: answer ${JSON.stringify(result)} is not {"ch":${JSON.stringify(ch.name)},"seq":…,"epoch":…}`);
  }
  const known = key === undefined ? undefined : ch.idempotency.get(key);
  if (known && r.seq === known.seq && r.epoch === known.token) {
    count('publish: idempotent retry answered the first result');
    return `${ch.name}#${r.seq}(retry of ${key}: nothing published)`;
  }
  if (known && known.epoch === ch.epoch) {
    violation(`${what}: a retry with key ${key} on ${ch.name} answered #${r.seq} epoch ${r.epoch}; the first answer was #${known.seq} epoch ${known.token} (a retry returns it and publishes nothing)`);
  }
  // A key recorded before a delete may be forgotten with the old epoch (memory) or not (Redis).
  ch.acceptPublish(rec, r.seq, r.epoch, what);
  if (key !== undefined) ch.idempotency.set(key, { seq: r.seq, epoch: ch.epoch, token: r.epoch });
  count('publish: acknowledged');
  return `${ch.name}#${r.seq}`;
}

/** One single publish, answered and applied; no settle (a race command shares it). */
export async function publishNow(run: Run, p: PublishSpec): Promise<void> {
  const chosen = chooseKey(run, run.channelAt(p.ch), p.idem, p.pick);
  const ch = chosen.ch;
  const shape: Shape = p.kind === 'text' ? 'string' : p.shape;
  const rec = run.newPublish(ch, shape, p.content, run.nextOrder());
  const { index, server } = run.serverAt(p.server);
  const what = `publish ${ch.name} ${p.kind}${chosen.key ? ` key=${chosen.key}` : ''}${run.world.servers.length > 1 ? ` @s${index}` : ''}`;
  run.log(`${what} ${JSON.stringify(rec.value).slice(0, 60)}`);
  const reply = await driver.publishOne(server.url, ch.name, p.kind, rec.value, chosen.key);
  run.expectStatus(what, reply, 200);
  run.log(`  ${what} → ${acceptResult(run, ch, rec, chosen.key, reply.body, what)}`);
}

export async function publish(run: Run, p: PublishSpec): Promise<void> {
  await publishNow(run, p);
  await run.settle('after a publish');
}

export async function batch(run: Run, b: BatchSpec): Promise<void> {
  const order = run.nextOrder();
  const planned: { ch: ChannelModel; rec: PubRecord; key: string | undefined }[] = [];
  for (const item of b.items) {
    let chosen: { ch: ChannelModel; key: string | undefined };
    if (item.idem === 'repeat') {
      const ch = run.channelAt(item.ch);
      const prev = [...planned].reverse().find((x) => x.ch === ch && x.key !== undefined);
      chosen = { ch, key: prev?.key ?? freshKey() };
    } else {
      chosen = chooseKey(run, run.channelAt(item.ch), item.idem, item.pick);
    }
    planned.push({ ...chosen, rec: run.newPublish(chosen.ch, item.shape, item.content, order) });
  }
  const { index, server } = run.serverAt(b.server);
  const what = `batch ${b.format}${run.world.servers.length > 1 ? ` @s${index}` : ''} of ${planned.length}`;
  run.log(`${what}: ${planned.map((x) => `${x.ch.name}${x.key ? `(${x.key})` : ''}`).join(' ')}`);
  const items = planned.map((x) => (x.key === undefined ? { ch: x.ch.name, data: x.rec.value } : { ch: x.ch.name, data: x.rec.value, id: x.key }));
  const reply = await driver.publishBatch(server.url, b.format, items);
  run.expectStatus(what, reply, 200);
  const results = (reply.body as { results?: unknown[] }).results;
  if (!Array.isArray(results) || results.length !== planned.length) violation(`${what}: answer ${JSON.stringify(reply.body)} does not list ${planned.length} results`);
  const got = planned.map((x, i) => acceptResult(run, x.ch, x.rec, x.key, results[i], `${what} item ${i}`));
  run.log(`  batch → ${got.join(' ')}`);
  await run.settle('after a batch');
}

export async function deleteChannel(run: Run, chIndex: number, serverPick: number): Promise<void> {
  const ch = run.channelAt(chIndex);
  const { server } = run.serverAt(serverPick);
  const what = `delete ${ch.name}`;
  run.log(what);
  const reply = await driver.deleteChannel(server.url, ch.name);
  run.expectStatus(what, reply, 200);
  const b = reply.body as { ch?: unknown; epoch?: unknown; lastSeq?: unknown; retained?: unknown };
  if (b.ch !== ch.name || b.lastSeq !== 0 || b.retained !== 0) violation(`${what}: answer ${JSON.stringify(b)} is not the emptied channel's info`);
  ch.deleted(b.epoch as string, what);
  count('delete');
  run.log(`  ${what} → epoch #${ch.epoch}`);
  await run.settle('after a delete');
}

export async function channelInfo(run: Run, chIndex: number, serverPick: number): Promise<void> {
  const ch = run.channelAt(chIndex);
  const { index, server } = run.serverAt(serverPick);
  const what = `info ${ch.name}`;
  const mine = [...run.v1].filter((p) => p.server === index && !p.pending.done && p.view.channels.includes(ch.name));
  const reply = await driver.channelInfo(server.url, ch.name);
  run.expectStatus(what, reply, 200);
  const b = reply.body as { ch?: unknown; epoch?: unknown; lastSeq?: unknown; retained?: unknown; pollers?: unknown };
  run.log(`${what} → ${JSON.stringify(b)}`);
  if (b.ch !== ch.name) violation(`${what}: answer names channel ${JSON.stringify(b.ch)}`);
  ch.noteToken(ch.epoch, b.epoch as string, what);
  if (b.lastSeq !== ch.head()) violation(`${what}: lastSeq ${b.lastSeq}, but ${ch.head()} messages were acknowledged in this epoch`);
  const retained = Math.min(ch.head(), ch.retain);
  const shortTtl = run.ttlMs < 3_600_000;
  if (typeof b.retained !== 'number' || b.retained > retained || (!shortTtl && b.retained !== retained)) {
    violation(`${what}: retained ${b.retained}, expected ${retained} (history ${ch.retain})`);
  }
  // A poll may be answering right now (a wake still on its way from Redis, a timeout): only a
  // long poll none of whose channels moved since it was sent must still be counted.
  const quiet = mine.filter((p) => p.view.long && p.sentHeads.every((h, i) => !owesWake(run.channel(p.view.channels[i]!), h))).length;
  // The spec counts "the polls parked on it"; whether an open stream counts too it leaves
  // open (this server counts it), so a stream may count or not.
  const streams = [...run.streams].filter((x) => x.server === index && x.channels.includes(ch.name)).length;
  if (typeof b.pollers !== 'number' || b.pollers < quiet || b.pollers > mine.length + streams) {
    violation(`${what}: pollers ${b.pollers}, but ${mine.length} polls of this run wait on it there (${quiet} of them long, on channels that did not move) and ${streams} streams follow it`);
  }
}

export type PollMode = 'cursor' | 'now' | 'earliest';

export async function poll(run: Run, client: Client, mode: PollMode, max: number | undefined, timeout: 'long' | 'short' | 'clamp', serverPick: number): Promise<void> {
  run.startV1(client, mode, max, timeout === 'long', serverPick, timeout === 'clamp');
  await run.settle(`after ${client.label}'s poll`);
}

/** A poll and a publish on one of its channels, sent together (no quiescence in between). */
export async function race(run: Run, client: Client, chPick: number, p: PublishSpec): Promise<void> {
  const chIndex = run.names.channels.indexOf(client.channels[chPick % client.channels.length]!);
  run.startV1(client, 'cursor', undefined, true, p.server);
  await publishNow(run, { ...p, ch: chIndex, idem: 'none' });
  await run.settle('after a poll raced a publish');
}

/** ungranted: one channel the token does not grant; missing/forged: no valid token; header-wins: a
 * stranger's token in the header beside the client's own in ?token= (the header wins). */
export type DenyHow = 'ungranted' | 'missing' | 'forged' | 'header-wins';

/** What a refused request sends and the status a poll gets for it (a stream is refused alike). */
export interface DeniedRequest {
  readonly channels: string[];
  readonly token: string | undefined;
  readonly queryToken: string | undefined;
  readonly status: number;
  readonly what: string;
}

export function deniedRequest(run: Run, client: Client, how: DenyHow, extra: number): DeniedRequest {
  let channels = [...client.channels];
  let token = client.token;
  let status = 401;
  if (how === 'ungranted') {
    const names = run.names.channels;
    const pick = names.map((_, i) => names[(extra + i) % names.length]!).find((n) => !n.startsWith('pub:') && !client.grants.some((g) => (g.endsWith('*') ? n.startsWith(g.slice(0, -1)) : g === n)));
    channels = [...channels, pick ?? `other:${run.names.tag}z`];
    status = token === undefined ? 401 : 403;
  } else {
    if (!channels.some((n) => !n.startsWith('pub:'))) channels = [...channels, run.names.channels[0]!];
    if (how === 'header-wins') status = 403;
    token = how === 'forged' && token ? `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBA' : 'AAAA'}` : how === 'header-wins' ? run.strangerToken : undefined;
  }
  const queryToken = how === 'header-wins' ? client.token : undefined;
  return { channels, token, queryToken, status, what: how };
}

/** A poll auth must refuse: 403 for a channel the token does not grant, 401 without a valid token. */
export async function deniedPoll(run: Run, client: Client, how: DenyHow, extra: number, serverPick: number): Promise<void> {
  const { server } = run.serverAt(serverPick);
  const { channels, token, queryToken, status } = deniedRequest(run, client, how, extra);
  const what = `denied poll (${how}) ${JSON.stringify(channels)}`;
  run.log(what);
  const pending = driver.startPoll(server.url, { channels, timeoutMs: 1000, format: client.format, token, queryToken });
  await untilDeadline(pending.reply.catch(() => undefined), Date.now() + WAKE_LIMIT_MS);
  if (!pending.done) {
    pending.abort();
    violation(`${what}: parked instead of answering ${status}`);
  }
  const reply = (await pending.reply)!;
  if (reply.status === 200) violation(`${what}: answered 200 ${JSON.stringify(reply.body).slice(0, 300)} (never any data of an ungranted channel)`);
  run.expectStatus(what, reply, status);
  const code = (reply.body as { error?: { code?: unknown } }).error?.code;
  if (typeof code !== 'string') violation(`${what}: error answer without {"error":{"code"}}: ${JSON.stringify(reply.body)}`);
  count(`auth: refused ${status}`);
}

/** The client follows its channels over a stream; a race publishes to one of them as it opens. */
export async function stream(run: Run, client: Client, spec: StreamSpec, race: PublishSpec | undefined): Promise<void> {
  const chIndex = race ? run.names.channels.indexOf(client.channels[race.ch % client.channels.length]!) : -1;
  await openStream(run, client, spec, race ? () => publishNow(run, { ...race, ch: chIndex, idem: 'none' }) : undefined);
  await run.settle(`after ${client.label}'s stream opened`);
}

/** A stream auth must refuse, for the same reasons as a refused poll. */
export async function deniedStreamOf(run: Run, client: Client, transport: StreamTransport, how: DenyHow, extra: number, serverPick: number): Promise<void> {
  await deniedStream(run, transport, deniedRequest(run, client, how, extra), serverPick, WAKE_LIMIT_MS);
}

/** The client polls next with one of its earlier cursors (at-least-once from there). */
export function rewind(run: Run, client: Client, k: number): void {
  const h = client.history[k % client.history.length]!;
  client.cursor = h.cursor;
  client.pos = [...h.pos];
  run.log(`rewind ${client.label} to an earlier cursor`);
}

export { LONG_TIMEOUT_MS };
