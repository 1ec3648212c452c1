/**
 * Sentinel failover under load, with real processes: a primary, a replica and three Sentinels
 * (quorum 2). Publishers publish with Idempotency-Keys and retry 503s; followers follow
 * cursors on their own. The replica is made to fall behind first (stopped, and its link cut
 * on the primary), then the primary is killed and the Sentinels promote the replica, which
 * lacks the last writes:
 *
 * - with LP_REDIS_WAIT_REPLICAS=1 nothing acknowledged is lost: the writes the replica missed
 *   were answered 503 (not durable), retried, and published again on the new primary;
 * - without it, acknowledged writes are lost, and every follower gets a gap on each channel
 *   that lost some: none skips silently.
 *
 * Both find the new primary by themselves (clients never change their URL).
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { RedisBroker } from '../../src/broker/redis/broker.js';
import { RedisServer, type SentinelSet, startSentinelSet, stopAllRedis } from '../helpers/redis.js';
import { poll, until } from '../helpers/server.js';
import { type Ack, Follower, type HaServer, checkLedger, publishAcked, startHaServer } from './harness.js';

const CHANNELS = ['room-a', 'room-b', 'room-c'];

interface Outcome {
  acks: Ack[];
  followers: Follower[];
  /** Acknowledged values the final store no longer holds. */
  lost: Ack[];
  /** From the primary's death to the first publish acknowledged by the new one. */
  failoverMs: number;
  /** Publishes answered 503 (retried) while the replica was behind. */
  refusedWhileBehind: number;
  server: HaServer;
}

async function failoverUnderLoad(set: SentinelSet, env: Record<string, string>): Promise<Outcome> {
  const server = await startHaServer({ ...set.env(), LP_REDIS_PREFIX: 'sf:', LP_REDIS_COMMAND_TIMEOUT_MS: '1000', ...env });
  const url = () => server.url;
  const followers = CHANNELS.flatMap((ch) => [new Follower(url, [ch]), new Follower(url, [ch])]);
  followers.push(new Follower(url, CHANNELS)); // one that follows every channel in one poll
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
      await new Promise((r) => setTimeout(r, 5));
    }
  });

  await until(() => acks.length >= 150, 'publishing under way');
  // The replica falls behind: it stops, and the primary cuts its link, so what the primary
  // takes from now on never reaches it.
  set.replica.pause();
  await set.primary.cli('client', 'kill', 'type', 'replica');
  const retriesBefore = stats.retries;
  const acksBefore = acks.length;
  await new Promise((r) => setTimeout(r, 1000));
  const refusedWhileBehind = stats.retries - retriesBefore;
  const acksWhileBehind = acks.length - acksBefore;

  const killedAt = Date.now();
  await set.primary.stop();
  set.replica.resume();
  await until(async () => (await set.sentinels[0]!.primaryAddress()) === set.replica.address, 'the sentinels name the replica', 30_000);
  // The old primary comes back (empty) and the Sentinels make it a replica of the new one: with
  // LP_REDIS_WAIT_REPLICAS=1 publishes need it, since the promoted replica was the only one.
  const rejoined = new RedisServer(set.primary.port, ['--replicaof', '127.0.0.1', String(set.replica.port), '--repl-diskless-sync-delay', '0']);
  await rejoined.start();
  const firstAfter = () => acks.filter((a) => a.sentAt > killedAt).sort((x, y) => x.ackedAt - y.ackedAt)[0];
  await until(() => firstAfter() !== undefined, 'a publish sent after the primary died is acknowledged', 30_000);
  const failoverMs = firstAfter()!.ackedAt - killedAt;
  const acksAfter = acks.length;
  await until(() => acks.length > acksAfter + 100, 'publishing goes on', 20_000);
  stop = true;
  await Promise.all(publishers);

  // One last message per channel: every follower must get it, on its own, through its cursor.
  const markers = await Promise.all(CHANNELS.map((ch) => publishAcked(url, ch, `${ch}#end`, Date.now() + 10_000, stats)));
  for (const m of markers) acks.push(m!);
  await Promise.all(followers.map((f) => f.drainUntil(new Set(markers.filter((m) => f.channels.includes(m!.ch)).map((m) => m!.value)), 20_000)));
  for (const f of followers) {
    const got = new Set(f.delivered.map((d) => d.value));
    for (const m of markers) {
      if (f.channels.includes(m!.ch)) assert.ok(got.has(m!.value), `a follower of ${f.channels.join(',')} recovers by itself and gets ${m!.value} (seq ${m!.seq}):\n${f.describe(killedAt)}\n${(server.server.broker as RedisBroker).describeSubscribers().join('\n')}\nparked ${server.server.context.hub.parkedCount}, registered ${server.server.context.hub.registry.size}`);
    }
  }

  // What the new primary holds, read from the start of each channel's history.
  const held = new Set<string>();
  for (const ch of CHANNELS) {
    const r = await poll(server.url, { ch, cursor: 'earliest', max: 1000, timeout: 1000 });
    for (const m of r.body.messages) held.add(m.data as string);
  }
  const lost = acks.filter((a) => !held.has(a.value));
  assert.ok(acksWhileBehind > 0 || refusedWhileBehind > 0, 'publishing went on while the replica was behind');
  return { acks, followers, lost, failoverMs, refusedWhileBehind, server };
}

describe('Sentinel: the primary dies under polling and publishing load', () => {
  after(() => stopAllRedis());

  it('with LP_REDIS_WAIT_REPLICAS=1 no acknowledged message is lost', async (t) => {
    const set = await startSentinelSet();
    const o = await failoverUnderLoad(set, { LP_REDIS_WAIT_REPLICAS: '1' });
    try {
      assert.ok(o.refusedWhileBehind > 0, 'publishes the replica did not confirm were answered 503 (and retried)');
      assert.deepEqual(o.lost.map((a) => a.value), [], 'every acknowledged message survived the failover');
      checkLedger(o.acks, o.followers, false);
      assert.ok(o.server.logs.some((l) => l.msg === 'redis primary changed (failover)'), 'the failover is logged');
      assert.ok(o.server.logs.some((l) => l.msg === 'redis connection back' && l.awayMs > 0), 'the recovery is logged with how long Redis was away');
      t.diagnostic(`failover: first acknowledged publish ${o.failoverMs} ms after the primary died; ${o.acks.length} acknowledged, ${o.refusedWhileBehind} answered 503 while the replica was behind, 0 lost`);
    } finally {
      await o.server.close();
    }
  });

  it('without it, every acknowledged message the failover lost shows as a gap to every follower', async (t) => {
    const set = await startSentinelSet();
    const o = await failoverUnderLoad(set, {});
    try {
      assert.ok(o.lost.length > 0, 'the lagging replica lost acknowledged messages (the scenario did what it meant to)');
      const { missingWithGap, gapped } = checkLedger(o.acks, o.followers, true);
      const lostChannels = new Set(o.lost.map((a) => a.ch));
      for (const f of o.followers) {
        for (const ch of f.channels) if (lostChannels.has(ch)) assert.ok((f.gaps.get(ch) ?? 0) > 0, `a follower of ${ch} got a gap for its lost messages`);
      }
      assert.ok(o.server.logs.some((l) => /lost acknowledged publishes/.test(l.msg)), 'the lost writes are logged');
      t.diagnostic(`failover: first acknowledged publish ${o.failoverMs} ms after the primary died; ${o.acks.length} acknowledged, ${o.lost.length} lost, ${gapped} follower-channels got a gap, ${missingWithGap} deliveries covered by gaps`);
    } finally {
      await o.server.close();
    }
  });
});
