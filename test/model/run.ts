/**
 * One checker run: a fresh set of names on a running world, the reference model, the clients
 * and their outstanding polls. Every command ends in `settle()`, the quiescence point the run
 * controls:
 *   1. the servers hold exactly the polls the run has not seen answered (nothing in setup,
 *      every abort processed), so each of them is parked;
 *   2. a parked poll owed a wake (an acknowledged message after its position, a delete, a
 *      seed push or disconnect) must answer within WAKE_LIMIT_MS — the only timed rule;
 *   3. every answer is checked against the model (validate.ts), in the order polls were sent.
 * A poll is never asserted to have answered before such a point.
 */

import type { TestServer } from '../helpers/server.js';
import { type AnswerFormat, type Pending, type Reply, deleteChannel, startPoll } from './driver.js';
import {
  ChannelModel,
  type Floor,
  type Pos,
  type PubRecord,
  type PushRecord,
  SeedModel,
  type Shape,
  type Start,
  Violation,
  count,
  floorOf,
  owesWake,
  showPos,
  showStart,
  violation,
  wrapPayload,
} from './model.js';
import { HASH_TWINS, type RunNames, runNames } from './names.js';
import { type ModelView, type PollBody, type PollView, checkPollAnswer } from './validate.js';
import { CONFLATE_PREFIX, PUBLIC_PREFIX, type World, parkedOn, registeredOn } from './world.js';

export const LONG_TIMEOUT_MS = 30_000;
export const SHORT_TIMEOUT_MS = 1000;
/** How long a parked poll that is owed a wake may take to answer (loopback: normally < 10 ms). */
export const WAKE_LIMIT_MS = Number(process.env.HOLDFAST_MODEL_WAKE_MS ?? 3000);
const SETTLE_LIMIT_MS = 10_000;
const DEFAULT_MAX = 100;

export interface ClientSpec {
  /** Indices into the run's channel universe (mod its length); duplicates collapse. */
  readonly channels: readonly number[];
  readonly format: AnswerFormat;
  /** exact: the token lists the client's channels; pattern: `<tag>*`-style prefixes. */
  readonly token: 'exact' | 'pattern';
  readonly tokenInQuery: boolean;
}

export interface RunSpec {
  readonly clients: readonly ClientSpec[];
}

export class Client {
  pos: (Pos | undefined)[];
  /** One cursor for every transport: a poll, an SSE stream or a WebSocket resumes from it. */
  cursor: string | undefined;
  /** Earlier cursors with the positions they stood for (a client may poll with an old one). */
  readonly history: { cursor: string; pos: Pos[] }[] = [];
  poll: V1Poll | undefined;
  /** Its open SSE or WebSocket stream (never at the same time as a poll). */
  stream: StreamLike | undefined;

  constructor(
    readonly label: string,
    readonly channels: readonly string[],
    readonly format: AnswerFormat,
    readonly token: string | undefined,
    readonly grants: readonly string[],
    readonly tokenInQuery: boolean,
  ) {
    this.pos = channels.map(() => undefined);
  }
}

/**
 * An open SSE or WebSocket stream of one client (streams.ts). Until the run closes it, it is
 * one waiter on its server (the hub's parked count includes streams).
 */
export interface StreamLike {
  readonly label: string;
  readonly server: number;
  readonly channels: readonly string[];
  /** Its request (SSE) or subscribe op (WebSocket) went out: the server holds a waiter for it. */
  readonly counted: boolean;
  /** Checks every frame or event received so far against the model. */
  process(): void;
  /** Owes a frame: its first one, or messages up to the head of a channel it follows. */
  owes(): boolean;
  /** Something arrived that process() has not seen yet, or the connection closed. */
  hasNews(): boolean;
  /** Where it stands, for a failure message. */
  describe(): string;
  /** Consumes (checks) what arrived unless `judge` is false, then closes the connection. */
  close(judge?: boolean): void;
}

export interface V1Poll {
  readonly client: Client;
  readonly server: number;
  readonly pending: Pending;
  readonly view: PollView;
  readonly floors: (Floor | undefined)[];
  /** Each channel's epoch and head when the poll was sent. */
  readonly sentHeads: readonly Floor[];
}

export interface SeedPoll {
  readonly label: string;
  readonly id: string;
  readonly server: number;
  readonly pending: Pending;
  readonly long: boolean;
  /** Another poll for the same id was outstanding meanwhile: no oldest-first check. */
  concurrent: boolean;
  /** A disconnect happened while it waited: it owes a {"status":"timeout"} answer. */
  disconnected: boolean;
}

export type SeedHooks = {
  onSeedAnswer(p: SeedPoll, reply: Reply | undefined): void;
};

export class Run implements ModelView {
  readonly names: RunNames;
  readonly clients: Client[] = [];
  readonly channelModels = new Map<string, ChannelModel>();
  readonly pubs = new Map<string | number, PubRecord>();
  readonly pushes = new Map<string, PushRecord>();
  readonly seeds = new Map<string, SeedModel>();
  readonly v1 = new Set<V1Poll>();
  readonly seedPolls = new Set<SeedPoll>();
  readonly streams = new Set<StreamLike>();
  readonly ttlMs: number;
  readonly orderedAcrossChannels: boolean;
  seedHooks: SeedHooks | undefined;
  /** Grants the run's seed clientIds; the stranger's grants nothing of this run. */
  seedToken = '';
  strangerToken = '';
  private base: { v1: number; seed: number | undefined }[];
  private serial = 0;
  private commandOrder = 0;
  private readonly lines: string[] = [];
  private readonly t0 = Date.now();
  private lastSettled = Date.now();

  private constructor(readonly world: World) {
    this.names = runNames();
    this.ttlMs = world.options.ttlS * 1000;
    this.orderedAcrossChannels = world.orderedAcrossChannels;
    this.base = world.servers.map(parkedOn);
    for (const name of this.names.channels) {
      const conflated = name.startsWith(CONFLATE_PREFIX);
      this.channelModels.set(name, new ChannelModel(name, conflated, name.startsWith(PUBLIC_PREFIX), conflated ? 1 : world.options.historySize));
    }
    for (const id of this.names.seedIds) this.seeds.set(id, new SeedModel(id, world.options.historySize, this.ttlMs));
  }

  static async create(world: World, spec: RunSpec, mint: (grants: readonly string[]) => Promise<string>): Promise<Run> {
    const run = new Run(world);
    const { tag, channels } = run.names;
    for (let i = 0; i < spec.clients.length; i++) {
      const c = spec.clients[i]!;
      const names = [...new Set(c.channels.map((k) => channels[k % channels.length]!))];
      const guarded = names.filter((n) => !n.startsWith(PUBLIC_PREFIX));
      const grants = c.token === 'pattern' ? [`${tag}*`, `q:${tag}*`, `${CONFLATE_PREFIX}${tag}*`, ...HASH_TWINS] : guarded;
      // A poll of public channels only needs no token; such a client sends none.
      const token = guarded.length > 0 ? await mint(grants) : undefined;
      run.clients.push(new Client(`c${i}`, names, c.format, token, grants, c.tokenInQuery));
    }
    await run.resetHashTwins();
    run.seedToken = await mint(run.names.seedIds);
    run.strangerToken = await mint([`other:${tag}*`]);
    run.base.forEach((b, i) => {
      if (b.v1 + (b.seed ?? 0) > 0) run.log(`(server ${i} already held ${b.v1} + ${b.seed} parked polls when this run began)`);
    });
    run.log(`run ${tag} on ${world.profile}: ${run.clients.map((c) => `${c.label}=${JSON.stringify(c.channels)}/${c.format}/${c.grants.length ? 'token' : 'public'}`).join(' ')}`);
    return run;
  }

  /** The twins are shared by every run: each run starts them in a fresh, empty epoch. */
  private async resetHashTwins(): Promise<void> {
    for (const name of HASH_TWINS) {
      const reply = await deleteChannel(this.world.servers[0]!.url, name);
      this.expectStatus(`reset ${name}`, reply, 200);
      this.channel(name).noteToken(0, (reply.body as { epoch: string }).epoch, `reset ${name}`);
    }
  }

  // ---- bookkeeping --------------------------------------------------------------------

  log(line: string): void {
    this.lines.push(`${String(Date.now() - this.t0).padStart(5)}ms ${line}`);
  }

  transcript(last = 80): string {
    const skipped = this.lines.length - last;
    return (skipped > 0 ? [`  … ${skipped} earlier lines`] : []).concat(this.lines.slice(-last).map((l) => `  ${l}`)).join('\n');
  }

  channel(name: string): ChannelModel {
    const c = this.channelModels.get(name);
    if (!c) violation(`unknown channel ${name}`);
    return c;
  }

  publishByKey(key: string | number): PubRecord | undefined {
    return this.pubs.get(key);
  }

  channelAt(i: number): ChannelModel {
    return this.channel(this.names.channels[i % this.names.channels.length]!);
  }

  serverAt(i: number): { index: number; server: TestServer } {
    const index = i % this.world.servers.length;
    return { index, server: this.world.servers[index]! };
  }

  nextOrder(): number {
    return ++this.commandOrder;
  }

  /** A fresh payload: `shape` around `content`, carrying a unique id. */
  newPublish(ch: ChannelModel, shape: Shape, content: unknown, order: number): PubRecord {
    const n = ++this.serial;
    const key = `${this.names.tag}#${n}`;
    const num = 1_000_000_000 + n;
    const value = wrapPayload(shape, key, num, content);
    const rec: PubRecord = { key: shape === 'number' ? num : key, ch: ch.name, value, order, sentAt: Date.now(), acked: false, epoch: -1, seq: -1 };
    this.pubs.set(rec.key, rec);
    return rec;
  }

  newPush(id: string, content: unknown): PushRecord {
    const key = `${this.names.tag}#${++this.serial}`;
    const seed = this.seeds.get(id)!;
    const rec: PushRecord = { key, id, value: { '#': key, v: content }, sentAt: Date.now(), state: 'sent', index: seed.pushes.length };
    seed.pushes.push(rec);
    this.pushes.set(key, rec);
    return rec;
  }

  /** No 5xx, ever; and the status the contract names. */
  expectStatus(what: string, reply: Reply, status: number): void {
    if (reply.status >= 500) violation(`${what}: answered ${reply.status} ${JSON.stringify(reply.body)?.slice(0, 300)} (no 5xx, ever)`);
    if (reply.status !== status) violation(`${what}: answered ${reply.status} ${JSON.stringify(reply.body)?.slice(0, 300)}, expected ${status}`);
  }

  // ---- polls ----------------------------------------------------------------------------

  /** Sends a poll for `client`: from its cursor, from now, or from the earliest retained. */
  /** How a request of `client` starts (its cursor when it has one), as the model sees it now. */
  startsFor(client: Client, mode: 'cursor' | 'now' | 'earliest'): { how: 'cursor' | 'now' | 'earliest'; starts: Start[] } {
    const useCursor = mode === 'cursor' && client.cursor !== undefined && client.pos.every((p) => p !== undefined);
    const how = useCursor ? 'cursor' : mode === 'cursor' ? 'now' : mode;
    const starts: Start[] = client.channels.map((name, i) => {
      const ch = this.channel(name);
      if (how !== 'cursor') return { k: how, e: ch.epoch, acked: ch.head() };
      const pos = client.pos[i]!;
      return { k: 'cursor', pos, e: ch.epoch, acked: ch.head(Math.min(pos.e, ch.epoch)) };
    });
    return { how, starts };
  }

  startV1(client: Client, mode: 'cursor' | 'now' | 'earliest', max: number | undefined, long: boolean, serverPick: number, clampLow = false): V1Poll {
    const { how, starts } = this.startsFor(client, mode);
    const { index, server } = this.serverAt(serverPick);
    const timeoutMs = long ? LONG_TIMEOUT_MS : clampLow ? 1 : SHORT_TIMEOUT_MS;
    const label = `poll ${client.label}${this.world.servers.length > 1 ? `@s${index}` : ''}`;
    const pending = startPoll(server.url, {
      channels: client.channels,
      cursor: how === 'cursor' ? client.cursor : how === 'earliest' ? 'earliest' : undefined,
      max,
      timeoutMs,
      format: client.format,
      token: client.token,
      tokenInQuery: client.tokenInQuery,
    });
    const view: PollView = { label, channels: client.channels, starts, max: max ?? DEFAULT_MAX, long };
    const sentHeads = client.channels.map((name) => ({ e: this.channel(name).epoch, s: this.channel(name).head() }));
    const poll: V1Poll = { client, server: index, pending, view, floors: starts.map(floorOf), sentHeads };
    this.v1.add(poll);
    client.poll = poll;
    this.log(`${label} ${how}${max !== undefined ? ` max=${max}` : ''} ${long ? 'long' : `timeout=${timeoutMs}`} ${client.format} from [${starts.map(showStart).join(', ')}]`);
    return poll;
  }

  abortV1(client: Client): void {
    const poll = client.poll;
    if (!poll || poll.pending.done) return;
    poll.pending.abort();
    this.v1.delete(poll);
    client.poll = undefined;
    this.log(`abort ${poll.view.label}`);
    count('poll: aborted while parked');
  }

  private onV1Answer(poll: V1Poll, reply: Reply | undefined): void {
    const client = poll.client;
    if (client.poll === poll) client.poll = undefined;
    if (!reply) return;
    this.expectStatus(poll.view.label, reply, 200);
    const body = reply.body as PollBody;
    const msgs = Array.isArray(body?.messages) ? body.messages.map((m) => `${m.ch}#${m.seq}`).join(' ') : '?';
    this.log(`  ${poll.view.label} → [${msgs}]${body?.gap ? ` gap ${JSON.stringify(body.gapChannels)}` : ''}`);
    const next = checkPollAnswer(poll.view, body, this, Date.now());
    client.pos = next;
    client.cursor = body.cursor;
    client.history.push({ cursor: body.cursor, pos: next });
    if (client.history.length > 4) client.history.shift();
    this.log(`    ${client.label} now at [${next.map(showPos).join(', ')}]`);
    count(body.messages.length > 0 ? 'poll: answered with messages' : body.gap ? 'poll: answered gap only' : 'poll: timed out empty');
    count('poll: messages checked', body.messages.length);
    if (poll.client.format === 'msgpack') count('poll: MessagePack answers');
  }

  // ---- quiescence ---------------------------------------------------------------------

  /** Steps 1–3 of the header comment; every command ends here. */
  async settle(what: string): Promise<void> {
    await this.quiesce(what);
    this.setFloors();
    await this.processAnswers();
    await this.awaitOwedWakes(what);
    await this.awaitStreams(what, Date.now() + WAKE_LIMIT_MS);
    await this.quiesce(what);
    await this.processAnswers();
    const took = Date.now() - this.lastSettled;
    if (took > 500) {
      count('steps slower than 500 ms');
      this.log(`(that step took ${took} ms)`);
    }
    this.lastSettled = Date.now();
  }

  private outstanding(server: number): { v1: number; seed: number } {
    let v1 = 0;
    let seed = 0;
    for (const p of this.v1) if (p.server === server && !p.pending.done) v1++;
    for (const s of this.streams) if (s.server === server && s.counted) v1++;
    for (const p of this.seedPolls) if (p.server === server && !p.pending.done) seed++;
    return { v1, seed };
  }

  private settled(): boolean {
    return this.world.servers.every((s, i) => {
      const held = parkedOn(s);
      const mine = this.outstanding(i);
      if (held.v1 - this.base[i]!.v1 !== mine.v1) return false;
      if (held.seed !== undefined && held.seed - (this.base[i]!.seed ?? 0) !== mine.seed) return false;
      // On Redis a seed poll is only sure to hear pushes and disconnects once its queue is watched.
      const seedHub = (s.server.context as unknown as { seed?: { isWatching?(id: string): boolean } }).seed;
      for (const p of this.seedPolls) if (p.server === i && !p.pending.done && seedHub?.isWatching && !seedHub.isWatching(p.id)) return false;
      return true;
    });
  }

  async quiesce(what: string): Promise<void> {
    if (await waitFor(() => this.settled(), SETTLE_LIMIT_MS)) return;
    const detail = this.world.servers
      .map((s, i) => {
        const held = parkedOn(s);
        const mine = this.outstanding(i);
        const reading = registeredOn(s) === undefined ? '' : `, ${registeredOn(s)! - held.v1} still reading`;
        const streams = [...this.streams].filter((x) => x.server === i && x.counted).length;
        return `server ${i}: parked v1 ${held.v1 - this.base[i]!.v1}${reading} (run has ${mine.v1} outstanding, ${streams} of them streams), seed ${(held.seed ?? NaN) - (this.base[i]!.seed ?? 0)} (run has ${mine.seed})`;
      })
      .join('; ');
    violation(`${what}: the server did not settle within ${SETTLE_LIMIT_MS} ms (a poll neither answered nor parked, or a parked slot leaked): ${detail}`);
  }

  /** A poll without an exact floor gets one once parked: the heads as they stand now. */
  private setFloors(): void {
    for (const p of this.v1) {
      if (p.pending.done) continue;
      p.view.channels.forEach((name, i) => {
        if (p.floors[i] === undefined) {
          const ch = this.channel(name);
          p.floors[i] = { e: ch.epoch, s: ch.head() };
        }
      });
    }
  }

  /** Checks every answer that arrived, in the order the polls were sent. */
  async processAnswers(): Promise<void> {
    for (const s of this.streams) s.process();
    for (const p of [...this.v1]) {
      if (!p.pending.done || !this.v1.has(p)) continue;
      this.v1.delete(p);
      this.onV1Answer(p, await this.replyOf(p.view.label, p.pending));
    }
    for (const p of [...this.seedPolls]) {
      if (!p.pending.done || !this.seedPolls.has(p)) continue;
      this.seedPolls.delete(p);
      this.seedHooks?.onSeedAnswer(p, await this.replyOf(p.label, p.pending));
    }
  }

  private async replyOf(label: string, pending: Pending): Promise<Reply | undefined> {
    try {
      return await pending.reply;
    } catch (err) {
      return violation(`${label}: the request failed: ${(err as Error).message} ${(err as { cause?: Error }).cause?.message ?? ''}`);
    }
  }

  private owes(p: V1Poll): boolean {
    return p.floors.some((f, i) => f !== undefined && owesWake(this.channel(p.view.channels[i]!), f));
  }

  private seedOwes(p: SeedPoll): boolean {
    return p.disconnected || this.seeds.get(p.id)!.queued().length > 0;
  }

  /**
   * Parked polls owed an answer get WAKE_LIMIT_MS to give it. Seed polls with a timeout of
   * 1 s count too: a message is queued for them now, and an abort while one is being handed
   * over could lose it (allowed by the contract), so none stays outstanding past here.
   */
  private async awaitOwedWakes(what: string): Promise<void> {
    const deadline = Date.now() + WAKE_LIMIT_MS;
    const owed = [...this.v1].filter((p) => p.view.long && !p.pending.done && this.owes(p));
    if (owed.length > 0) {
      count('poll: parked after a command, owed a wake', owed.length);
      await untilDeadline(Promise.all(owed.map((p) => p.pending.reply.catch(() => undefined))), deadline);
      const late = owed.filter((p) => !p.pending.done);
      if (late.length > 0) {
        const why = late.map((p) => `${p.view.label} on ${JSON.stringify(p.view.channels)} parked at [${p.floors.map((f) => (f ? `e${f.e}#${f.s}` : '?')).join(', ')}]`);
        const heads = [...new Set(late.flatMap((p) => p.view.channels))].map((n) => `${n} e${this.channel(n).epoch}#${this.channel(n).head()}`);
        violation(`${what}: ${why.join('; ')} did not answer within ${WAKE_LIMIT_MS} ms although the channel moved on (heads: ${heads.join(', ')})`);
      }
    }
    for (;;) {
      await this.processAnswers();
      const stuck = [...this.seedPolls].filter((p) => !p.pending.done && this.seedOwes(p));
      if (stuck.length === 0) return;
      if (Date.now() >= deadline) {
        violation(`${what}: ${stuck.map((p) => `${p.label} (${p.disconnected ? 'disconnected' : `${this.seeds.get(p.id)!.queued().length} queued`})`).join('; ')} did not answer within ${WAKE_LIMIT_MS} ms`);
      }
      await untilDeadline(Promise.race(stuck.map((p) => p.pending.reply.catch(() => undefined))), deadline);
    }
  }

  /**
   * Streams owed a frame (their first, or messages up to a head) get until `deadline` to have
   * delivered it; every frame is checked as it is consumed.
   */
  async awaitStreams(what: string, deadline: number): Promise<void> {
    let waited = false;
    for (;;) {
      for (const s of this.streams) s.process();
      const owed = [...this.streams].filter((s) => s.owes());
      if (owed.length === 0) return;
      if (!waited) count('stream: owed a frame after a command', owed.length);
      waited = true;
      if (Date.now() >= deadline) {
        const heads = [...new Set(owed.flatMap((s) => s.channels))].map((n) => `${n} e${this.channel(n).epoch}#${this.channel(n).head()}`);
        violation(`${what}: ${owed.map((s) => s.describe()).join('; ')} did not deliver within ${WAKE_LIMIT_MS} ms although the channel moved on (heads: ${heads.join(', ')})`);
      }
      await waitFor(() => owed.some((s) => s.hasNews()), deadline - Date.now());
    }
  }

  /** Waits (bounded) for the outstanding short polls to answer, as they must by their timeout. */
  async awaitShortPolls(): Promise<void> {
    const short = [...this.v1].filter((p) => !p.view.long && !p.pending.done);
    this.log(`wait for ${short.length} short polls to time out`);
    await untilDeadline(Promise.all(short.map((p) => p.pending.reply.catch(() => undefined))), Date.now() + SHORT_TIMEOUT_MS + WAKE_LIMIT_MS);
    const late = short.filter((p) => !p.pending.done);
    if (late.length > 0) violation(`${late.map((p) => p.view.label).join(', ')}: no answer ${SHORT_TIMEOUT_MS + WAKE_LIMIT_MS} ms after a poll with timeout=${SHORT_TIMEOUT_MS}`);
    await this.settle('after the short polls timed out');
  }

  /** Ends every outstanding poll without judging it (after a failure, or between runs). */
  async dispose(): Promise<void> {
    for (const p of this.v1) p.pending.abort();
    for (const p of this.seedPolls) p.pending.abort();
    for (const s of [...this.streams]) s.close(false);
    this.streams.clear();
    this.v1.clear();
    this.seedPolls.clear();
    await waitFor(() => this.settled(), SETTLE_LIMIT_MS);
  }
}

/** Checks `predicate` on every loop turn (then every ms) until it holds or `limitMs` passes. */
export async function waitFor(predicate: () => boolean, limitMs: number): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  for (let i = 0; ; i++) {
    if (predicate()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => (i < 200 ? setImmediate(r) : setTimeout(r, 1)));
  }
}

/** Resolves when `p` settles or at `deadline`, whichever is first. */
export async function untilDeadline(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))));
  await Promise.race([p, limit]);
  clearTimeout(timer);
}

export { Violation };
