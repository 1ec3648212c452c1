/**
 * Redis scale-out and faults: two servers on one Redis, a subscriber connection killed
 * mid-stream, Redis down at start, Redis restarted (data lost), `--procs 2` on one port.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { profiles } from '../helpers/profiles.js';
import { RedisServer, freePort, startRedis, stopAllRedis } from '../helpers/redis.js';
import { type PollBody, type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const hasRedis = profiles().some((p) => p.name === 'redis');

describe('Redis: scale-out and faults', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => stopAllRedis());

  const env = () => ({ REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), LP_UNSUBSCRIBE_LINGER_MS: '200' });

  it('publish on one server, poll on another; a 500-message race across two servers', async () => {
    const e = env();
    const a = await startTestServer(e);
    const b = await startTestServer(e);
    try {
      const ch = 'across';
      let cursor = (await poll(b.url, { ch, timeout: 1000 })).body.cursor;
      const waiting = poll(b.url, { ch, cursor, timeout: 10_000 });
      await until(() => b.server.context.hub.parkedCount === 1, 'parked on b');
      const p = await publish(a.url, ch, 'hello from a');
      const got = await waiting;
      assert.deepEqual(got.body.messages, [{ ch, seq: p.body.seq, data: 'hello from a' }]);
      cursor = got.body.cursor;

      // Readers alternate servers on every poll (no stickiness); publishers alternate too.
      const TOTAL = 500;
      const seen: number[] = [];
      const reader = (async () => {
        let c = cursor;
        for (let i = 0; seen.length < TOTAL; i++) {
          const r: { body: PollBody } = await poll(i % 2 ? a.url : b.url, { ch, cursor: c, max: 7, timeout: 5000 });
          assert.equal(r.body.gap, false);
          for (const m of r.body.messages) seen.push(m.data as number);
          c = r.body.cursor;
        }
      })();
      const order: number[] = [];
      let next = 0;
      await Promise.all([a, b, a, b].map(async (srv) => {
        while (next < TOTAL) {
          const i = next++;
          const r = await publish(srv.url, ch, i);
          assert.equal(r.status, 200);
          order[r.body.seq - 2] = i;
        }
      }));
      await reader;
      assert.deepEqual(seen, order, 'each once, in seq order');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('CLIENT KILL TYPE pubsub during a stream of publishes loses nothing', async () => {
    const s = await startTestServer({ ...env(), LP_REDIS_SUBSCRIBERS: '2' });
    try {
      const channels = ['k1', 'k2', 'k3', 'k4'];
      const TOTAL = 300;
      const start = (await poll(s.url, { ch: channels, timeout: 1000 })).body.cursor;
      const seen = new Map<string, number[]>(channels.map((c) => [c, []]));
      let count = 0;
      const reader = (async () => {
        let c = start;
        while (count < TOTAL * channels.length) {
          const r = await poll(s.url, { ch: channels, cursor: c, timeout: 5000 });
          assert.equal(r.status, 200);
          for (const m of r.body.messages) {
            seen.get(m.ch)!.push(m.seq);
            count++;
          }
          c = r.body.cursor;
        }
      })();
      for (let i = 0; i < TOTAL; i++) {
        await Promise.all(channels.map((c) => publish(s.url, c, i)));
        if (i === 50 || i === 150) await redis.cli('client', 'kill', 'type', 'pubsub');
      }
      await reader;
      for (const c of channels) assert.deepEqual(seen.get(c), Array.from({ length: TOTAL }, (_, i) => i + 1), c);
    } finally {
      await s.close();
    }
  });

  it('Redis down at start: the server starts, /readyz and requests say 503 + Retry-After, then it recovers', async () => {
    const late = new RedisServer(await freePort());
    const s = await startTestServer({ REDIS_URL: late.url, LP_REDIS_PREFIX: 'late:', WAIT_READY: '0' });
    try {
      const ready = await http(`${s.url}/readyz`);
      assert.equal(ready.status, 503);
      const pub = await publish(s.url, 'x', 1);
      assert.equal(pub.status, 503);
      assert.equal(pub.body.error?.code, 'broker_unavailable');
      assert.ok(Number(pub.headers.get('retry-after')) >= 1);
      const pl = await poll(s.url, { ch: 'x', timeout: 1000 });
      assert.equal(pl.status, 503);
      assert.ok(pl.headers.get('retry-after'));
      await late.start();
      await s.server.broker.waitReady(20_000);
      assert.equal((await http(`${s.url}/readyz`)).status, 200);
      assert.equal((await publish(s.url, 'x', 1)).status, 200);
    } finally {
      await s.close();
      await late.stop();
    }
  });

  it('Redis restarted without persistence: parked polls keep waiting, then old cursors get gap: true', async () => {
    const own = await startRedis();
    const s = await startTestServer({ REDIS_URL: own.url, LP_REDIS_PREFIX: 'rs:' });
    try {
      const ch = 'restart';
      await publish(s.url, ch, 'before');
      const r0 = await poll(s.url, { ch, cursor: 'earliest' });
      const parked = poll(s.url, { ch, cursor: r0.body.cursor, timeout: 30_000 });
      await until(() => s.server.context.hub.parkedCount === 1, 'parked');
      await own.stop();
      await until(() => !s.server.broker.isReady(), 'broker notices');
      assert.equal((await http(`${s.url}/readyz`)).status, 503);
      await own.start();
      await s.server.broker.waitReady(20_000);
      // The store was lost: the parked poll re-reads on reconnect and reports the gap.
      const answer = await parked;
      assert.equal(answer.status, 200);
      assert.equal(answer.body.gap, true);
      assert.deepEqual(answer.body.gapChannels, [ch]);
      const after = await publish(s.url, ch, 'after');
      assert.equal(after.body.seq, 1);
      const next = await poll(s.url, { ch, cursor: answer.body.cursor });
      assert.deepEqual(next.body.messages.map((m) => m.data), ['after']);
    } finally {
      await s.close();
      await own.stop();
    }
  });

  it('holdfast --procs 2 serves one port from two processes that share channels', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', '--procs', '2'], {
      env: { ...process.env, ...env(), PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pids = new Set<number>();
    let port = 0;
    for await (const line of createInterface({ input: child.stdout! })) {
      const entry = JSON.parse(line);
      if (entry.msg === 'holdfast listening') port = entry.port;
      if (entry.msg === 'holdfast ready') {
        pids.add(entry.pid);
        if (pids.size === 2) break;
      }
    }
    child.stdout!.resume();
    child.stderr!.resume();
    try {
      const base = `http://127.0.0.1:${port}`;
      // Many pollers: the kernel spreads their connections over both processes.
      const ch = 'procs';
      const first = await poll(base, { ch, timeout: 1000 });
      assert.equal(first.status, 200);
      const start = first.body.cursor;
      const waiting = Array.from({ length: 40 }, () => poll(base, { ch, cursor: start, timeout: 20_000 }));
      const answered = new Set<number>();
      const p = await publish(base, ch, 'to all');
      for (const r of await Promise.all(waiting)) {
        assert.deepEqual(r.body.messages.map((m) => m.seq), [p.body.seq]);
        answered.add(r.status);
      }
      assert.deepEqual([...answered], [200]);
    } finally {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
    }
  });
});
