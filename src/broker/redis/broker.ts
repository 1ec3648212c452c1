/**
 * The Redis broker: channels in Redis (or Redis Cluster), so any number of Holdfast processes
 * and machines serve the same channels. Every write is one Lua script (lua/*.lua), atomic on
 * its channel's slot; notifications are hints that travel on per-channel pub/sub channels, and
 * the history list is the truth that every poll re-reads when a hint does not join up.
 *
 * The command connection never queues or re-sends: while Redis is away a command fails at once
 * (503 broker_unavailable), and a publish whose reply was lost is not sent again by the client
 * library — a retrying publisher uses an Idempotency-Key (packages.md: without this ioredis
 * stores a message twice across a reconnect).
 */

import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { BrokerUnavailableError } from '../../errors.js';
import { fingerprint } from '../../cursor.js';
import { Message } from '../../message.js';
import { hasPrefix } from '../../names.js';
import { type Decoder, InlineDecoder, PoolDecoder } from '../../decode/pool.js';
import type { Decoded } from '../../decode/envelope.js';
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
import { RedisKeys } from './keys.js';
import { SCRIPTS } from './scripts.js';
import { SubscriberSet } from './subscribers.js';

type ScriptName = keyof typeof SCRIPTS;
type Client = Redis | Cluster;

/** Command-connection options: fail fast while disconnected, never re-send. */
const COMMAND_OPTIONS: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  connectionName: 'holdfast-cmd',
};

const SUBSCRIBER_OPTIONS: RedisOptions = {
  connectionName: 'holdfast-sub',
  // Keep subscribing while Redis is away; subscriptions are restored on reconnect.
  maxRetriesPerRequest: null,
};

function parseNode(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}

export class RedisBroker implements Broker {
  readonly kind: 'redis' | 'cluster';
  private events: BrokerEvents | undefined;
  private readonly cmd: Client;
  private readonly subs: SubscriberSet;
  private readonly decoder: Decoder;
  private readonly keys: RedisKeys;
  private readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  private envelopes: Buffer[] = [];
  private flushScheduled = false;
  /** Keeps pool-decoded batches in arrival order. */
  private delivery: Promise<void> = Promise.resolve();
  private closed = false;
  /** waitReady() callers, resolved by the connections' 'ready' events. */
  private readyWaiters: (() => void)[] = [];

  constructor(
    private readonly config: Config,
    private readonly log?: Logger,
  ) {
    const cluster = config.redisClusterNodes.length > 0;
    this.kind = cluster ? 'cluster' : 'redis';
    this.keys = new RedisKeys(config.redisPrefix);
    this.publishCommand = cluster ? 'SPUBLISH' : 'PUBLISH';
    const nodes = config.redisClusterNodes.map(parseNode);

    this.cmd = cluster
      ? new Cluster(nodes, { enableOfflineQueue: false, redisOptions: COMMAND_OPTIONS, scripts: SCRIPTS })
      : new Redis(config.redisUrl!, { ...COMMAND_OPTIONS, scripts: SCRIPTS });
    let readyBefore = false;
    this.cmd.on('ready', () => {
      if (readyBefore) this.events?.resync();
      else this.checkEvictionPolicy();
      readyBefore = true;
      this.wakeReadyWaiters();
    });
    this.cmd.on('error', (err: Error) => this.log?.debug({ err: err.message }, 'redis command connection'));

    const subEvents = {
      message: (channel: string, payload: Buffer) => this.onNotification(channel, payload),
      reconnect: () => this.events?.resync(),
      ready: () => this.wakeReadyWaiters(),
      error: (err: Error) => this.log?.debug({ err: err.message }, 'redis subscriber connection'),
    };
    this.subs = cluster
      ? SubscriberSet.sharded(() => new Cluster(nodes, { shardedSubscribers: true, redisOptions: SUBSCRIBER_OPTIONS }), config.unsubscribeLingerMs, subEvents)
      : SubscriberSet.plain(() => new Redis(config.redisUrl!, SUBSCRIBER_OPTIONS), config.redisSubscribers, config.unsubscribeLingerMs, subEvents);

    this.decoder = config.decodeThreads > 0 ? new PoolDecoder(config.decodeThreads) : new InlineDecoder();
    this.decoder.onDrain(() => this.subs.resume());
  }

  setEvents(events: BrokerEvents): void {
    this.events = events;
  }

  /** Returns at once: with Redis down the server still starts, and /readyz says 503. */
  async start(): Promise<void> {}

  isReady(): boolean {
    return !this.closed && this.cmd.status === 'ready' && this.subs.ready();
  }

  isAvailable(): boolean {
    return !this.closed && this.cmd.status === 'ready';
  }

  /** Resolves on the 'ready' event that makes every connection ready, or rejects after timeoutMs. */
  waitReady(timeoutMs: number): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== done);
        reject(new BrokerUnavailableError(`Redis not ready after ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.readyWaiters.push(done);
    });
  }

  private wakeReadyWaiters(): void {
    if (!this.isReady()) return;
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w();
  }

  decodeQueueDepth(): number {
    return this.decoder.queueDepth();
  }

  // ---- channels ----

  async publish(item: PublishItem): Promise<PublishResult> {
    const [seq, epoch] = (await this.publishScript(item)) as [number, string, number];
    return { ch: item.ch, seq, epoch };
  }

  async publishBatch(items: readonly PublishItem[]): Promise<PublishResult[]> {
    // Sent back to back (one write per connection per tick); per channel, order is kept
    // because one channel's commands all go to one node over one connection.
    const settled = await Promise.allSettled(items.map((item) => this.publishScript(item)));
    const results: PublishResult[] = [];
    for (let i = 0; i < settled.length; i++) {
      const s = settled[i]!;
      if (s.status === 'rejected') throw new BatchPublishError(results, s.reason as Error);
      const [seq, epoch] = s.value as [number, string];
      results.push({ ch: items[i]!.ch, seq, epoch });
    }
    return results;
  }

  private publishScript(item: PublishItem): Promise<unknown> {
    const { ch } = item;
    const k = this.keys;
    return this.run('hfPublish',
      [k.meta(ch), k.history(ch), k.store(ch), k.idempotency(ch, item.id ?? '')],
      [ch, item.json, this.historySize(ch), this.config.historyTtlS, this.config.channelIdleS, this.config.idempotencyTtlS, k.notify(ch), this.publishCommand, item.id === undefined ? 0 : 1],
    );
  }

  async read(ch: string, from: ReadFrom, max: number): Promise<ReadResult> {
    const k = this.keys;
    const cursor = typeof from === 'object' ? from : undefined;
    const reply = (await this.run('hfRead', [k.meta(ch), k.history(ch), k.store(ch)], [
      cursor ? 'pos' : (from as string),
      cursor ? cursor.epoch : '',
      cursor ? cursor.seq : 0,
      max,
      this.config.historyTtlS,
      this.config.channelIdleS,
      hasPrefix(ch, this.config.conflatePrefixes) ? 1 : 0,
      cursor && cursor.fp !== 0 ? 1 : 0,
    ])) as [string, number, number, number, string, string, ...string[]];
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
    const [epoch, lastSeq, retained] = (await this.run('hfInfo', [k.meta(ch), k.history(ch), k.store(ch)], [
      this.config.historyTtlS,
      this.config.channelIdleS,
    ])) as [string, number, number];
    return { ch, epoch, lastSeq, retained };
  }

  async deleteChannel(ch: string): Promise<ChannelInfo> {
    const k = this.keys;
    const epoch = (await this.run('hfDelete', [k.meta(ch), k.history(ch)], [ch, this.config.channelIdleS, k.notify(ch), this.publishCommand])) as string;
    return { ch, epoch, lastSeq: 0, retained: 0 };
  }

  subscribe(ch: string): Promise<void> | undefined {
    return this.subs.add(this.keys.notify(ch));
  }

  unsubscribe(ch: string): void {
    this.subs.remove(this.keys.notify(ch));
  }

  // ---- seed queues ----

  async queuePush(id: string, json: string): Promise<void> {
    await this.queueOp('push', id, json);
  }

  async queuePop(id: string): Promise<string | undefined> {
    const r = await this.queueOp('pop', id, '');
    return typeof r === 'string' ? r : undefined;
  }

  async queueReturn(id: string, json: string): Promise<void> {
    await this.queueOp('return', id, json);
  }

  async queueClear(id: string): Promise<void> {
    await this.queueOp('clear', id, '');
  }

  watchQueue(id: string): Promise<void> | undefined {
    return this.subs.add(this.keys.queueNotify(id));
  }

  unwatchQueue(id: string): void {
    this.subs.remove(this.keys.queueNotify(id));
  }

  private queueOp(op: string, id: string, json: string): Promise<unknown> {
    return this.run('hfQueue', [this.keys.queue(id)], [op, json, this.config.historySize, this.config.historyTtlS, this.keys.queueNotify(id), this.publishCommand]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.subs.close();
    await this.decoder.close();
    try {
      await this.cmd.quit();
    } catch {
      this.cmd.disconnect();
    }
  }

  // ---- plumbing ----

  private historySize(ch: string): number {
    return hasPrefix(ch, this.config.conflatePrefixes) ? 1 : this.config.historySize;
  }

  /** Runs a script; any failure to reach Redis becomes 503 broker_unavailable. */
  private async run(name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    if (this.cmd.status !== 'ready') throw new BrokerUnavailableError(`Redis is not connected (${this.cmd.status}); retry shortly`);
    const fn = (this.cmd as unknown as Record<ScriptName, (...a: (string | number)[]) => Promise<unknown>>)[name];
    try {
      return await fn.call(this.cmd, ...keys, ...args);
    } catch (err) {
      this.log?.warn({ err: (err as Error).message, script: name }, 'redis command failed');
      throw new BrokerUnavailableError(`Redis command failed: ${(err as Error).message}`);
    }
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

  private onNotification(channel: string, payload: Buffer): void {
    const target = this.keys.parseNotify(channel);
    if (!target) return;
    if (target.kind === 'queue') {
      if (payload.length === 1 && payload[0] === 0x64 /* d */) this.events?.queueDisconnected(target.name);
      else this.events?.queueReady(target.name);
      return;
    }
    this.envelopes.push(payload);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushEnvelopes());
    }
  }

  /** Decodes this turn's envelopes as one batch and hands them to the core, in order. */
  private flushEnvelopes(): void {
    this.flushScheduled = false;
    const batch = this.envelopes;
    this.envelopes = [];
    const decoded = this.decoder.decode(batch);
    if (Array.isArray(decoded)) {
      this.dispatch(decoded);
      return;
    }
    // Settle at once (so a failure is never an unhandled rejection), deliver in batch order.
    const settled = decoded.then(
      (d) => ({ d, err: undefined }),
      (err: unknown) => ({ d: [] as Decoded[], err }),
    );
    this.delivery = this.delivery
      .then(() => settled)
      .then(({ d, err }) => {
        if (err) {
          this.log?.error({ err }, 'decode failed; re-reading history');
          this.events?.resync();
        } else {
          this.dispatch(d);
        }
      })
      .catch((err: unknown) => this.log?.error({ err }, 'delivery failed'));
    if (this.decoder.saturated) this.subs.pause();
  }

  private dispatch(decoded: Decoded[]): void {
    const byChannel = new Map<string, Message[]>();
    for (const d of decoded) {
      if (!(d instanceof Message)) {
        this.events?.reset(d.ch, d.epoch);
        continue;
      }
      const list = byChannel.get(d.ch);
      if (list) list.push(d);
      else byChannel.set(d.ch, [d]);
    }
    for (const [ch, list] of byChannel) this.events?.messages(ch, list);
  }
}
