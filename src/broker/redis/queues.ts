/**
 * The seed-queue store on Redis: one bounded list per clientId (lua/queue.lua: push, pop,
 * return, clear, each atomic), and a notification channel per queue that the processes with
 * a seed poll waiting for that clientId subscribe to. The Redis broker serves its QueueStore
 * half from here.
 */

import type { Config } from '../../config.js';
import type { QueueStore } from '../broker.js';
import type { RedisCommands } from './commands.js';
import type { RedisKeys } from './keys.js';
import type { SubscriberSet } from './subscribers.js';

export class RedisQueueStore implements QueueStore {
  constructor(
    private readonly commands: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly subs: SubscriberSet,
    private readonly config: Pick<Config, 'historySize' | 'historyTtlS'>,
    private readonly publishCommand: 'PUBLISH' | 'SPUBLISH',
    readonly isAvailable: () => boolean,
  ) {}

  async queuePush(id: string, json: string): Promise<void> {
    await this.op('push', id, json);
  }

  async queuePop(id: string): Promise<string | undefined> {
    const r = await this.op('pop', id, '');
    return typeof r === 'string' ? r : undefined;
  }

  async queueReturn(id: string, json: string): Promise<void> {
    await this.op('return', id, json);
  }

  async queueClear(id: string): Promise<void> {
    await this.op('clear', id, '');
  }

  watchQueue(id: string): Promise<void> | undefined {
    return this.subs.add(this.keys.queueNotify(id));
  }

  unwatchQueue(id: string): void {
    this.subs.remove(this.keys.queueNotify(id));
  }

  private op(op: string, id: string, json: string): Promise<unknown> {
    return this.commands.run('hfQueue', [this.keys.queue(id)], [op, json, this.config.historySize, this.config.historyTtlS, this.keys.queueNotify(id), this.publishCommand], { write: false });
  }
}
