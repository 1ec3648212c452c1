/**
 * The recent-history cache on Redis (src/cache/recent-history.ts): polls whose messages are
 * already waiting on a channel this process follows are answered without a Redis round trip,
 * and every time the cache cannot prove what it holds, Redis answers. Real Redis, real HTTP;
 * Redis's own command counters (INFO commandstats) say whether a read reached it.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisServer, startRedis, stopAllRedis } from '../helpers/redis.js';
import { type TestServer, poll, publish, startTestServer, until } from '../helpers/server.js';
import { profiles } from '../helpers/profiles.js';

const hasRedis = profiles().some((p) => p.name === 'redis');

/** EVALSHA calls Redis has served so far (every Holdfast read and publish is one). */
async function scriptCalls(redis: RedisServer): Promise<number> {
  const stats = await redis.cli('INFO', 'commandstats');
  const line = stats.split('\n').find((l) => l.startsWith('cmdstat_evalsha:'));
  return line ? Number(/calls=(\d+)/.exec(line)![1]) : 0;
}

describe('recent history served from memory on Redis', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  let redis: RedisServer;
  let s: TestServer;
  before(async () => {
    redis = await startRedis();
    s = await startTestServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), LP_UNSUBSCRIBE_LINGER_MS: '60000' });
  });
  after(async () => {
    await s?.close();
    await stopAllRedis();
  });

  /** A channel this process follows (a parked poll holds its subscription), and its first answer. */
  async function followed(ch: string) {
    const first = await poll(s.url, { ch, timeout: 1000 });
    assert.equal(first.status, 200);
    return first.body.cursor as string;
  }

  it('a poll whose messages wait is answered from memory, with the same answer Redis gives', async () => {
    const ch = `rh-${process.pid}-a`;
    const start = await followed(ch);
    for (let i = 1; i <= 5; i++) assert.equal((await publish(s.url, ch, { i })).status, 200);
    // Every message was notified to this process: the window holds 1…5.
    const first = await poll(s.url, { ch, cursor: start, max: 2 });
    assert.deepEqual(first.body.messages.map((m: { seq: number }) => m.seq), [1, 2]);
    const calls = await scriptCalls(redis);
    let cursor = first.body.cursor;
    const seen: number[] = [];
    for (let k = 0; k < 3; k++) {
      const r = await poll(s.url, { ch, cursor, max: 1 });
      assert.equal(r.status, 200);
      assert.equal(r.body.gap, false);
      for (const m of r.body.messages) seen.push(m.data.i);
      cursor = r.body.cursor;
    }
    assert.deepEqual(seen, [3, 4, 5]);
    assert.equal(await scriptCalls(redis), calls, 'no read reached Redis');
    // The same cursors read through Redis (earliest) give the same messages.
    const all = await poll(s.url, { ch, cursor: 'earliest' });
    assert.deepEqual(all.body.messages.map((m: { data: { i: number } }) => m.data.i), [1, 2, 3, 4, 5]);
  });

  it('a client reads its own acknowledged publish at once, even before its notification arrived', async () => {
    const ch = `rh-${process.pid}-own`;
    let cursor = await followed(ch);
    // The subscriber sockets are not read for a while: the publish is acknowledged, its
    // notification is held back. The poll must still answer with it at once (from Redis).
    const subs = (s.server.broker as unknown as { subs: { pause(): void; resume(): void } }).subs;
    for (let i = 1; i <= 5; i++) {
      subs.pause();
      try {
        assert.equal((await publish(s.url, ch, { i })).status, 200);
        const r = await poll(s.url, { ch, cursor, timeout: 1000 });
        assert.deepEqual(r.body.messages.map((m: { seq: number }) => m.seq), [i], `round ${i}: the acknowledged message`);
        cursor = r.body.cursor;
      } finally {
        subs.resume();
      }
    }
  });

  it('a cursor behind the window, and "earliest", are read from Redis', async () => {
    const ch = `rh-${process.pid}-b`;
    const start = await followed(ch);
    for (let i = 1; i <= 40; i++) await publish(s.url, ch, i);
    const calls = await scriptCalls(redis);
    const r = await poll(s.url, { ch, cursor: start, max: 3 });
    assert.deepEqual(r.body.messages.map((m: { data: number }) => m.data), [1, 2, 3]);
    assert.ok((await scriptCalls(redis)) > calls, 'the read went to Redis');
  });

  it('notifications lost while the subscriber connection was down: parked and new polls read Redis', async () => {
    const ch = `rh-${process.pid}-c`;
    const start = await followed(ch);
    await publish(s.url, ch, 'before');
    const r1 = await poll(s.url, { ch, cursor: start });
    assert.deepEqual(r1.body.messages.map((m: { data: string }) => m.data), ['before']);
    const parkedBefore = s.server.context.hub.parkedCount;
    const waiting = poll(s.url, { ch, cursor: r1.body.cursor, timeout: 8000 });
    await until(() => s.server.context.hub.parkedCount === parkedBefore + 1, 'parked');
    // Cut the subscriber connections and publish at once: that notification never arrives.
    await redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    assert.equal((await publish(s.url, ch, 'while away')).status, 200);
    // The resync after the reconnect re-reads the parked poll: from Redis, not from a window
    // that still stands at 'before' (which would park it again until its timeout).
    const t0 = Date.now();
    const r2 = await waiting;
    assert.deepEqual(r2.body.messages.map((m: { data: string }) => m.data), ['while away']);
    assert.ok(Date.now() - t0 < 6000, 'answered by the resync, not at the poll timeout');
    // And a new poll from the same cursor gets it at once.
    const r3 = await poll(s.url, { ch, cursor: r1.body.cursor, timeout: 3000 });
    assert.deepEqual(r3.body.messages.map((m: { data: string }) => m.data), ['while away']);
  });

  it('a deleted channel (new epoch) is never served from an old window', async () => {
    const ch = `rh-${process.pid}-d`;
    const start = await followed(ch);
    await publish(s.url, ch, 'old');
    const r1 = await poll(s.url, { ch, cursor: start });
    assert.equal((await fetch(`${s.url}/v1/channels/${ch}`, { method: 'DELETE' })).status, 200);
    await publish(s.url, ch, 'new');
    const r2 = await poll(s.url, { ch, cursor: r1.body.cursor });
    assert.equal(r2.body.gap, true);
    assert.deepEqual(r2.body.messages.map((m: { data: string }) => m.data), ['new']);
  });
});

describe('recent history when the subscriber connection goes silent without closing', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  let redis: RedisServer;
  let s: TestServer;
  let other: TestServer;
  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), LP_UNSUBSCRIBE_LINGER_MS: '60000', LP_POLL_TIMEOUT_MS: '1000' };
    s = await startTestServer(env);
    other = await startTestServer(env);
  });
  after(async () => {
    await s?.close();
    await other?.close();
    await stopAllRedis();
  });

  it('a window trusted no longer than one default hold without news: polls then read Redis and catch up', async () => {
    const ch = `rh-${process.pid}-silent`;
    const first = await poll(s.url, { ch, timeout: 1000 });
    await publish(s.url, ch, 'heard');
    const r1 = await poll(s.url, { ch, cursor: first.body.cursor });
    assert.deepEqual(r1.body.messages.map((m: { data: string }) => m.data), ['heard']);
    // The subscriber sockets stop delivering but stay open (a peer gone without a FIN): nothing
    // marks them down. Another process publishes, so this one has no acknowledgement either.
    const subs = (s.server.broker as unknown as { subs: { pause(): void; resume(): void } }).subs;
    subs.pause();
    try {
      assert.equal((await publish(other.url, ch, 'unheard')).status, 200);
      const t0 = Date.now();
      let got: string[] = [];
      while (got.length === 0 && Date.now() - t0 < 6000) {
        const r = await poll(s.url, { ch, cursor: r1.body.cursor, timeout: 300 });
        assert.equal(r.status, 200);
        got = r.body.messages.map((m: { data: string }) => m.data);
      }
      assert.deepEqual(got, ['unheard'], 'caught up from Redis once the window had been silent for LP_POLL_TIMEOUT_MS');
    } finally {
      subs.resume();
    }
  });
});
