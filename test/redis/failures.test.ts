/**
 * What a Redis failure means to a client, decided once (src/broker/redis/failures.ts):
 * a reply error that is a bug answers 500 and is logged with the script and key (not 503); a
 * subscription Redis refuses is retried until it holds, and the parked poll then re-reads; the
 * durability asked for is given (LP_REDIS_WAIT_REPLICAS) or refused with a message that says
 * why (LP_REDIS_WAIT_AOF on a Redis without WAITAOF).
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { profiles } from '../helpers/profiles.js';
import { startRedis, startReplica, stopAllRedis } from '../helpers/redis.js';
import { http, poll, publish, until } from '../helpers/server.js';
import { startHaServer } from '../ha/harness.js';

const hasRedis = profiles().some((p) => p.name === 'redis');

describe('Redis failures: bugs, refused subscriptions, durability', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  after(() => stopAllRedis());

  it('a Lua reply error (a key of the wrong type) answers 500 and is logged with the script and key; Redis stays ready', async () => {
    const redis = await startRedis();
    const prefix = redis.uniquePrefix();
    const s = await startHaServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: prefix });
    try {
      await redis.cli('set', `${prefix}c{broken}:m`, 'not a hash');
      const r = await publish(s.url, 'broken', 1);
      assert.equal(r.status, 500);
      assert.equal(r.body.error.code, 'internal');
      const p = await poll(s.url, { ch: 'broken', cursor: 'earliest' });
      assert.equal(p.status, 500);
      const logged = s.logs.find((l) => l.script === 'hfPublish' && l.level === 50);
      assert.ok(logged, 'an error line names the script');
      assert.equal(logged.key, `${prefix}c{broken}:m`);
      assert.match(logged.err, /WRONGTYPE/);
      assert.ok(s.logs.some((l) => l.script === 'hfRead' && l.key === `${prefix}c{broken}:m`));
      assert.equal((await http(`${s.url}/readyz`)).status, 200, 'a bug is not an outage');
      assert.equal((await publish(s.url, 'fine', 1)).status, 200);
    } finally {
      await s.close();
    }
  });

  it('a subscription Redis refuses (ACL) is retried; once it holds, the parked poll gets its message', async () => {
    const redis = await startRedis();
    const prefix = redis.uniquePrefix();
    // The user may use every key, but only the notification channels of "open*" channels.
    await redis.cli('acl', 'setuser', 'hf', 'on', '>pw', '~*', '+@all', 'resetchannels', `&${prefix}c{open*`);
    const s = await startHaServer({ REDIS_URL: `redis://hf:pw@127.0.0.1:${redis.port}`, LP_REDIS_PREFIX: prefix });
    try {
      assert.equal((await publish(s.url, 'open-1', 'ok')).status, 200);
      const refused = await publish(s.url, 'closed', 'no');
      assert.equal(refused.status, 503, 'an ACL refusal is the operator\'s to fix: 503, not a bug');
      assert.match(refused.body.error.message, /lack of permission: check the ACL/);

      const waiting = poll(s.url, { ch: 'closed', timeout: 30_000 });
      await until(() => s.server.context.hub.parkedCount === 1, 'the poll parks though its subscription failed');
      assert.ok(s.logs.some((l) => l.msg === 'redis subscribe failed; retrying'), 'the failure is logged');
      await redis.cli('acl', 'setuser', 'hf', '&*');
      await until(() => s.logs.some((l) => l.msg === 'redis subscriptions restored after failing'), 'the retry succeeds', 15_000);
      const sent = Date.now();
      const p = await publish(s.url, 'closed', 'now it flows');
      assert.equal(p.status, 200);
      const got = await waiting;
      assert.deepEqual(got.body.messages.map((m) => m.data), ['now it flows']);
      assert.ok(Date.now() - sent < 5000, 'delivered by its notification, not at the poll timeout');
    } finally {
      await s.close();
    }
  });

  it('LP_REDIS_WAIT_REPLICAS=1: 503 (may have been stored) until a replica has it, then 200; the retry with the key answers the first seq', async () => {
    const redis = await startRedis();
    const s = await startHaServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), LP_REDIS_WAIT_REPLICAS: '1', LP_REDIS_COMMAND_TIMEOUT_MS: '400' });
    try {
      const t0 = Date.now();
      const r = await publish(s.url, 'durable', 'first', { 'idempotency-key': 'd1' });
      assert.equal(r.status, 503);
      assert.ok(Date.now() - t0 < 1500, 'the wait is bounded');
      assert.match(r.body.error.message, /not yet durable \(0 of the 1 replicas of LP_REDIS_WAIT_REPLICAS confirmed it within 200 ms\).*same Idempotency-Key/);
      await startReplica(redis);
      const again = await publish(s.url, 'durable', 'first (retried)', { 'idempotency-key': 'd1' });
      assert.equal(again.status, 200);
      assert.equal(again.body.seq, 1, 'the first write was stored; the retry is its duplicate');
      const next = await publish(s.url, 'durable', 'second');
      assert.equal(next.status, 200);
      assert.equal(next.body.seq, 2);
    } finally {
      await s.close();
    }
  });

  it('LP_REDIS_WAIT_AOF=1 on a Redis without WAITAOF (before 7.2) is refused, saying why', async () => {
    const redis = await startRedis();
    const version = /redis_version:(\d+)\.(\d+)/.exec(await redis.cli('info', 'server'))!;
    const hasWaitAof = Number(version[1]) > 7 || (Number(version[1]) === 7 && Number(version[2]) >= 2);
    const s = await startHaServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), LP_REDIS_WAIT_AOF: '1' }, false);
    try {
      if (hasWaitAof) {
        // Newer Redis: the refusal is about the AOF being off.
        await until(() => s.logs.some((l) => /appendonly no/.test(l.msg)), 'the refusal is logged');
        return;
      }
      await until(() => s.logs.some((l) => l.level === 50 && /LP_REDIS_WAIT_AOF=1 needs WAITAOF/.test(l.msg)), 'the refusal is logged at error');
      const r = await publish(s.url, 'aof', 1);
      assert.equal(r.status, 503);
      assert.match(r.body.error.message, new RegExp(`LP_REDIS_WAIT_AOF=1 needs WAITAOF \\(Redis 7\\.2 or newer\\), but the Redis at redis://127\\.0\\.0\\.1:${redis.port} is version ${version[1]}\\.${version[2]}`));
      assert.equal((await http(`${s.url}/readyz`)).status, 503);
      await assert.rejects(s.server.broker.waitReady(200), /needs WAITAOF/);
    } finally {
      await s.close();
    }
  });
  it('a Redis clock that steps back keeps each channel in seq order (a multi-channel answer merges channels by time)', async () => {
    const redis = await startRedis();
    const prefix = redis.uniquePrefix();
    const s = await startHaServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: prefix });
    try {
      assert.equal((await publish(s.url, 'clk:a', 'a1')).status, 200);
      // Redis's clock steps back a minute after a:1 (NTP, a failover to a host behind): as
      // seen from later publishes, a:1 was stamped a minute in the future.
      const hist = `${prefix}c{clk:a}:h`;
      const entry = await redis.cli('lindex', hist, '0');
      const bar = entry.indexOf('|');
      const future = (Number(entry.slice(0, bar)) + 60_000).toFixed(3);
      await redis.cli('lset', hist, '0', `${future}${entry.slice(bar)}`);
      await redis.cli('hset', `${prefix}c{clk:a}:m`, 't', future);
      assert.equal((await publish(s.url, 'clk:b', 'b1')).status, 200);
      assert.equal((await publish(s.url, 'clk:a', 'a2')).status, 200);
      for (const max of [2, 3]) {
        const r = await poll(s.url, { ch: ['clk:a', 'clk:b'], cursor: 'earliest', max });
        assert.equal(r.status, 200);
        const a = r.body.messages.filter((m) => m.ch === 'clk:a').map((m) => m.seq);
        assert.deepEqual(a, [...a].sort((x, y) => x - y), `max=${max}: clk:a in seq order (${JSON.stringify(r.body.messages)})`);
        assert.equal(a[0], 1, `max=${max}: clk:a starts at 1, nothing skipped`);
      }
    } finally {
      await s.close();
    }
  });
});
