/**
 * Worlds: the servers one checker profile drives, started once and shared by every run of it
 * (each run uses channel names of its own).
 *   memory  — one server, the embedded broker
 *   redis   — one server on a real redis-server
 *   two     — two servers sharing one Redis: publishes and polls go to either
 *   cluster — one server on a 3-master Redis Cluster
 * Every world turns subscriber auth on (LP_JWT_SECRET), has a public prefix and a conflated
 * prefix, and a small history so trimming gaps happen within a run.
 */

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type RedisServer, startRedis, startRedisCluster } from '../helpers/redis.js';
import { type TestServer, startTestServer } from '../helpers/server.js';

export type ProfileName = 'memory' | 'redis' | 'two' | 'cluster';
export const ALL_PROFILES: readonly ProfileName[] = ['memory', 'redis', 'two', 'cluster'];

export const CONFLATE_PREFIX = 'px:';
export const PUBLIC_PREFIX = 'pub:';

export interface WorldOptions {
  /** LP_HISTORY_SIZE (per channel and per seed queue). */
  historySize: number;
  /** LP_HISTORY_TTL_S. */
  ttlS: number;
}

export const DEFAULT_WORLD: WorldOptions = { historySize: 12, ttlS: 3600 };

export interface World {
  readonly profile: ProfileName;
  readonly servers: readonly TestServer[];
  readonly options: WorldOptions;
  readonly jwtSecret: string;
  /** "Across channels oldest first" holds (best effort only on Redis Cluster). */
  readonly orderedAcrossChannels: boolean;
  close(): Promise<void>;
}

export function hasRedisServer(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Profiles to run: memory always; the Redis ones when redis-server exists (HOLDFAST_PROFILES narrows). */
export function wantedProfiles(): ProfileName[] {
  const wanted = process.env.HOLDFAST_PROFILES?.split(',').map((s) => s.trim());
  const redis = hasRedisServer();
  return ALL_PROFILES.filter((p) => {
    if (p !== 'memory' && !redis) return false;
    if (!wanted) return true;
    // "redis" in HOLDFAST_PROFILES also selects the two-server world on that Redis.
    return wanted.includes(p) || (p === 'two' && wanted.includes('redis'));
  });
}

export async function startWorld(profile: ProfileName, options: WorldOptions = DEFAULT_WORLD): Promise<World> {
  const jwtSecret = randomBytes(16).toString('hex');
  const env: Record<string, string> = {
    LP_JWT_SECRET: jwtSecret,
    LP_PUBLIC_PREFIXES: PUBLIC_PREFIX,
    LP_CONFLATE_PREFIXES: CONFLATE_PREFIX,
    LP_HISTORY_SIZE: String(options.historySize),
    LP_HISTORY_TTL_S: String(options.ttlS),
  };
  const redisServers: RedisServer[] = [];
  let count = 1;
  if (profile === 'redis' || profile === 'two') {
    const redis = await startRedis();
    redisServers.push(redis);
    env.REDIS_URL = redis.url;
    env.LP_REDIS_PREFIX = redis.uniquePrefix();
    // Unsubscribe at once when a channel's last poll leaves: each poll re-subscribes and must
    // wait for the confirmation before reading (the race "interest before history" closes).
    env.LP_UNSUBSCRIBE_LINGER_MS = profile === 'redis' ? '0' : '200';
    if (profile === 'two') count = 2;
  } else if (profile === 'cluster') {
    const cluster = await startRedisCluster();
    redisServers.push(...cluster.servers);
    env.REDIS_CLUSTER_NODES = cluster.nodes.join(',');
    env.LP_REDIS_PREFIX = cluster.uniquePrefix();
    env.LP_UNSUBSCRIBE_LINGER_MS = '0';
  }
  const servers: TestServer[] = [];
  for (let i = 0; i < count; i++) servers.push(await startTestServer(env));
  return {
    profile,
    servers,
    options,
    jwtSecret,
    orderedAcrossChannels: profile !== 'cluster',
    async close() {
      for (const s of servers) await s.close();
      for (const r of redisServers) {
        await r.stop();
        r.kill();
      }
    },
  };
}

/**
 * Polls this server holds parked, per API: the hub's `parkedCount` (kept by the delivery core
 * for the gauge) and the seed hub's, when it has one (undefined: seed polls are not counted).
 */
export function parkedOn(s: TestServer): { v1: number; seed: number | undefined } {
  const ctx = s.server.context as unknown as { hub: { parkedCount: number }; seed?: { parkedCount?: number } };
  return { v1: ctx.hub.parkedCount, seed: ctx.seed?.parkedCount };
}

/** For a failure message: polls registered (parked or still reading), when the hub says. */
export function registeredOn(s: TestServer): number | undefined {
  return (s.server.context.hub as unknown as { registry?: { size?: number } }).registry?.size;
}

/** Polls registered on `ch` in this server (GET /v1/channels' "pollers"). */
export function pollersOn(s: TestServer, ch: string): number {
  return s.server.context.hub.registry.countOn(ch);
}
