/**
 * The Redis broker: channels in Redis (one server, a Sentinel-managed primary, or a Cluster),
 * so any number of Holdfast processes and machines serve the same channels. Every write is one
 * Lua script (lua/*.lua), atomic on its channel's slot; notifications are hints that travel on
 * per-channel pub/sub channels, and the history list is the truth that every poll re-reads
 * when a hint does not join up.
 *
 * The pieces, each in its own module:
 *   target.ts         where connections go (URL, Sentinel, Cluster), credentials, TLS
 *   commands.ts       the command connection's one way in; failures.ts says what a failure means
 *   subscribers.ts    interest-based subscriptions over K connections (one per master on Cluster)
 *   notifications.ts  envelopes in, decoded in batches, out as broker events
 *   liveness.ts       is Redis answering at all (a frozen Redis keeps its sockets open)
 *   durability.ts     optional WAIT / WAITAOF before a publish is answered
 *   ack-log.ts + audit.ts   the lost-writes audit after Redis comes back
 *   queues.ts         the seed-queue store
 *   watch.ts          per-connection logs (failed connects, losses, recoveries, failovers)
 *
 * Commands are refused (503) while the command connection is down, while Redis does not
 * answer, and when Redis cannot give the durability asked for (LP_REDIS_WAIT_AOF without
 * WAITAOF). The lost-writes audit after a comeback runs while requests are served: a publish
 * that reuses a lost seq before the audit reaches its channel is still caught (the audit
 * compares the acknowledged message with the one stored under its seq).
 */

import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { fingerprint } from '../../cursor.js';
import { BrokerUnavailableError, HoldfastError } from '../../errors.js';
import { Message } from '../../message.js';
import { hasPrefix } from '../../names.js';
import {
  BatchPublishError,
  type Broker,
  type BrokerEvents,
  type ChannelInfo,
  type PublishItem,
  type PublishResult,
  type ReadFrom,
  type ReadResult,
} from '../broker.js';
import { AckLog } from './ack-log.js';
import { auditAcks } from './audit.js';
import { RedisCommands, commandOptions } from './commands.js';
import { Durability } from './durability.js';
import { RedisScriptError } from './failures.js';
import { RedisKeys } from './keys.js';
import { Liveness } from './liveness.js';
import { NotificationIntake } from './notifications.js';
import { ReadGate } from './read-gate.js';
import { RedisQueueStore } from './queues.js';
import { SCRIPTS } from './scripts.js';
import { SubscriberSet, type TopologyChange } from './subscribers.js';
import { RedisTarget } from './target.js';
import { ConnectionWatch, reviveOnEnd, warnUnreachableNodes } from './watch.js';

/** Subscriber connections: Holdfast restores subscriptions itself (sub-connection.ts). */
const SUBSCRIBER_OPTIONS: RedisOptions = {
  connectionName: 'holdfast-sub',
  autoResubscribe: false,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  retryStrategy: (attempt: number) => Math.min(attempt * 100, 2000),
};

type PublishReply = [seq: number, epoch: string, duplicate: number, time: string];

export class RedisBroker implements Broker {
  readonly kind: 'redis' | 'cluster';
  private events: BrokerEvents | undefined;
  private readonly target: RedisTarget;
  private readonly cmd: Redis | Cluster;
  private readonly commands: RedisCommands;
  private readonly subs: SubscriberSet;
  private readonly intake: NotificationIntake;
  private readonly keys: RedisKeys;
  private readonly queues: RedisQueueStore;
  private readonly liveness: Liveness;
  private readonly durability: Durability;
  private readonly acks: AckLog;
  /** Bounds reads in flight, so a storm of re-reads cannot starve publishes and PINGs. */
  private readonly reads = new ReadGate();
  private readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  private closed = false;
  /** The audit after a comeback runs (one at a time; requests are served meanwhile). */
  private auditing = false;
  private auditAgain: string | undefined;
  /** Redis cannot give what the config asks for (LP_REDIS_WAIT_AOF without WAITAOF). */
  private refusedBecause: string | undefined;
  private cmdEverReady = false;
  private readyLogged = false;
  private readonly createdAt = Date.now();
  private readyWaiters: (() => void)[] = [];
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Sentinel mode: sockets already dropped during this silence. */
  private reconnectedInSilence = false;
  /** Where the command connection last found the primary. */
  private primaryAddress = '';

  constructor(
    private readonly config: Config,
    private readonly log?: Logger,
  ) {
    this.target = new RedisTarget(config);
    const cluster = this.target.mode === 'cluster';
    this.kind = cluster ? 'cluster' : 'redis';
    this.keys = new RedisKeys(config.redisPrefix);
    this.publishCommand = cluster ? 'SPUBLISH' : 'PUBLISH';
    const timeoutMs = config.redisCommandTimeoutMs;
    const where = this.target.describe;

    const options = commandOptions(timeoutMs);
    this.cmd = cluster
      ? this.target.cluster({
          // ioredis connects a Cluster node on its first command and refuses the commands that
          // come while it connects, unless they may wait: they were never sent, so waiting is
          // safe, and nothing that was sent is ever re-sent (retryDelayOnFailover: 0).
          enableOfflineQueue: true,
          redisOptions: options,
          scripts: SCRIPTS,
          retryDelayOnFailover: 0,
          slotsRefreshInterval: 1000,
        })
      : this.target.connect({ ...options, scripts: SCRIPTS });
    if (!cluster) new ConnectionWatch(this.cmd as Redis, 'command', where, log);
    this.cmd.on('ready', () => void this.onCommandReady());
    this.cmd.on('close', () => this.readinessChanged());
    reviveOnEnd(this.cmd, () => this.closed, 'command', where, log);
    this.cmd.on('error', (err: Error) => log?.debug({ err: err.message }, 'redis command connection'));
    if (cluster) warnUnreachableNodes(this.cmd as Cluster, log);

    this.commands = new RedisCommands(this.cmd, cluster, { refusal: () => this.refusal(), timedOut: () => this.liveness.timedOut() }, timeoutMs, log);
    this.intake = new NotificationIntake(config, this.keys, () => this.events, log);
    const subEvents = {
      message: (channel: string, payload: Buffer) => this.intake.receive(channel, payload),
      restored: (names: string[]) => this.restored(names),
      changed: () => this.readinessChanged(),
      topology: (change: TopologyChange) => this.onTopology(change),
    };
    const linger = config.unsubscribeLingerMs;
    this.subs = cluster
      ? SubscriberSet.sharded(this.cmd as Cluster, (node) => this.watched(this.target.node(node, SUBSCRIBER_OPTIONS), `shard ${node}`, node), linger, timeoutMs, subEvents, log)
      : SubscriberSet.plain((i) => this.watched(this.target.connect(SUBSCRIBER_OPTIONS), `subscriber ${i + 1}/${config.redisSubscribers}`, where), config.redisSubscribers, linger, timeoutMs, subEvents, log);
    this.intake.setFlow(this.subs);

    this.liveness = new Liveness(() => this.commands.ping(), timeoutMs, {
      silent: () => this.onSilent(),
      answering: () => void this.recover('Redis answers again'),
    }, log);
    this.durability = new Durability(config);
    this.acks = new AckLog(config.redisLossWindowS * 1000);
    this.queues = new RedisQueueStore(this.commands, this.keys, this.subs, config, this.publishCommand, () => this.isAvailable());
  }

  private watched(redis: Redis, label: string, where: string): Redis {
    new ConnectionWatch(redis, label, where, this.log);
    return redis;
  }

  setEvents(events: BrokerEvents): void {
    this.events = events;
  }

  /** Returns at once: with Redis down the server still starts, and /readyz says 503. */
  async start(): Promise<void> {
    this.liveness.start();
    if (this.acks.enabled) {
      this.pruneTimer = setInterval(() => {
        if (this.isAvailable()) this.acks.prune();
      }, 1000);
      this.pruneTimer.unref();
    }
  }

  isReady(): boolean {
    return this.isAvailable() && this.subs.ready();
  }

  isAvailable(): boolean {
    return this.refusal() === undefined;
  }

  /** Why commands are refused now (503), or undefined. */
  private refusal(): string | undefined {
    if (this.closed) return 'the broker is closed';
    if (this.refusedBecause) return this.refusedBecause;
    if (this.cmd.status !== 'ready') return `Redis is not connected (${this.cmd.status}); retry shortly`;
    if (!this.liveness.answering) return `Redis has not answered for ${this.liveness.silentForMs()} ms; retry shortly`;
    return undefined;
  }

  /** Resolves on the event that makes every connection ready, or rejects after timeoutMs. */
  waitReady(timeoutMs: number): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== done);
        const why = this.refusal() ?? (this.subs.ready() ? '' : 'subscriber connections not ready');
        reject(new BrokerUnavailableError(`Redis not ready after ${timeoutMs} ms${why ? `: ${why}` : ''}`));
      }, timeoutMs);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.readyWaiters.push(done);
    });
  }

  private readinessChanged(): void {
    if (!this.isReady()) return;
    if (!this.readyLogged) {
      this.readyLogged = true;
      this.log?.info({ redis: this.target.describe, mode: this.target.mode, afterMs: Date.now() - this.createdAt }, 'redis ready');
    }
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w();
  }

  decodeQueueDepth(): number {
    return this.intake.queueDepth();
  }

  /** The subscriber connections' state, one line each (diagnostics, tests). */
  describeSubscribers(): string[] {
    return this.subs.describe();
  }

  // ---- channels ----

  async publish(item: PublishItem): Promise<PublishResult> {
    const [seq, epoch, , time] = (await this.publishScript(item)) as PublishReply;
    if (this.durability.enabled) await this.confirmDurable([item.ch]);
    this.acks.record(item.ch, epoch, seq, time);
    return { ch: item.ch, seq, epoch };
  }

  async publishBatch(items: readonly PublishItem[]): Promise<PublishResult[]> {
    // Sent back to back (one write per connection per tick); per channel, order is kept
    // because one channel's commands all go to one node over one connection.
    const settled = await Promise.allSettled(items.map((item) => this.publishScript(item)));
    // Every item Redis stored, in batch order; the answer's results are the prefix before the
    // first failure, but the items after it that were stored are acknowledged writes too.
    const stored: PublishResult[] = [];
    const times: string[] = [];
    let failure: Error | undefined;
    let prefix = settled.length;
    for (let i = 0; i < settled.length; i++) {
      const s = settled[i]!;
      if (s.status === 'rejected') {
        if (!failure) [failure, prefix] = [s.reason as Error, stored.length];
        continue;
      }
      const [seq, epoch, , time] = s.value as PublishReply;
      stored.push({ ch: items[i]!.ch, seq, epoch });
      times.push(time);
    }
    if (failure instanceof RedisScriptError) throw failure; // a bug: 500, not a partial 503
    if (this.durability.enabled && stored.length > 0) {
      try {
        await this.confirmDurable(stored.map((r) => r.ch));
      } catch (err) {
        throw new BatchPublishError([], err as Error);
      }
    }
    for (let i = 0; i < stored.length; i++) this.acks.record(stored[i]!.ch, stored[i]!.epoch, stored[i]!.seq, times[i]!);
    if (failure) throw new BatchPublishError(stored.slice(0, prefix), failure, stored.slice(prefix));
    return stored;
  }

  private publishScript(item: PublishItem): Promise<unknown> {
    const { ch } = item;
    const k = this.keys;
    return this.commands.run('hfPublish',
      [k.meta(ch), k.history(ch), k.store(ch), k.idempotency(ch, item.id ?? '')],
      [ch, item.json, this.historySize(ch), this.config.historyTtlS, this.config.channelIdleS, this.config.idempotencyTtlS, k.notify(ch), this.publishCommand, item.id === undefined ? 0 : 1],
      { write: true },
    );
  }

  /** WAIT / WAITAOF on each connection that made these channels' writes. */
  private async confirmDurable(channels: readonly string[]): Promise<void> {
    const conns = new Set<Redis>();
    for (const ch of channels) conns.add(this.commands.connectionFor(this.keys.meta(ch)));
    await Promise.all([...conns].map(async (conn) => {
      try {
        await this.durability.confirm(conn);
      } catch (err) {
        if (err instanceof HoldfastError) throw err;
        throw this.commands.failure(err as Error, this.durability.aof ? 'WAITAOF' : 'WAIT', this.keys.meta(channels[0]!), true);
      }
    }));
  }

  read(ch: string, from: ReadFrom, max: number): Promise<ReadResult> {
    return this.reads.run(() => this.readNow(ch, from, max));
  }

  private async readNow(ch: string, from: ReadFrom, max: number): Promise<ReadResult> {
    const k = this.keys;
    const cursor = typeof from === 'object' ? from : undefined;
    const reply = (await this.commands.run('hfRead', [k.meta(ch), k.history(ch), k.store(ch)], [
      cursor ? 'pos' : (from as string),
      cursor ? cursor.epoch : '',
      cursor ? cursor.seq : 0,
      max,
      this.config.historyTtlS,
      this.config.channelIdleS,
      hasPrefix(ch, this.config.conflatePrefixes) ? 1 : 0,
      cursor && cursor.fp !== 0 ? 1 : 0,
    ], { write: false })) as [string, number, number, number, string, string, ...string[]];
    const [epoch, lastSeq, gap, after, headTime, cursorTime] = reply;
    const messages: Message[] = [];
    for (let i = 6; i < reply.length; i++) {
      const entry = reply[i] as string;
      const bar = entry.indexOf('|');
      messages.push(new Message(ch, after + i - 5, epoch, Number(entry.slice(0, bar)), entry.slice(bar + 1)));
    }
    // The lost-writes rule: the store holds another message under the cursor's seq.
    const lost = cursor !== undefined && cursorTime !== '' && fingerprint(Number(cursorTime)) !== cursor.fp;
    return { epoch, lastSeq, headFp: headTime === '' ? 0 : fingerprint(Number(headTime)), messages, gap: gap === 1 || lost };
  }

  async channelInfo(ch: string): Promise<ChannelInfo> {
    const k = this.keys;
    const [epoch, lastSeq, retained] = (await this.commands.run('hfInfo', [k.meta(ch), k.history(ch), k.store(ch)], [
      this.config.historyTtlS,
      this.config.channelIdleS,
    ], { write: false })) as [string, number, number];
    return { ch, epoch, lastSeq, retained };
  }

  async deleteChannel(ch: string): Promise<ChannelInfo> {
    const k = this.keys;
    const epoch = (await this.commands.run('hfDelete', [k.meta(ch), k.history(ch)], [ch, this.config.channelIdleS, k.notify(ch), this.publishCommand], { write: true })) as string;
    return { ch, epoch, lastSeq: 0, retained: 0 };
  }

  subscribe(ch: string): Promise<void> | undefined {
    return this.subs.add(this.keys.notify(ch));
  }

  unsubscribe(ch: string): void {
    this.subs.remove(this.keys.notify(ch));
  }

  // ---- seed queues (RedisQueueStore) ----

  queuePush(id: string, json: string): Promise<void> {
    return this.queues.queuePush(id, json);
  }

  queuePop(id: string): Promise<string | undefined> {
    return this.queues.queuePop(id);
  }

  queueReturn(id: string, json: string): Promise<void> {
    return this.queues.queueReturn(id, json);
  }

  queueClear(id: string): Promise<void> {
    return this.queues.queueClear(id);
  }

  watchQueue(id: string): Promise<void> | undefined {
    return this.queues.watchQueue(id);
  }

  unwatchQueue(id: string): void {
    this.queues.unwatchQueue(id);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.liveness.stop();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.subs.close();
    await this.intake.close();
    // QUIT waits for Redis; a frozen one would hold the drain forever.
    const quit = this.cmd.quit().catch(() => undefined);
    const timer = new Promise((resolve) => setTimeout(resolve, Math.min(1000, this.config.redisCommandTimeoutMs)).unref());
    await Promise.race([quit, timer]);
    this.cmd.disconnect();
  }

  // ---- coming back ----

  private historySize(ch: string): number {
    return hasPrefix(ch, this.config.conflatePrefixes) ? 1 : this.config.historySize;
  }

  private async onCommandReady(): Promise<void> {
    const again = this.cmdEverReady;
    this.cmdEverReady = true;
    if (this.kind === 'redis') {
      // Another address after a reconnect: a failover. The subscribers may still sit on the
      // old primary (a demoted one keeps relaying, a cut-off one relays nothing): move them.
      const stream = (this.cmd as Redis).stream as { remoteAddress?: string; remotePort?: number } | undefined;
      const address = stream?.remoteAddress ? `${stream.remoteAddress}:${stream.remotePort}` : '';
      if (again && address !== '' && this.primaryAddress !== '' && address !== this.primaryAddress) this.subs.reconnect();
      if (address !== '') this.primaryAddress = address;
    }
    if (!again) this.checkEvictionPolicy();
    if (this.durability.enabled) {
      try {
        const conn = this.kind === 'cluster' ? (this.cmd as Cluster).nodes('master')[0] : (this.cmd as Redis);
        const refusal = conn ? await this.durability.refusal(conn, this.target.describe) : undefined;
        if (refusal && refusal !== this.refusedBecause) this.log?.error({ redis: this.target.describe }, refusal);
        this.refusedBecause = refusal;
      } catch (err) {
        this.log?.debug({ err: (err as Error).message }, 'redis durability check failed; retried on the next connect');
      }
    }
    if (again) await this.recover('Redis reconnected');
    else this.readinessChanged();
  }

  /**
   * Redis is back (reconnected, answering again, or a Cluster failover was seen): audit the
   * acknowledged publishes it may have lost, then have every parked poll re-read.
   * (A cursor read between the comeback and the audit's verdict on its channel still gets its
   * gap from the cursor's fingerprint when it names a lost message, and from the new epoch on
   * its next read otherwise.)
   */
  private async recover(why: string): Promise<void> {
    if (this.closed) return;
    if (this.auditing) {
      this.auditAgain = why;
      return;
    }
    this.reconnectedInSilence = false;
    this.auditing = true;
    try {
      if (this.acks.enabled && this.acks.size > 0) {
        await auditAcks(this.acks, this.commands, this.keys, this.config, this.publishCommand, why, this.log);
      }
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'redis lost-writes audit failed; it runs again when Redis comes back');
    } finally {
      this.auditing = false;
    }
    this.events?.resync();
    this.readinessChanged();
    const next = this.auditAgain;
    this.auditAgain = undefined;
    if (next) await this.recover(next);
  }

  private onSilent(): void {
    // Sentinel: a primary that stopped answering without closing its sockets (a frozen or cut-off
    // host) is dropped after twice the command timeout, so the sentinels can name the new one.
    if (this.target.mode !== 'sentinel' || this.reconnectedInSilence) return;
    const timer = setTimeout(() => {
      if (this.closed || this.liveness.answering || this.reconnectedInSilence) return;
      this.reconnectedInSilence = true;
      this.log?.warn({ silentMs: this.liveness.silentForMs() }, 'redis primary silent: reconnecting through the sentinels');
      (this.cmd as Redis).disconnect(true);
      this.subs.reconnect();
    }, this.config.redisCommandTimeoutMs * 2);
    timer.unref();
  }

  private onTopology(change: TopologyChange): void {
    // A master that vanished from the slot map is a failover: its replica may have lagged.
    if (change.failover) void this.recover('Redis Cluster failover');
  }

  /** Subscriptions hold again after notifications may have been lost: re-read those channels. */
  private restored(names: string[]): void {
    const channels: string[] = [];
    for (const name of names) {
      const target = this.keys.parseNotify(name);
      if (target?.kind === 'channel') channels.push(target.name);
      else if (target?.kind === 'queue') this.events?.queueReady(target.name);
    }
    if (channels.length > 0) this.events?.resync(channels);
    this.readinessChanged();
  }

  private checkEvictionPolicy(): void {
    const client = this.cmd as Redis;
    if (this.kind === 'cluster' || typeof client.config !== 'function') return;
    client.config('GET', 'maxmemory-policy').then(
      (reply) => {
        const policy = (reply as string[])[1];
        if (policy && policy !== 'noeviction') {
          this.log?.warn({ policy }, 'Redis maxmemory-policy is not noeviction: eviction would silently renumber channels');
        }
      },
      () => undefined, // CONFIG may be disabled on managed Redis
    );
  }
}
