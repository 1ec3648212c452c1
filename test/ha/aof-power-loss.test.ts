/**
 * The AOF power loss of issue 10, with a real Redis: `appendonly yes`, `appendfsync everysec`,
 * publishes at a steady rate, then the process is killed and the tail of its AOF cut off, as a
 * power loss cuts what the last second had not flushed to disk. Redis restarts from what is
 * left: acknowledged messages are gone, and their seqs go to new messages in the same store.
 *
 * Nothing may be skipped silently: followers that were parked through the crash, and clients
 * that come back later with a cursor taken before it, get `gap: true` for every channel that
 * lost messages, and never a seq at or before their cursor again.
 */

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RedisServer, freePort, stopAllRedis } from '../helpers/redis.js';
import { poll } from '../helpers/server.js';
import { type Ack, Follower, type HaServer, checkLedger, publishAcked, startHaServer } from './harness.js';

const CHANNELS = ['feed-1', 'feed-2', 'feed-3', 'feed-4', 'feed-5'];
const PUBLISHES = 1500;
const RATE_PER_S = 500;
/** What an everysec power loss loses: the last second. */
const LOST_MS = 1000;

/** The AOF file Redis appends to now (7.0: the last incr file of appendonlydir). */
function activeAof(dir: string): string {
  const aofDir = join(dir, 'appendonlydir');
  const manifest = readFileSync(join(aofDir, readdirSync(aofDir).find((f) => f.endsWith('.manifest'))!), 'utf8');
  const incr = manifest.split('\n').filter((l) => l.includes('type i')).pop()!;
  return join(aofDir, /file (\S+)/.exec(incr)![1]!);
}

interface Crash {
  server: HaServer;
  acks: Ack[];
  followers: Follower[];
  /** Cursors clients took before the crash, oldest first. */
  oldCursors: { cursor: string; channels: string[]; at: number }[];
  lost: Ack[];
  /** New messages published after the restart. */
  after: Ack[];
}

async function powerLoss(env: Record<string, string>): Promise<Crash> {
  const redis = new RedisServer(await freePort(), ['--appendonly', 'yes', '--appendfsync', 'everysec']);
  await redis.start();
  const server = await startHaServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: 'aof:', ...env });
  const url = () => server.url;
  const followers = CHANNELS.map((ch) => new Follower(url, [ch]));
  followers.push(new Follower(url, CHANNELS));
  await Promise.all(followers.map((f) => f.start()));

  // Publish at a steady rate, sampling the AOF's size as it grows.
  const aof = activeAof(redis.dir);
  const sizes: [number, number][] = [];
  const sampler = setInterval(() => sizes.push([Date.now(), statSync(aof).size]), 20);
  const oldCursors: Crash['oldCursors'] = [];
  const taker = setInterval(() => {
    for (const f of followers) if (f.cursor) oldCursors.push({ cursor: f.cursor, channels: f.channels, at: Date.now() });
  }, 150);
  const acks: Ack[] = [];
  const stats = { retries: 0 };
  const started = Date.now();
  await Promise.all(CHANNELS.map(async (ch, c) => {
    for (let i = c; i < PUBLISHES; i += CHANNELS.length) {
      const due = started + (i * 1000) / RATE_PER_S;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const a = await publishAcked(url, ch, `${ch}#${i}`, Date.now() + 10_000, stats);
      assert.ok(a, 'acknowledged before the crash');
      acks.push(a);
    }
  }));
  clearInterval(taker);
  for (const f of followers) if (f.cursor) oldCursors.push({ cursor: f.cursor, channels: f.channels, at: Date.now() });

  // Power loss: the process dies, and the last second never reached the disk.
  const crashedAt = Date.now();
  await redis.stop();
  clearInterval(sampler);
  const keep = sizes.filter(([t]) => t <= crashedAt - LOST_MS).pop()![1];
  truncateSync(aof, keep);
  await redis.start();
  await server.server.broker.waitReady(20_000);

  // What the store still holds, before anything new is published.
  const held = new Set<string>();
  for (const ch of CHANNELS) {
    const r = await poll(server.url, { ch, cursor: 'earliest', max: 1000, timeout: 1000 });
    for (const m of r.body.messages) held.add(m.data as string);
  }
  const lost = acks.filter((a) => !held.has(a.value));

  // New messages: their seqs are the lost ones' seqs again.
  const afterAcks: Ack[] = [];
  for (let i = 0; i < 20; i++) {
    for (const ch of CHANNELS) afterAcks.push((await publishAcked(url, ch, `${ch}#after-${i}`, Date.now() + 10_000, stats))!);
  }
  await Promise.all(followers.map((f) => f.drainUntil(new Set(afterAcks.filter((a) => f.channels.includes(a.ch) && a.value.endsWith('-19')).map((a) => a.value)), 20_000)));
  return { server, acks: [...acks, ...afterAcks], followers, oldCursors, lost, after: afterAcks };
}

/** Seqs a channel's acknowledged messages had before the crash and new ones got again. */
function reused(c: Crash): number {
  let n = 0;
  for (const a of c.after) if (c.lost.some((l) => l.ch === a.ch && l.seq === a.seq)) n++;
  return n;
}

describe('AOF everysec power loss: acknowledged messages lost, their seqs reused', () => {
  after(() => stopAllRedis());

  it('parked followers and clients with cursors from before the crash all get gap: true; none is skipped silently', async (t) => {
    const c = await powerLoss({});
    try {
      const lostChannels = new Set(c.lost.map((a) => a.ch));
      assert.ok(c.lost.length > 50, `the cut AOF lost acknowledged messages (${c.lost.length})`);
      assert.ok(reused(c) > 0, 'new messages were numbered with the lost messages\' seqs');

      // Followers parked through the crash.
      const { missingWithGap } = checkLedger(c.acks, c.followers, true);
      for (const f of c.followers) {
        for (const ch of f.channels) if (lostChannels.has(ch)) assert.ok((f.gaps.get(ch) ?? 0) > 0, `a follower of ${ch} got a gap`);
      }

      // Clients that come back later with a cursor from before the crash: every one gets a gap
      // for every channel that lost messages, and no seq at or before its cursor.
      let checked = 0;
      for (const old of c.oldCursors) {
        const r = await poll(c.server.url, { ch: old.channels, cursor: old.cursor, max: 1000, timeout: 1000 });
        assert.equal(r.status, 200);
        const expected = old.channels.filter((ch) => lostChannels.has(ch));
        assert.equal(r.body.gap, expected.length > 0, `cursor from ${old.at} on ${old.channels.join(',')}`);
        assert.deepEqual([...(r.body.gapChannels ?? [])].sort(), expected.sort());
        checked++;
      }
      assert.ok(checked >= 50, `${checked} old cursors checked`);
      assert.ok(c.server.logs.some((l) => /lost acknowledged publishes/.test(l.msg) && l.channels === lostChannels.size), 'the audit logs the channels that lost writes');
      t.diagnostic(`${c.acks.length - c.after.length} acknowledged before the crash, ${c.lost.length} lost on ${lostChannels.size} channels, ${reused(c)} seqs reused; ${checked} old cursors all got their gaps; ${missingWithGap} follower deliveries covered by gaps`);
    } finally {
      await c.server.close();
    }
  });

  it('with the audit off (LP_REDIS_LOSS_WINDOW_S=0), the cursor fingerprint alone still reports every cursor that names a lost message', async (t) => {
    const c = await powerLoss({ LP_REDIS_LOSS_WINDOW_S: '0' });
    try {
      assert.ok(c.lost.length > 50, `the cut AOF lost acknowledged messages (${c.lost.length})`);
      assert.ok(reused(c) > 0, 'new messages were numbered with the lost messages\' seqs');
      checkLedger(c.acks, c.followers, true);
      // A cursor names a lost message when its seq for that channel is one a lost message had.
      let naming = 0;
      for (const old of c.oldCursors) {
        const r = await poll(c.server.url, { ch: old.channels, cursor: old.cursor, max: 1000, timeout: 1000 });
        const last = new Map<string, number>();
        const positions = (await import('../../src/cursor.js')).decodeCursor(old.cursor).positionsFor(old.channels);
        old.channels.forEach((ch, i) => last.set(ch, positions[i]!.seq));
        const namingLost = old.channels.filter((ch) => c.lost.some((l) => l.ch === ch && l.seq === last.get(ch)));
        for (const ch of namingLost) assert.ok(r.body.gapChannels?.includes(ch), `a cursor naming lost ${ch} seq ${last.get(ch)} gets a gap`);
        for (const m of r.body.messages) assert.ok(m.seq > last.get(m.ch)!, `nothing at or before the cursor: ${m.ch} ${m.seq}`);
        naming += namingLost.length;
      }
      assert.ok(naming > 0, 'some old cursors named lost messages');
      t.diagnostic(`${c.lost.length} lost, ${reused(c)} seqs reused; ${naming} cursor positions named a lost message, all reported as gaps`);
    } finally {
      await c.server.close();
    }
  });
});
