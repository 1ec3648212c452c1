/** /v1/poll and /v1/publish: delivery, cursors, history, gaps, conflation, multi-channel. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { unpack } from 'msgpackr';
import { eachProfile } from '../helpers/profiles.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

let n = 0;
const fresh = (p = 'ch') => `${p}-${process.pid}-${++n}`;

eachProfile((profile, env) => {
  describe(`poll and publish [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_HISTORY_SIZE: '5', LP_CONFLATE_PREFIXES: 'price:' });
    });
    after(() => s.close());

    it('publish answers ch, seq (from 1, +1) and epoch; the channel epoch is stable', async () => {
      const ch = fresh();
      const a = await publish(s.url, ch, { n: 1 });
      const b = await publish(s.url, ch, { n: 2 });
      assert.equal(a.status, 200);
      assert.deepEqual(Object.keys(a.body).sort(), ['ch', 'epoch', 'seq']);
      assert.equal(a.body.ch, ch);
      assert.equal(a.body.seq, 1);
      assert.equal(b.body.seq, 2);
      assert.equal(a.body.epoch, b.body.epoch);
    });

    it('cursor=earliest returns the retained history in order, with headers', async () => {
      const ch = fresh();
      for (let i = 1; i <= 3; i++) await publish(s.url, ch, { i });
      const r = await poll(s.url, { ch, cursor: 'earliest' });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type')!, /^application\/json/);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.equal(r.headers.get('etag'), null);
      assert.deepEqual(r.body.messages.map((m) => [m.ch, m.seq, m.data]), [[ch, 1, { i: 1 }], [ch, 2, { i: 2 }], [ch, 3, { i: 3 }]]);
      assert.equal(r.body.gap, false);
      assert.equal('gapChannels' in r.body, false);
      assert.equal(typeof r.body.cursor, 'string');
      assert.match(r.body.cursor, /^[A-Za-z0-9_-]+$/);
    });

    it('without a cursor a poll waits for the next message and ignores the past', async () => {
      const ch = fresh();
      await publish(s.url, ch, 'old');
      const waiting = poll(s.url, { ch, timeout: 10_000 });
      await until(() => s.server.context.hub.registry.countOn(ch) === 1 && s.server.context.hub.parkedCount > 0, 'poll parked');
      await publish(s.url, ch, 'new');
      const r = await waiting;
      assert.deepEqual(r.body.messages.map((m) => m.data), ['new']);
      assert.equal(r.body.messages[0]!.seq, 2);
    });

    it('a timeout answers 200 with no messages and a cursor that misses nothing published after', async () => {
      const ch = fresh();
      const t0 = Date.now();
      const r1 = await poll(s.url, { ch, timeout: 1000 });
      assert.ok(Date.now() - t0 >= 900, 'held until the timeout');
      assert.equal(r1.status, 200);
      assert.deepEqual(r1.body.messages, []);
      assert.equal(r1.body.gap, false);
      await publish(s.url, ch, 'between polls');
      const r2 = await poll(s.url, { ch, cursor: r1.body.cursor, timeout: 1000 });
      assert.deepEqual(r2.body.messages.map((m) => m.data), ['between polls']);
    });

    it('timeout below 1000 is clamped up; max caps the answer and the cursor continues', async () => {
      const ch = fresh();
      for (let i = 1; i <= 5; i++) await publish(s.url, ch, i);
      const r1 = await poll(s.url, { ch, cursor: 'earliest', max: 2 });
      assert.deepEqual(r1.body.messages.map((m) => m.seq), [1, 2]);
      const r2 = await poll(s.url, { ch, cursor: r1.body.cursor, max: 2 });
      assert.deepEqual(r2.body.messages.map((m) => m.seq), [3, 4]);
      const r3 = await poll(s.url, { ch, cursor: r2.body.cursor, max: 2 });
      assert.deepEqual(r3.body.messages.map((m) => m.seq), [5]);
      const t0 = Date.now();
      const r4 = await poll(s.url, { ch, cursor: r3.body.cursor, timeout: 1 });
      assert.ok(Date.now() - t0 >= 900, `timeout=1 was clamped to 1000 ms (took ${Date.now() - t0} ms)`);
      assert.deepEqual(r4.body.messages, []);
    });

    it('history overflow is a gap that carries the retained messages', async () => {
      const ch = fresh();
      const r0 = await poll(s.url, { ch, cursor: 'earliest', timeout: 1000 });
      for (let i = 1; i <= 8; i++) await publish(s.url, ch, i); // history holds 5
      const r = await poll(s.url, { ch, cursor: r0.body.cursor });
      assert.equal(r.body.gap, true);
      assert.deepEqual(r.body.gapChannels, [ch]);
      assert.deepEqual(r.body.messages.map((m) => m.seq), [4, 5, 6, 7, 8]);
      const next = await poll(s.url, { ch, cursor: r.body.cursor, timeout: 1000 });
      assert.equal(next.body.gap, false, 'the gap is reported once');
    });

    it('a gap answer cut by max reports the gap once and then continues from the retained messages', async () => {
      const ch = fresh();
      const r0 = await poll(s.url, { ch, cursor: 'earliest', timeout: 1000 });
      for (let i = 1; i <= 8; i++) await publish(s.url, ch, i);
      const r1 = await poll(s.url, { ch, cursor: r0.body.cursor, max: 2 });
      assert.equal(r1.body.gap, true);
      assert.deepEqual(r1.body.messages.map((m) => m.seq), [4, 5]);
      const r2 = await poll(s.url, { ch, cursor: r1.body.cursor, max: 10 });
      assert.equal(r2.body.gap, false);
      assert.deepEqual(r2.body.messages.map((m) => m.seq), [6, 7, 8]);
    });

    it('a cursor taken before the first publish stays valid (no gap)', async () => {
      const ch = fresh();
      const r0 = await poll(s.url, { ch, timeout: 1000 });
      await publish(s.url, ch, 'first');
      const r = await poll(s.url, { ch, cursor: r0.body.cursor });
      assert.equal(r.body.gap, false);
      assert.deepEqual(r.body.messages.map((m) => m.data), ['first']);
    });

    it('DELETE starts a new epoch: parked polls answer at once with gap, seq restarts at 1', async () => {
      const ch = fresh();
      const first = await publish(s.url, ch, 'a');
      const r0 = await poll(s.url, { ch, cursor: 'earliest' });
      const parked = poll(s.url, { ch, cursor: r0.body.cursor, timeout: 30_000 });
      await until(() => s.server.context.hub.registry.countOn(ch) === 1, 'poll parked');
      const del = await http(`${s.url}/v1/channels/${ch}`, { method: 'DELETE' });
      assert.equal(del.status, 200);
      assert.equal(del.body.lastSeq, 0);
      assert.equal(del.body.retained, 0);
      assert.notEqual(del.body.epoch, first.body.epoch);
      const r = await parked;
      assert.equal(r.body.gap, true);
      assert.deepEqual(r.body.gapChannels, [ch]);
      const again = await publish(s.url, ch, 'b');
      assert.equal(again.body.seq, 1);
      assert.equal(again.body.epoch, del.body.epoch);
      const r2 = await poll(s.url, { ch, cursor: r.body.cursor });
      assert.equal(r2.body.gap, false);
      assert.deepEqual(r2.body.messages.map((m) => m.data), ['b']);
      // The pre-delete cursor reads as a gap too.
      const stale = await poll(s.url, { ch, cursor: r0.body.cursor });
      assert.equal(stale.body.gap, true);
    });

    it('GET /v1/channels reports epoch, lastSeq, retained and parked pollers', async () => {
      const ch = fresh();
      const p = await publish(s.url, ch, 1);
      await publish(s.url, ch, 2);
      const parked = poll(s.url, { ch, timeout: 5000 });
      await until(() => s.server.context.hub.registry.countOn(ch) === 1, 'poll parked');
      const info = await http(`${s.url}/v1/channels/${ch}`);
      assert.equal(info.status, 200);
      assert.deepEqual(info.body, { ch, epoch: p.body.epoch, lastSeq: 2, retained: 2, pollers: 1 });
      await publish(s.url, ch, 3);
      await parked;
      const never = await http(`${s.url}/v1/channels/${fresh('never')}`);
      assert.equal(never.body.lastSeq, 0);
      assert.equal(never.body.retained, 0);
      assert.equal(typeof never.body.epoch, 'string');
    });

    it('multi-channel polls: one request follows several channels, oldest first', async () => {
      const a = fresh('a');
      const b = fresh('b');
      const r0 = await poll(s.url, { ch: [a, b], timeout: 1000 });
      await publish(s.url, b, 'b1');
      await publish(s.url, a, 'a1');
      await publish(s.url, b, 'b2');
      const r1 = await poll(s.url, { ch: [a, b], cursor: r0.body.cursor });
      assert.deepEqual(r1.body.messages.map((m) => `${m.ch === a ? 'a' : 'b'}:${m.data}`), ['b:b1', 'a:a1', 'b:b2']);
      const parked = poll(s.url, { ch: [a, b], cursor: r1.body.cursor, timeout: 10_000 });
      await until(() => s.server.context.hub.registry.countOn(a) === 1, 'poll parked');
      await publish(s.url, a, 'a2');
      const r2 = await parked;
      assert.deepEqual(r2.body.messages.map((m) => m.data), ['a2']);
      // A channel the cursor does not cover starts from now; covered ones keep their place.
      const c = fresh('c');
      await publish(s.url, c, 'c-old');
      await publish(s.url, b, 'b3');
      const r3 = await poll(s.url, { ch: [a, b, c], cursor: r2.body.cursor });
      assert.deepEqual(r3.body.messages.map((m) => m.data), ['b3']);
    });

    it('conflated channels deliver only the latest value, and that is not a gap', async () => {
      const ch = fresh('price:');
      const r0 = await poll(s.url, { ch, timeout: 1000 });
      for (let i = 1; i <= 4; i++) await publish(s.url, ch, { px: i });
      const r = await poll(s.url, { ch, cursor: r0.body.cursor });
      assert.equal(r.body.gap, false);
      assert.deepEqual(r.body.messages.map((m) => [m.seq, m.data]), [[4, { px: 4 }]]);
      const info = await http(`${s.url}/v1/channels/${ch}`);
      assert.equal(info.body.retained, 1);
    });

    it('Accept: application/msgpack answers the same structure in MessagePack', async () => {
      const ch = fresh();
      await publish(s.url, ch, { big: [1, 'two', null, true] });
      const r = await poll(s.url, { ch, cursor: 'earliest' }, { headers: { accept: 'application/msgpack' } });
      assert.equal(r.headers.get('content-type'), 'application/msgpack');
      const body = unpack(r.body as unknown as Buffer);
      assert.deepEqual(body.messages, [{ ch, seq: 1, data: { big: [1, 'two', null, true] } }]);
      assert.equal(body.gap, false);
      assert.equal(typeof body.cursor, 'string');
    });

    it('publishes JSON, MessagePack and text bodies as the same values', async () => {
      const { pack } = await import('msgpackr');
      const ch = fresh();
      await http(`${s.url}/v1/publish/${ch}`, { method: 'POST', body: pack({ a: [1, 2], b: 'x' }), headers: { 'content-type': 'application/msgpack' } });
      await http(`${s.url}/v1/publish/${ch}`, { method: 'POST', body: 'plain words', headers: { 'content-type': 'text/plain; charset=utf-8' } });
      await http(`${s.url}/v1/publish/${ch}`, { method: 'POST', body: '[1, 2.5, "ü"]', headers: { 'content-type': 'application/json; charset=utf-8' } });
      const r = await poll(s.url, { ch, cursor: 'earliest' });
      assert.deepEqual(r.body.messages.map((m) => m.data), [{ a: [1, 2], b: 'x' }, 'plain words', [1, 2.5, 'ü']]);
    });

    it('2,000 parked polls on one channel are all woken by one publish', async () => {
      const ch = fresh('fan');
      // fetch's global agent opens one connection per concurrent request.
      const polls = Array.from({ length: 2000 }, () =>
        fetch(`${s.url}/v1/poll?ch=${ch}&timeout=60000`).then((r) => r.json() as Promise<any>),
      );
      await until(() => s.server.context.hub.registry.countOn(ch) === 2000, '2000 polls parked', 30_000);
      const p = await publish(s.url, ch, 'to everyone');
      const answers = await Promise.all(polls);
      assert.equal(answers.length, 2000);
      for (const a of answers) assert.deepEqual(a.messages, [{ ch, seq: p.body.seq, data: 'to everyone' }]);
      assert.equal(new Set(answers.map((a) => a.cursor)).size, 1, 'one shared cursor');
      assert.equal(s.server.context.hub.registry.countOn(ch), 0);
    });

    it('aborted polls free their slots at once', async () => {
      const ch = fresh();
      const before = s.server.context.hub.parkedCount;
      const controllers = Array.from({ length: 50 }, () => new AbortController());
      const pending = controllers.map((c) => poll(s.url, { ch, timeout: 60_000 }, { signal: c.signal }).catch((e) => e));
      await until(() => s.server.context.hub.parkedCount === before + 50, '50 polls parked');
      for (const c of controllers) c.abort();
      await Promise.all(pending);
      await until(() => s.server.context.hub.registry.countOn(ch) === 0, 'slots freed');
      assert.equal(s.server.context.hub.parkedCount, before);
    });
  });
});
