/**
 * Logs a person can act on, for each Redis connection:
 *
 *   warn  "redis connect failed"      each failed attempt, with where (no password) and why
 *   warn  "redis connection lost"     a ready connection dropped
 *   warn  "redis connection back"     ready again, with how long it was away (awayMs)
 *   warn  "redis primary changed"     ready again on another address: a failover was seen
 *
 * ioredis reports a failed connect as an 'error' event while the connection is not ready;
 * errors on a ready connection are command-level and logged where the command failed.
 */

import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';

export class ConnectionWatch {
  private downSince = 0;
  private everReady = false;
  private attempts = 0;
  private address = '';

  constructor(
    private readonly redis: Redis,
    /** Which connection: "command", "subscriber 1/2", "shard 10.0.0.1:7000". */
    private readonly label: string,
    /** Where it goes, without password. */
    private readonly where: string,
    private readonly log: Logger | undefined,
    private readonly now: () => number = Date.now,
  ) {
    redis.on('error', (err: Error) => this.onError(err));
    redis.on('ready', () => this.onReady());
    redis.on('close', () => this.onClose());
  }

  /** Since when the connection has been down (0 while it is ready). */
  get down(): number {
    return this.downSince;
  }

  private onError(err: Error): void {
    if (this.redis.status === 'ready') return;
    this.attempts++;
    this.log?.warn({ conn: this.label, redis: this.where, attempt: this.attempts, err: err.message }, 'redis connect failed');
  }

  private onClose(): void {
    if (this.downSince !== 0) return;
    this.downSince = this.now();
    if (this.everReady) this.log?.warn({ conn: this.label, redis: this.where, address: this.address }, 'redis connection lost');
  }

  private onReady(): void {
    const stream = this.redis.stream as { remoteAddress?: string; remotePort?: number } | undefined;
    const address = stream?.remoteAddress ? `${stream.remoteAddress}:${stream.remotePort}` : '';
    if (this.everReady && this.downSince !== 0) {
      const awayMs = this.now() - this.downSince;
      this.log?.warn({ conn: this.label, redis: this.where, awayMs, attempts: this.attempts }, 'redis connection back');
    }
    if (this.everReady && address !== '' && this.address !== '' && address !== this.address) {
      this.log?.warn({ conn: this.label, redis: this.where, from: this.address, to: address }, 'redis primary changed (failover)');
    }
    if (address !== '') this.address = address;
    this.everReady = true;
    this.downSince = 0;
    this.attempts = 0;
  }
}

/** ioredis gives up on a connection in some cases (status "end"): Holdfast never does. */
export function reviveOnEnd(client: Redis | Cluster, closed: () => boolean, label: string, where: string, log: Logger | undefined): void {
  client.on('end', () => {
    if (closed()) return;
    log?.warn({ conn: label, redis: where }, 'redis connection ended; connecting it again');
    setTimeout(() => {
      if (!closed() && client.status === 'end') client.connect().catch(() => undefined);
    }, 1000).unref();
  });
}

/** ioredis reports a Cluster node it cannot reach on every slot refresh: once per node per 5 s is enough. */
export function warnUnreachableNodes(cluster: Cluster, log: Logger | undefined): void {
  const lastWarned = new Map<string, number>();
  cluster.on('node error', (err: Error, node: string) => {
    const now = Date.now();
    if (now - (lastWarned.get(node) ?? 0) < 5000) return;
    lastWarned.set(node, now);
    log?.warn({ node, err: err.message }, 'redis cluster node unreachable');
  });
}
