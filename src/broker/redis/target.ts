/**
 * Where Holdfast's Redis connections go, built from the config in one place:
 *
 *   REDIS_URL            one Redis (redis:// or rediss://, credentials in the URL)
 *   REDIS_SENTINELS      the primary the sentinels name REDIS_SENTINEL_NAME; every connection
 *                        asks them again after a disconnect, and drops itself when they
 *                        announce a failover (+switch-master)
 *   REDIS_CLUSTER_NODES  a Cluster; commands through ioredis's Cluster client, notifications
 *                        through one plain connection per master (see subscribers.ts)
 *
 * Passwords never reach the logs: `describe` and `nodeLabel` redact them.
 */

import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { type Config, redisMode } from '../../config.js';

type TargetConfig = Pick<
  Config,
  | 'redisUrl'
  | 'redisClusterNodes'
  | 'redisSentinels'
  | 'redisSentinelName'
  | 'redisSentinelPassword'
  | 'redisSentinelTls'
  | 'redisUsername'
  | 'redisPassword'
  | 'redisTls'
>;

export type TargetMode = 'redis' | 'sentinel' | 'cluster';

function parseNode(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}

/** A URL with its password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable URL)';
  }
}

export class RedisTarget {
  readonly mode: TargetMode;
  /** Where the connections go, for logs (no password). */
  readonly describe: string;

  constructor(private readonly config: TargetConfig) {
    const mode = redisMode(config);
    if (mode === 'memory') throw new Error('RedisTarget needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES');
    this.mode = mode;
    if (mode === 'redis') this.describe = redactUrl(config.redisUrl!);
    else if (mode === 'sentinel') this.describe = `sentinel ${config.redisSentinelName} via ${config.redisSentinels.join(',')}`;
    else this.describe = `cluster ${config.redisClusterNodes.join(',')}`;
  }

  /** Credentials and TLS of the data nodes in Sentinel and Cluster mode (a URL carries its own). */
  private nodeAuth(): RedisOptions {
    const c = this.config;
    return {
      ...(c.redisUsername ? { username: c.redisUsername } : {}),
      ...(c.redisPassword ? { password: c.redisPassword } : {}),
      ...(c.redisTls ? { tls: {} } : {}),
    };
  }

  /** A connection to the one Redis (or the sentinels' current primary). */
  connect(options: RedisOptions): Redis {
    const c = this.config;
    if (this.mode === 'redis') return new Redis(c.redisUrl!, options);
    if (this.mode !== 'sentinel') throw new Error('connect() is for REDIS_URL and Sentinel mode');
    return new Redis({
      ...options,
      ...this.nodeAuth(),
      sentinels: c.redisSentinels.map(parseNode),
      name: c.redisSentinelName!,
      ...(c.redisSentinelPassword ? { sentinelPassword: c.redisSentinelPassword } : {}),
      ...(c.redisSentinelTls ? { sentinelTLS: {} } : {}),
      ...(c.redisTls ? { enableTLSForSentinelMode: true } : {}),
      // Keep asking the sentinels while none answers (ioredis gives up by default). ioredis's
      // failoverDetector stays off: a failover it reports while a connection is being set up
      // ends that connection for good (status "end"). A dead primary closes the sockets
      // anyway, a demoted one answers READONLY (commands.ts reconnects on it), and a silent
      // one is dropped by the broker (liveness.ts).
      sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 100, 2000),
    });
  }

  /** The Cluster client for commands. */
  cluster(options: ClusterOptions): Cluster {
    if (this.mode !== 'cluster') throw new Error('cluster() is for REDIS_CLUSTER_NODES');
    return new Cluster(this.config.redisClusterNodes.map(parseNode), {
      ...options,
      redisOptions: { ...options.redisOptions, ...this.nodeAuth() },
    });
  }

  /** A plain connection to one Cluster node ("host:port" as the cluster announces it). */
  node(nodeKey: string, options: RedisOptions): Redis {
    return new Redis({ ...options, ...this.nodeAuth(), ...parseNode(nodeKey) });
  }
}
