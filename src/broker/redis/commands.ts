/**
 * The command connection's one way in: every script runs through `run()`, which refuses at
 * once while Redis is known to be unavailable, and turns any failure into what it means
 * (failures.ts): 503 for an outage or a timeout (telling a writer its write may have been
 * stored), 500 for a script bug, logged with the script and the key it was given.
 *
 * The connection itself never queues or re-sends: while Redis is away a command fails at once,
 * and a write whose reply was lost is not sent again by the client library — a retrying
 * publisher uses an Idempotency-Key (packages.md: without this ioredis stores a message twice
 * across a reconnect). On Cluster, "failover" retries (a command resent after its node's
 * connection closed mid-command) are off for the same reason; MOVED, ASK, TRYAGAIN and
 * CLUSTERDOWN are retried by ioredis, since Redis did not run the command.
 */

import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { BrokerUnavailableError } from '../../errors.js';
import { commandFailure, failureKind } from './failures.js';
import type { SCRIPTS } from './scripts.js';

export type ScriptName = keyof typeof SCRIPTS;

/** Command-connection options: fail fast while disconnected, never re-send. */
export function commandOptions(timeoutMs: number): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectionName: 'holdfast-cmd',
    commandTimeout: timeoutMs,
    // A primary demoted by a failover answers writes with READONLY: reconnect (through the
    // sentinels, in Sentinel mode) without re-sending the command (1, not 2).
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
  };
}

export interface CommandGate {
  /** Why commands are refused now, or undefined when they may run. */
  refusal(): string | undefined;
  /** A command timed out: Redis may have stopped answering. */
  timedOut(): void;
}

export interface RunOptions {
  /** A write: a failure after sending may have stored it. */
  write: boolean;
}

export class RedisCommands {
  constructor(
    readonly client: Redis | Cluster,
    private readonly cluster: boolean,
    private readonly gate: CommandGate,
    private readonly timeoutMs: number,
    private readonly log: Logger | undefined,
  ) {}

  async run(name: ScriptName, keys: string[], args: (string | number)[], options: RunOptions): Promise<unknown> {
    const refusal = this.gate.refusal();
    if (refusal !== undefined) throw new BrokerUnavailableError(refusal);
    const fn = (this.client as unknown as Record<ScriptName, (...a: (string | number)[]) => Promise<unknown>>)[name];
    try {
      return await fn.call(this.client, ...keys, ...args);
    } catch (err) {
      throw this.failure(err as Error, name, keys[0] ?? '', options.write);
    }
  }

  /** What a failed command means to its caller; logs bugs and notes timeouts. */
  failure(err: Error, name: string, key: string, write: boolean): Error {
    const kind = failureKind(err);
    if (kind === 'timeout') this.gate.timedOut();
    if (kind === 'bug') this.log?.error({ script: name, key, err: err.message }, 'a Redis script failed: this is a bug (answered 500), not an outage');
    else if (kind === 'refused') this.log?.error({ script: name, key, err: err.message }, 'Redis refused a command for lack of permission: check the ACL of the Redis user');
    else this.log?.debug({ script: name, key, err: err.message }, 'redis command failed');
    return commandFailure(err, name, key, write, this.timeoutMs);
  }

  /**
   * The connection that ran (or runs) commands for `key`: the one client, or on Cluster the
   * master of the key's slot (WAIT must go to the connection that made the write).
   */
  connectionFor(key: string): Redis {
    if (!this.cluster) return this.client as Redis;
    const cluster = this.client as Cluster;
    const master = cluster.slots[calculateSlot(key)]?.[0];
    const node = cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === master);
    if (!node) throw new BrokerUnavailableError(`no Redis Cluster master is known for ${key}; retry shortly`);
    return node;
  }

  /** PING every node that serves commands (the liveness probe). */
  ping(): Promise<unknown> {
    if (this.cluster) return Promise.all((this.client as Cluster).nodes('master').map((n) => n.ping()));
    return (this.client as Redis).ping();
  }
}
