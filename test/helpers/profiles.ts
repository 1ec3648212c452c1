/**
 * Broker profiles (as in Nchan's test suite): the contract suite runs once per profile.
 * memory always; redis and cluster when redis-server is on the machine (.ci/run installs it).
 * HOLDFAST_PROFILES=memory,redis narrows the run.
 */

import { after, before } from 'node:test';
import { execFileSync } from 'node:child_process';

export interface Profile {
  readonly name: 'memory' | 'redis' | 'cluster';
  /** Starts what the profile needs (once per test file) and returns its environment. */
  setup(): Promise<Record<string, string>>;
}

function hasRedis(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const ALL: Profile[] = [
  { name: 'memory', setup: async () => ({}) },
  {
    name: 'redis',
    setup: async () => {
      const { startRedis } = await import('./redis.js');
      const redis = await startRedis();
      return { REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix() };
    },
  },
  {
    name: 'cluster',
    setup: async () => {
      const { startRedisCluster } = await import('./redis.js');
      const cluster = await startRedisCluster();
      return { REDIS_CLUSTER_NODES: cluster.nodes.join(','), LP_REDIS_PREFIX: cluster.uniquePrefix() };
    },
  },
];

export function profiles(): Profile[] {
  const wanted = process.env.HOLDFAST_PROFILES?.split(',').map((s) => s.trim());
  const redis = hasRedis();
  return ALL.filter((p) => (wanted ? wanted.includes(p.name) : true) && (p.name === 'memory' || redis));
}

/** Runs `body` once per profile, with the profile's environment resolved in a before() hook. */
export function eachProfile(body: (profile: Profile, env: () => Record<string, string>) => void): void {
  for (const profile of profiles()) {
    let env: Record<string, string> | undefined;
    before(async () => {
      env = await profile.setup();
    });
    after(async () => {
      if (profile.name !== 'memory') await (await import('./redis.js')).stopAllRedis();
    });
    body(profile, () => {
      if (!env) throw new Error('profile environment used before setup');
      return env;
    });
  }
}
