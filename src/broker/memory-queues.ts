/**
 * The embedded seed-queue store: one bounded queue per clientId in this process's memory
 * (when full the oldest message goes), with messages aged out after LP_HISTORY_TTL_S. The
 * memory broker serves its QueueStore half from here.
 */

import type { Config } from '../config.js';
import { Ring } from '../ring.js';
import type { BrokerEvents, QueueStore } from './broker.js';

interface QueuedItem {
  json: string;
  time: number;
}

type QueueEvents = Pick<BrokerEvents, 'queueReady' | 'queueDisconnected'>;

export class MemoryQueueStore implements QueueStore {
  private readonly queues = new Map<string, Ring<QueuedItem>>();
  private readonly ttlMs: number;

  constructor(
    private readonly config: Pick<Config, 'historySize' | 'historyTtlS'>,
    private readonly events: () => QueueEvents | undefined,
    private readonly now: () => number,
  ) {
    this.ttlMs = config.historyTtlS * 1000;
  }

  isAvailable(): boolean {
    return true;
  }

  async queuePush(id: string, json: string): Promise<void> {
    this.queueFor(id).push({ json, time: this.now() });
    this.events()?.queueReady(id);
  }

  async queuePop(id: string): Promise<string | undefined> {
    const queue = this.queues.get(id);
    if (!queue) return undefined;
    const cutoff = this.now() - this.ttlMs;
    let item = queue.shift();
    while (item && item.time <= cutoff) item = queue.shift();
    if (queue.length === 0) this.queues.delete(id);
    return item?.json;
  }

  async queueReturn(id: string, json: string): Promise<void> {
    this.queueFor(id).unshift({ json, time: this.now() });
    this.events()?.queueReady(id);
  }

  async queueClear(id: string): Promise<void> {
    this.queues.delete(id);
    this.events()?.queueDisconnected(id);
  }

  /** Every notification is local: nothing to subscribe to. */
  watchQueue(): undefined {
    return undefined;
  }

  unwatchQueue(): void {}

  /** Drops aged messages and empty queues (the memory broker's sweep calls this). */
  sweep(): void {
    const cutoff = this.now() - this.ttlMs;
    for (const [id, queue] of this.queues) {
      while (queue.length > 0 && queue.at(0).time <= cutoff) queue.shift();
      if (queue.length === 0) this.queues.delete(id);
    }
  }

  private queueFor(id: string): Ring<QueuedItem> {
    let queue = this.queues.get(id);
    if (!queue) this.queues.set(id, (queue = new Ring(this.config.historySize)));
    return queue;
  }
}
