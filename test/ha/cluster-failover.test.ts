/**
 * Redis Cluster failover under load, with real processes: three masters with a replica each.
 * First a master is killed (its replica takes over after cluster-node-timeout), then another
 * shard is failed over by hand (CLUSTER FAILOVER on its replica: the graceful way). Through
 * both, publishers publish with Idempotency-Keys and retry 503s, and followers follow cursors
 * on their own: they recover without help, nothing acknowledged is missing without a gap,
 * and the graceful failover loses nothing at all.
 */

import assert from 'node:assert/strict';
import calculateSlot from 'cluster-key-slot';
import { after, describe, it } from 'node:test';
import { type RedisCluster, clusterLayout, startRedisCluster, stopAllRedis } from '../helpers/redis.js';
import { until } from '../helpers/server.js';
import { type Ack, Follower, checkLedger, publishAcked, startHaServer } from './harness.js';

const CHANNELS = ['c-1', 'c-2', 'c-3', 'c-4', 'c-5', 'c-6', 'c-7', 'c-8', 'c-9'];

/** The master serving `ch` now, and its replica. */
async function shardOf(cluster: RedisCluster, ch: string) {
  const layout = await clusterLayout(cluster.servers.find((s) => s.alive)!);
  const slot = calculateSlot(ch);
  const master = layout.find((n) => n.master && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b))!;
  const replica = layout.find((n) => !n.master && n.masterId === master.id && !n.failed);
  const server = (address: string | undefined) => cluster.servers.find((s) => s.address === address);
  return { master: server(master.address)!, replica: server(replica?.address) };
}

describe('Redis Cluster with a replica per shard: failovers under load', () => {
  after(() => stopAllRedis());

  it('a killed master and a CLUSTER FAILOVER: clients recover on their own, nothing is lost silently', async (t) => {
    const cluster = await startRedisCluster({ replicas: 1 });
    const s = await startHaServer({ REDIS_CLUSTER_NODES: cluster.nodes.join(','), LP_REDIS_PREFIX: 'cf:', LP_REDIS_COMMAND_TIMEOUT_MS: '1000' });
    const url = () => s.url;
    const followers = CHANNELS.map((ch) => new Follower(url, [ch]));
    followers.push(new Follower(url, CHANNELS.slice(0, 5)), new Follower(url, CHANNELS.slice(4)));
    try {
      await Promise.all(followers.map((f) => f.start()));
      const acks: Ack[] = [];
      const stats = { retries: 0 };
      let next = 0;
      let stop = false;
      const publishers = CHANNELS.map(async (ch) => {
        while (!stop) {
          const a = await publishAcked(url, ch, `${ch}#${next++}`, Date.now() + 30_000, stats);
          assert.ok(a, 'a publish was never acknowledged');
          acks.push(a);
          await new Promise((r) => setTimeout(r, 10));
        }
      });
      /** From `at` to the first acknowledged publish on `ch` that was sent after it. */
      const resumedAfter = async (ch: string, at: number) => {
        const first = () => acks.filter((a) => a.ch === ch && a.sentAt > at).sort((x, y) => x.ackedAt - y.ackedAt)[0];
        await until(() => first() !== undefined, `publishes on ${ch} resume`, 30_000);
        return first()!.ackedAt - at;
      };
      const markersFor = async (tag: string) => {
        const markers = await Promise.all(CHANNELS.map((ch) => publishAcked(url, ch, `${ch}#${tag}`, Date.now() + 15_000, stats)));
        for (const m of markers) acks.push(m!);
        await Promise.all(followers.map((f) => f.drainUntil(new Set(markers.filter((m) => f.channels.includes(m!.ch)).map((m) => m!.value)), 20_000)));
        for (const f of followers) {
          const got = new Set(f.delivered.map((d) => d.value));
          for (const m of markers) {
            if (f.channels.includes(m!.ch)) assert.ok(got.has(m!.value), `a follower of ${f.channels.join(',')} recovers by itself and gets ${m!.value}:\n${f.describe(Date.now())}`);
          }
        }
      };

      // 1. A master dies.
      await until(() => acks.length >= 300, 'publishing under way');
      const victim = await shardOf(cluster, CHANNELS[0]!);
      const killedAt = Date.now();
      await victim.master.stop();
      const killMs = await resumedAfter(CHANNELS[0]!, killedAt);
      // The notifications followed: the promoted replica holds the subscriptions of its channels.
      const promoted = victim.replica!;
      const names = (await Promise.all(CHANNELS.map(async (ch) => ((await shardOf(cluster, ch)).master === promoted ? `cf:c{${ch}}:n` : undefined)))).filter(Boolean);
      await until(async () => {
        const held = (await promoted.cli('pubsub', 'shardchannels')).split('\n');
        return names.every((n) => held.includes(n!));
      }, 'the failed-over channels are subscribed on the promoted replica', 10_000);
      await until(() => acks.filter((a) => a.sentAt > killedAt).length >= 300, 'publishing goes on after the failover', 30_000);
      stop = true;
      await Promise.all(publishers);
      await markersFor('after-kill');
      const killed = checkLedger(acks, followers, true);
      assert.ok(s.logs.some((l) => /redis cluster failover seen/.test(l.msg) && l.failover === true), 'the failover is logged');

      // 2. Another shard fails over by hand: graceful, nothing may be lost or gapped.
      const gapsBefore = followers.map((f) => new Map(f.gaps));
      for (const f of followers) f.resume();
      const phase2: Ack[] = [];
      stop = false;
      // A shard that still has its replica (the killed one's replica is alone now).
      const shards = await Promise.all(CHANNELS.map((ch) => shardOf(cluster, ch)));
      const target = shards.find((sh) => sh.replica !== undefined)!;
      assert.ok(target, 'a shard with a replica to fail over to');
      const publishers2 = CHANNELS.map(async (ch) => {
        while (!stop) {
          const a = await publishAcked(url, ch, `${ch}#p2-${next++}`, Date.now() + 30_000, stats);
          assert.ok(a);
          phase2.push(a);
          acks.push(a);
          await new Promise((r) => setTimeout(r, 10));
        }
      });
      await until(() => phase2.length >= 200, 'publishing under way again');
      const failoverAt = Date.now();
      await target.replica!.cli('cluster', 'failover');
      await until(async () => (await target.replica!.cli('role')).startsWith('master'), 'the replica is master', 20_000);
      const onTarget: string[] = [];
      for (const ch of CHANNELS) if ((await shardOf(cluster, ch)).master === target.replica) onTarget.push(ch);
      const manualMs = onTarget.length > 0 ? await resumedAfter(onTarget[0]!, failoverAt) : 0;
      await until(() => phase2.filter((a) => a.sentAt > failoverAt).length >= 200, 'publishing goes on', 30_000);
      stop = true;
      await Promise.all(publishers2);
      await markersFor('after-manual');
      // Graceful: every acknowledged message reached every follower, and no new gap.
      checkLedger(phase2, followers, false);
      followers.forEach((f, i) => assert.deepEqual([...f.gaps], [...gapsBefore[i]!], `no gap for ${f.channels.join(',')} from a graceful failover`));
      t.diagnostic(`killed master: publishes on its channels resumed after ${killMs} ms (${killed.gapped} follower-channels got a gap, ${killed.missingWithGap} deliveries covered by gaps); CLUSTER FAILOVER: resumed after ${manualMs} ms, nothing lost; ${acks.length} acknowledged, ${stats.retries} retries after 503`);
    } finally {
      for (const f of followers) await f.stop();
      await s.close();
    }
  });
});
