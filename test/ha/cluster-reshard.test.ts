/**
 * Resharding a Redis Cluster under load: `redis-cli --cluster reshard` moves the first slots of
 * one master to another while publishers publish (with Idempotency-Keys, retrying 503s) and
 * followers follow cursors. Commands are redirected (MOVED, ASK, TRYAGAIN) by ioredis; the
 * subscriber connections follow the slot map (Redis drops a moved slot's subscriptions itself).
 * Nothing is lost and nothing is gapped: a reshard moves data, it does not lose it.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import calculateSlot from 'cluster-key-slot';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clusterLayout, startRedisCluster, stopAllRedis } from '../helpers/redis.js';
import { until } from '../helpers/server.js';
import { type Ack, Follower, checkLedger, publishAcked, startHaServer } from './harness.js';

const run = promisify(execFile);
/** Slots moved: the first MOVED slots of the master that serves slot 0. */
const MOVED = 400;

/** `count` channel names whose slots are in [from, to). */
function channelsInSlots(base: string, from: number, to: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const slot = calculateSlot(`${base}${i}`);
    if (slot >= from && slot < to) out.push(`${base}${i}`);
  }
  return out;
}

describe('Redis Cluster: resharding under load', () => {
  after(() => stopAllRedis());

  it('polls and publishes keep working through MOVED/ASK while slots move; nothing is lost or gapped', async (t) => {
    const cluster = await startRedisCluster({ replicas: 1 });
    const layout = await clusterLayout(cluster.servers[0]!);
    const source = layout.find((n) => n.master && n.slots.some(([a]) => a === 0))!;
    const target = layout.find((n) => n.master && n !== source)!;
    const moving = channelsInSlots('mv-', 0, MOVED, 6);
    const staying = channelsInSlots('st-', 8000, 16384, 3);
    const channels = [...moving, ...staying];

    const s = await startHaServer({ REDIS_CLUSTER_NODES: cluster.nodes.join(','), LP_REDIS_PREFIX: 'rs:', LP_REDIS_COMMAND_TIMEOUT_MS: '2000' });
    const url = () => s.url;
    const followers = channels.map((ch) => new Follower(url, [ch]));
    followers.push(new Follower(url, moving), new Follower(url, [moving[0]!, staying[0]!]));
    try {
      await Promise.all(followers.map((f) => f.start()));
      const acks: Ack[] = [];
      const stats = { retries: 0 };
      let next = 0;
      let stop = false;
      const publishers = channels.map(async (ch) => {
        while (!stop) {
          const a = await publishAcked(url, ch, `${ch}#${next++}`, Date.now() + 30_000, stats);
          assert.ok(a, 'a publish was never acknowledged');
          acks.push(a);
          await new Promise((r) => setTimeout(r, 10));
        }
      });
      await until(() => acks.length >= 200, 'publishing under way');

      const started = Date.now();
      await run('redis-cli', ['--cluster', 'reshard', source.address, '--cluster-from', source.id, '--cluster-to', target.id, '--cluster-slots', String(MOVED), '--cluster-yes', '--cluster-pipeline', '10']);
      const reshardMs = Date.now() - started;
      const during = acks.filter((a) => moving.includes(a.ch) && a.sentAt >= started && a.ackedAt <= started + reshardMs).length;
      const after2 = (await clusterLayout(cluster.servers[0]!)).find((n) => n.id === target.id)!;
      assert.ok(after2.slots.some(([a, b]) => a <= 0 && b >= MOVED - 1), 'the slots moved to the target');
      // The notifications followed the slots: the target master holds the moved channels'
      // subscriptions now (Redis dropped them on the source when the slots left it).
      const targetServer = cluster.servers.find((x) => x.address === target.address)!;
      const movedNames = moving.map((ch) => `rs:c{${ch}}:n`);
      await until(async () => {
        const held = (await targetServer.cli('pubsub', 'shardchannels')).split('\n');
        return movedNames.every((n) => held.includes(n));
      }, 'the moved channels are subscribed on their new master', 10_000);
      const acksAfter = acks.length;
      await until(() => acks.length >= acksAfter + 200, 'publishing goes on after the reshard', 20_000);
      stop = true;
      await Promise.all(publishers);

      const markers = await Promise.all(channels.map((ch) => publishAcked(url, ch, `${ch}#end`, Date.now() + 15_000, stats)));
      for (const m of markers) acks.push(m!);
      await Promise.all(followers.map((f) => f.drainUntil(new Set(markers.filter((m) => f.channels.includes(m!.ch)).map((m) => m!.value)), 20_000)));
      checkLedger(acks, followers, false);
      for (const f of followers) assert.deepEqual([...f.gaps], [], `no gap for ${f.channels.join(',')}: a reshard loses nothing`);
      assert.ok(s.logs.some((l) => /redis cluster slots moved/.test(l.msg) && l.failover === false), 'the moved slots are logged');
      t.diagnostic(`${MOVED} slots (${moving.length} busy channels) moved in ${reshardMs} ms under load; ${during} publishes on moving channels acknowledged meanwhile, ${stats.retries} retries after 503, ${acks.length} acknowledged, none lost or gapped`);
    } finally {
      for (const f of followers) await f.stop();
      await s.close();
    }
  });
});
