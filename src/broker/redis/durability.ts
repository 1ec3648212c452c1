/**
 * Optional synchronous durability: a publish answers 200 only once its write is on
 * LP_REDIS_WAIT_REPLICAS replicas (WAIT), and with LP_REDIS_WAIT_AOF on the primary's AOF on
 * disk too (WAITAOF, Redis 7.2+). WAIT and WAITAOF cover every write made so far on the
 * connection they are sent on, so they go to the connection (the Cluster node) that ran the
 * publish, right after it; one call covers a whole batch.
 *
 * The wait is bounded by half of LP_REDIS_COMMAND_TIMEOUT_MS, so Redis answers it before the
 * client-side timeout would. Not confirmed in time: 503, and the message may survive or not,
 * so the publisher retries with the same Idempotency-Key (a retry that finds the key rewrites
 * it, so its own WAIT covers the first write too).
 */

import type { Redis } from 'ioredis';
import type { Config } from '../../config.js';
import { BrokerUnavailableError } from '../../errors.js';

export class Durability {
  readonly replicas: number;
  readonly aof: boolean;
  private readonly waitMs: number;

  constructor(config: Pick<Config, 'redisWaitReplicas' | 'redisWaitAof' | 'redisCommandTimeoutMs'>) {
    this.replicas = config.redisWaitReplicas;
    this.aof = config.redisWaitAof;
    this.waitMs = Math.max(1, Math.floor(config.redisCommandTimeoutMs / 2));
  }

  get enabled(): boolean {
    return this.replicas > 0 || this.aof;
  }

  /**
   * Why this server cannot give what was asked for, or undefined when it can. Checked on every
   * (re)connect: a failover may land on another Redis version.
   */
  async refusal(conn: Redis, where: string): Promise<string | undefined> {
    if (!this.aof) return undefined;
    const info = (await conn.call('COMMAND', 'INFO', 'WAITAOF')) as unknown[];
    if (Array.isArray(info) && info[0]) {
      const appendonly = (await conn.call('CONFIG', 'GET', 'appendonly').catch(() => [])) as string[];
      if (appendonly[1] === 'no') return `LP_REDIS_WAIT_AOF=1 but the Redis at ${where} runs with appendonly no: turn the AOF on, or unset LP_REDIS_WAIT_AOF`;
      return undefined;
    }
    const server = (await conn.info('server').catch(() => '')) as string;
    const version = /redis_version:(\S+)/.exec(server)?.[1] ?? 'unknown';
    return `LP_REDIS_WAIT_AOF=1 needs WAITAOF (Redis 7.2 or newer), but the Redis at ${where} is version ${version}: upgrade it, or unset LP_REDIS_WAIT_AOF`;
  }

  /** Waits until every write made so far on `conn` is as durable as configured; throws 503 otherwise. */
  async confirm(conn: Redis): Promise<void> {
    if (this.aof) {
      const [local, replicas] = (await conn.call('WAITAOF', 1, this.replicas, this.waitMs)) as [number, number];
      if (local < 1 || replicas < this.replicas) {
        throw notConfirmed(`the AOF of ${local < 1 ? 'the primary' : `${this.replicas - replicas} of ${this.replicas} replicas`} did not confirm it within ${this.waitMs} ms`);
      }
      return;
    }
    const acked = await conn.wait(this.replicas, this.waitMs);
    if (acked < this.replicas) throw notConfirmed(`${acked} of the ${this.replicas} replicas of LP_REDIS_WAIT_REPLICAS confirmed it within ${this.waitMs} ms`);
  }
}

function notConfirmed(why: string): BrokerUnavailableError {
  return new BrokerUnavailableError(`the message is on the Redis primary but not yet durable (${why}); it may be lost in a failover: retry with the same Idempotency-Key`);
}
