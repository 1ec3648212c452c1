/**
 * Channel isolation regressions (issue 8): every answer carries only the channels it asked
 * for, at the positions its own cursor names. Each case here failed before the fix.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { Redis } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import { eachProfile } from '../helpers/profiles.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const SECRET = 'isolation-test-secret-of-enough-length';
let n = 0;
const fresh = (p: string) => `${p}${process.pid}-${++n}`;

function token(channels: string[]): Promise<string> {
  return new SignJWT({ channels }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
}

function batch(base: string, messages: { ch: string; data: unknown }[]) {
  return http(`${base}/v1/publish`, { method: 'POST', json: { messages } });
}

/** Resolves once a poll is registered on each of `channels` and `total` polls are parked. */
function parked(s: TestServer, channels: string[], total: number): Promise<void> {
  const { hub } = s.server.context;
  return until(() => channels.every((ch) => hub.registry.countOn(ch) > 0) && hub.parkedCount === total, `${total} polls parked`);
}

// Two names whose 48-bit cursor hashes are equal (see test/units.test.ts).
const TWINS = ['c2h8q3', 'cimmwd'];

eachProfile((profile, env) => {
  describe(`channel isolation [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_JWT_SECRET: SECRET, LP_PUBLIC_PREFIXES: 'pub' });
    });
    after(() => s.close());

    it('a batch to two channels at the same seq answers each poll with its own channel only', async () => {
      const lobby = fresh('public:lobby-');
      const inbox = fresh('alice:inbox-');
      const lobbyPoll = poll(s.url, { ch: lobby, timeout: 10_000 }, { headers: { authorization: `Bearer ${await token([lobby])}` } });
      const inboxPoll = poll(s.url, { ch: inbox, timeout: 10_000 }, { headers: { authorization: `Bearer ${await token([inbox])}` } });
      await parked(s, [lobby, inbox], 2);
      const r = await batch(s.url, [{ ch: inbox, data: { secret: 'for alice only' } }, { ch: lobby, data: 'hello lobby' }]);
      assert.equal(r.status, 200);
      const [l, a] = await Promise.all([lobbyPoll, inboxPoll]);
      assert.deepEqual(l.body.messages, [{ ch: lobby, seq: 1, data: 'hello lobby' }]);
      assert.deepEqual(a.body.messages, [{ ch: inbox, seq: 1, data: { secret: 'for alice only' } }]);
      assert.equal(l.body.gap, false);
      // Each cursor belongs to its own channel: nothing is skipped on the next poll.
      await publish(s.url, lobby, 'second');
      const next = await poll(s.url, { ch: lobby, cursor: l.body.cursor, timeout: 1000 }, { headers: { authorization: `Bearer ${await token([lobby])}` } });
      assert.deepEqual(next.body.messages.map((m) => [m.ch, m.seq, m.data]), [[lobby, 2, 'second']]);
    });

    it('forty channels standing at the same seq, woken in one flush, each get their own message', async () => {
      // One Redis slot: never-published channels of a slot share its store epoch, so on Redis
      // too they stand at the very same (epoch, seq).
      const channels = sameSlot(fresh('pub-lockstep-'), 40);
      for (const ch of channels) await publish(s.url, ch, { ch, seq: 1 });
      const cursors = await Promise.all(channels.map((ch) => poll(s.url, { ch, cursor: 'earliest' }).then((r) => r.body.cursor)));
      const waiting = channels.map((ch, i) => poll(s.url, { ch, cursor: cursors[i], timeout: 10_000 }));
      await parked(s, channels, 40);
      assert.equal((await batch(s.url, channels.map((ch) => ({ ch, data: { ch, seq: 2 } })))).status, 200);
      const answers = await Promise.all(waiting);
      answers.forEach((r, i) => assert.deepEqual(r.body.messages, [{ ch: channels[i], seq: 2, data: { ch: channels[i], seq: 2 } }], `poll on ${channels[i]}`));
    });

    it('two channels of one poll whose cursor hashes collide keep their own positions', async () => {
      const [a, b] = TWINS as [string, string];
      const pub = `pub${process.pid}${++n}`;
      // The twins are fixed names: count from wherever they stand.
      const ra = await channelState(s, a);
      const rb = await channelState(s, b);
      for (let i = 0; i < 3; i++) await publish(s.url, a, { a: i });
      await publish(s.url, b, { b: 0 });
      const auth = { headers: { authorization: `Bearer ${await token([a, b, pub])}` } };
      const first = await poll(s.url, { ch: [a, b], cursor: 'earliest', max: 1000 }, auth);
      assert.equal(first.status, 200);
      assert.deepEqual(
        first.body.messages.filter((m) => m.seq > (m.ch === a ? ra : rb)).map((m) => m.ch),
        [a, a, a, b],
      );
      await publish(s.url, a, 'a-next');
      await publish(s.url, b, 'b-next');
      const next = await poll(s.url, { ch: [a, b], cursor: first.body.cursor, timeout: 1000 }, auth);
      assert.deepEqual(next.body.messages.map((m) => [m.ch, m.seq, m.data]), [[a, ra + 4, 'a-next'], [b, rb + 2, 'b-next']]);
      assert.equal(next.body.gap, false);
    });

    if (profile.name !== 'memory') {
      it('a channel named q:<id> and the seed queue of clientId <id> are strangers', async () => {
        const id = fresh('stranger-');
        const ch = `q:${id}`;
        const auth = { headers: { authorization: `Bearer ${await token([ch, id])}` } };
        const channelPoll = poll(s.url, { ch, timeout: 10_000 }, auth);
        const seedPoll = http(`${s.url}/poll?clientId=${id}&timeout=10000`, auth);
        await parked(s, [ch], 1);
        await until(() => s.server.context.seed.isWatching(id), 'seed poll watching');
        const t0 = Date.now();
        assert.equal((await publish(s.url, ch, 'to the channel')).status, 200);
        const c = await channelPoll;
        assert.ok(Date.now() - t0 < 5000, `woken at once, not at its timeout (${Date.now() - t0} ms)`);
        assert.deepEqual(c.body.messages.map((m) => [m.ch, m.data]), [[ch, 'to the channel']]);
        assert.equal((await http(`${s.url}/push`, { method: 'POST', json: { clientId: id, message: 'to the client' } })).status, 200);
        assert.deepEqual((await seedPoll).body, { data: 'to the client' });
      });

      it('a cursor whose message Redis lost, its seq since reused, reads as a gap (never a silent skip)', async () => {
        const ch = fresh('pub-lost-');
        for (let i = 1; i <= 3; i++) await publish(s.url, ch, { i });
        const seen = await poll(s.url, { ch, cursor: 'earliest' });
        assert.deepEqual(seen.body.messages.map((m) => m.seq), [1, 2, 3]);
        // What an AOF everysec crash does: the last acknowledged write is gone from the store.
        await loseLastWrite(s, ch);
        assert.equal((await publish(s.url, ch, { i: 'new 3' })).body.seq, 3, 'seq 3 is handed out again');
        await publish(s.url, ch, { i: 'new 4' });
        const r = await poll(s.url, { ch, cursor: seen.body.cursor, timeout: 1000 });
        assert.equal(r.body.gap, true);
        assert.deepEqual(r.body.gapChannels, [ch]);
        assert.deepEqual(r.body.messages.map((m) => m.seq), [4], 'nothing at or before the cursor is sent again');
      });
    }
  });
});

/** `count` channel names starting with `base` that all hash to one Redis Cluster slot. */
function sameSlot(base: string, count: number): string[] {
  const slot = calculateSlot(`${base}-0`);
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) if (calculateSlot(`${base}-${i}`) === slot) out.push(`${base}-${i}`);
  return out;
}

/** The channel's last seq (twin channels are fixed names and may have history already). */
async function channelState(s: TestServer, ch: string): Promise<number> {
  const r = await http(`${s.url}/v1/channels/${ch}`);
  assert.equal(r.status, 200);
  return r.body.lastSeq as number;
}

/** Removes the newest message of `ch` from Redis as a crash that lost it would (single Redis only). */
async function loseLastWrite(s: TestServer, ch: string): Promise<void> {
  const { config } = s;
  const nodes = config.redisClusterNodes.map((n) => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) }));
  const { Cluster } = await import('ioredis');
  const redis = config.redisUrl ? new Redis(config.redisUrl) : new Cluster(nodes);
  try {
    const meta = `${config.redisPrefix}c{${ch}}:m`;
    const hist = `${config.redisPrefix}c{${ch}}:h`;
    await redis.rpop(hist);
    await redis.hincrby(meta, 's', -1);
    const last = await redis.lindex(hist, -1);
    await redis.hset(meta, 't', last!.slice(0, last!.indexOf('|')));
  } finally {
    redis.disconnect();
  }
}
