/**
 * A Redis that stops answering without closing its sockets (SIGSTOP: a frozen process, a hung
 * host): nothing waits longer than LP_REDIS_COMMAND_TIMEOUT_MS. A publish caught in it gets
 * 503 with Retry-After and a message saying it may have been stored; /readyz turns 503; new
 * requests are refused at once; parked polls keep their place; when Redis resumes, the retry
 * with the same Idempotency-Key finds the first write, and the parked poll gets it once.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { profiles } from '../helpers/profiles.js';
import { type RedisServer, startRedis, stopAllRedis } from '../helpers/redis.js';
import { http, poll, publish, until } from '../helpers/server.js';
import { type HaServer, startHaServer } from '../ha/harness.js';

const hasRedis = profiles().some((p) => p.name === 'redis');
const TIMEOUT_MS = 500;

describe('a frozen Redis (SIGSTOP) never hangs publishers', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  let redis: RedisServer;
  let s: HaServer;
  before(async () => {
    redis = await startRedis();
    s = await startHaServer({ REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), LP_REDIS_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS) });
  });
  after(async () => {
    redis.resume();
    await s.close();
    await stopAllRedis();
  });

  it('publish: 503 within the command timeout, saying it may have been stored; /readyz 503; recovery finds the first write', async () => {
    const ch = 'frozen';
    const first = await publish(s.url, ch, 'before');
    assert.equal(first.status, 200);
    const cursor = (await poll(s.url, { ch, cursor: 'earliest' })).body.cursor;
    const parked = poll(s.url, { ch, cursor, timeout: 30_000 });
    await until(() => s.server.context.hub.parkedCount === 1, 'the poll is parked');

    redis.pause();
    const sent = Date.now();
    const caught = await publish(s.url, ch, 'during', { 'idempotency-key': 'k-frozen' });
    const waited = Date.now() - sent;
    assert.equal(caught.status, 503);
    assert.ok(waited < TIMEOUT_MS + 1000, `answered in ${waited} ms`);
    assert.ok(Number(caught.headers.get('retry-after')) >= 1);
    assert.equal(caught.body.error.code, 'broker_unavailable');
    assert.match(caught.body.error.message, /may have been stored: retry with the same Idempotency-Key/);

    // Known silent now: refused at once, and /readyz says so.
    const t0 = Date.now();
    const refused = await publish(s.url, ch, 'refused');
    assert.equal(refused.status, 503);
    assert.ok(Date.now() - t0 < 200, 'refused without waiting');
    const newPoll = await poll(s.url, { ch, cursor, timeout: 5000 });
    assert.equal(newPoll.status, 503);
    assert.equal((await http(`${s.url}/readyz`)).status, 503);
    assert.ok(s.server.context.hub.parkedCount === 1, 'the parked poll keeps waiting');

    redis.resume();
    await until(async () => (await http(`${s.url}/readyz`)).status === 200, '/readyz back to 200', 10_000);
    // Redis ran the publish it had queued: the retry with the same key finds it.
    const retry = await publish(s.url, ch, 'during (retried)', { 'idempotency-key': 'k-frozen' });
    assert.equal(retry.status, 200);
    assert.equal(retry.body.seq, first.body.seq + 1);
    const got = await parked;
    assert.equal(got.status, 200);
    assert.deepEqual(got.body.messages.map((m) => [m.seq, m.data]), [[first.body.seq + 1, 'during']]);
    assert.ok(s.logs.some((l) => /redis stopped answering/.test(l.msg)), 'the silence is logged');
    assert.ok(s.logs.some((l) => l.msg === 'redis answers again' && l.awayMs > 0), 'the recovery is logged with how long Redis was away');
  });

  it('/readyz turns 503 with no traffic at all, from the liveness probe', async () => {
    assert.equal((await http(`${s.url}/readyz`)).status, 200);
    redis.pause();
    const t0 = Date.now();
    try {
      await until(async () => (await http(`${s.url}/readyz`)).status === 503, '/readyz 503 while Redis is stopped', 5000);
      assert.ok(Date.now() - t0 < 1000 + TIMEOUT_MS + 1000, `noticed in ${Date.now() - t0} ms`);
    } finally {
      redis.resume();
    }
    await until(async () => (await http(`${s.url}/readyz`)).status === 200, '/readyz back', 10_000);
  });
});
