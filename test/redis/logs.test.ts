/**
 * Logs a person can act on: with REDIS_URL pointing at nothing, each failed connect is a warn
 * line that says where (without the password) and why; when Redis comes up, an info line says
 * the broker is ready; when Redis dies and comes back, warn lines say the connections were
 * lost and are back, with how long they were away.
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { profiles } from '../helpers/profiles.js';
import { RedisServer, freePort, stopAllRedis } from '../helpers/redis.js';
import { http, until } from '../helpers/server.js';
import { startHaServer } from '../ha/harness.js';

const hasRedis = profiles().some((p) => p.name === 'redis');

describe('Redis logs', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  after(() => stopAllRedis());

  it('failed connects, ready, lost and back are logged with where and for how long, never the password', async () => {
    const port = await freePort();
    const s = await startHaServer({ REDIS_URL: `redis://:s3cret-pw@127.0.0.1:${port}`, LP_REDIS_PREFIX: 'logs:', LOG_LEVEL: 'info' }, false);
    const redis = new RedisServer(port, ['--requirepass', 's3cret-pw']);
    try {
      await until(() => s.logs.filter((l) => l.msg === 'redis connect failed').length >= 3, 'failed connects are logged');
      const failed = s.logs.find((l) => l.msg === 'redis connect failed')!;
      assert.equal(failed.level, 40);
      assert.equal(failed.redis, `redis://:***@127.0.0.1:${port}`);
      assert.match(failed.err, /ECONNREFUSED/);
      assert.ok(['command', 'subscriber 1/2', 'subscriber 2/2'].includes(failed.conn), failed.conn);
      assert.equal((await http(`${s.url}/readyz`)).status, 503);

      await redis.start();
      await s.server.broker.waitReady(20_000);
      const ready = s.logs.find((l) => l.msg === 'redis ready')!;
      assert.equal(ready.level, 30);
      assert.equal(ready.redis, `redis://:***@127.0.0.1:${port}`);

      await redis.stop();
      await until(() => s.logs.filter((l) => l.msg === 'redis connection lost').length === 3, 'each connection says it was lost');
      const downAt = Date.now();
      await new Promise((r) => setTimeout(r, 300));
      await redis.start();
      await s.server.broker.waitReady(20_000);
      await until(() => s.logs.filter((l) => l.msg === 'redis connection back').length === 3, 'each connection says it is back');
      for (const back of s.logs.filter((l) => l.msg === 'redis connection back')) {
        assert.equal(back.level, 40);
        assert.ok(back.awayMs >= 300 && back.awayMs < Date.now() - downAt + 1000, `away ${back.awayMs} ms`);
      }
      assert.ok(!JSON.stringify(s.logs).includes('s3cret-pw'), 'the password is never logged');
    } finally {
      await s.close();
      await redis.stop();
    }
  });
});
