/** Batch publish, idempotency, the 500-publish race, and the in-flight bound. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pack } from 'msgpackr';
import { eachProfile } from '../helpers/profiles.js';
import { type PollBody, type TestServer, http, poll, publish, startTestServer } from '../helpers/server.js';

let n = 0;
const fresh = (p = 'pub') => `${p}-${process.pid}-${++n}`;

eachProfile((profile, env) => {
  describe(`publishing [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_MAX_BATCH: '50' });
    });
    after(() => s.close());

    it('batch publish answers results in order and delivers every item', async () => {
      const a = fresh('a');
      const b = fresh('b');
      const r = await http(`${s.url}/v1/publish`, {
        method: 'POST',
        json: { messages: [{ ch: a, data: 1 }, { ch: b, data: { two: 2 } }, { ch: a, data: 'three' }] },
      });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.results.map((x: any) => [x.ch, x.seq]), [[a, 1], [b, 1], [a, 2]]);
      for (const x of r.body.results) assert.equal(typeof x.epoch, 'string');
      const got = await poll(s.url, { ch: [a, b], cursor: 'earliest' });
      if (profile.name === 'cluster') {
        // Across shards "oldest first" is best effort (the contract says so); per channel it holds.
        assert.deepEqual(got.body.messages.filter((m) => m.ch === a).map((m) => m.data), [1, 'three']);
        assert.deepEqual(got.body.messages.filter((m) => m.ch === b).map((m) => m.data), [{ two: 2 }]);
      } else {
        assert.deepEqual(got.body.messages.map((m) => m.data), [1, { two: 2 }, 'three']);
      }
    });

    it('batch publish in MessagePack; an empty batch answers no results', async () => {
      const ch = fresh();
      const r = await http(`${s.url}/v1/publish`, {
        method: 'POST',
        body: pack({ messages: [{ ch, data: [1, 2] }] }),
        headers: { 'content-type': 'application/msgpack' },
      });
      assert.equal(r.status, 200);
      assert.equal(r.body.results[0].seq, 1);
      const empty = await http(`${s.url}/v1/publish`, { method: 'POST', json: { messages: [] } });
      assert.deepEqual([empty.status, empty.body], [200, { results: [] }]);
    });

    it('a batch with one bad item publishes nothing', async () => {
      const ch = fresh();
      const r = await http(`${s.url}/v1/publish`, {
        method: 'POST',
        json: { messages: [{ ch, data: 1 }, { ch: 'bad name!', data: 2 }] },
      });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'bad_channel');
      const info = await http(`${s.url}/v1/channels/${ch}`);
      assert.equal(info.body.lastSeq, 0);
      const tooMany = await http(`${s.url}/v1/publish`, {
        method: 'POST',
        json: { messages: Array.from({ length: 51 }, (_, i) => ({ ch, data: i })) },
      });
      assert.equal(tooMany.status, 400);
      assert.match(tooMany.body.error.message, /LP_MAX_BATCH/);
      assert.equal((await http(`${s.url}/v1/channels/${ch}`)).body.lastSeq, 0);
    });

    it('numbers written as floats are accepted at any size; integers only within ±(2^53 - 1)', async () => {
      const ch = fresh('num');
      const bodies: [string, unknown][] = [
        ['6.02e23', 6.02e23],
        ['1e16', 1e16],
        ['-1.5E300', -1.5e300],
        ['1.0', 1],
        ['9007199254740991', 9007199254740991],
        ['-9007199254740991', -9007199254740991],
        ['{"n":1e16,"avogadro":6.02e23,"s":"12345678901234567890","i":[9007199254740991]}', { n: 1e16, avogadro: 6.02e23, s: '12345678901234567890', i: [9007199254740991] }],
      ];
      for (const [body] of bodies) {
        const r = await http(`${s.url}/v1/publish/${ch}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        assert.equal(r.status, 200, `${body}: ${JSON.stringify(r.body)}`);
      }
      const batch = await http(`${s.url}/v1/publish`, { method: 'POST', body: `{"messages":[{"ch":"${ch}","data":1e300}]}`, headers: { 'content-type': 'application/json' } });
      assert.equal(batch.status, 200);
      const got = await poll(s.url, { ch, cursor: 'earliest' });
      assert.deepEqual(got.body.messages.map((m) => m.data), [...bodies.map(([, v]) => v), 1e300]);
    });

    it('MessagePack integers of every wire width are accepted when the value is within 2^53', async () => {
      const ch = fresh('mp');
      const u64 = (n: bigint) => Buffer.concat([Buffer.from([0xcf]), Buffer.from(n.toString(16).padStart(16, '0'), 'hex')]);
      const i64 = (n: bigint) => {
        const b = Buffer.alloc(9);
        b[0] = 0xd3;
        b.writeBigInt64BE(n, 1);
        return b;
      };
      const bodies: [Buffer, unknown][] = [
        [u64(635829306n), 635829306],
        [i64(-5n), -5],
        [u64(0n), 0],
        [u64(2n ** 53n - 1n), 9007199254740991],
        [i64(-(2n ** 53n - 1n)), -9007199254740991],
        [Buffer.from([0xce, 0xff, 0xff, 0xff, 0xff]), 4294967295],
        // {"n": int64 7, "f": float64 1e16}
        [Buffer.concat([Buffer.from([0x82, 0xa1, 0x6e]), i64(7n), Buffer.from([0xa1, 0x66, 0xcb]), Buffer.from(new Float64Array([1e16]).buffer).reverse()]), { n: 7, f: 1e16 }],
      ];
      for (const [body] of bodies) {
        const r = await http(`${s.url}/v1/publish/${ch}`, { method: 'POST', body, headers: { 'content-type': 'application/msgpack' } });
        assert.equal(r.status, 200, `${body.toString('hex')}: ${JSON.stringify(r.body)}`);
      }
      const beyond = await http(`${s.url}/v1/publish/${ch}`, { method: 'POST', body: u64(2n ** 53n), headers: { 'content-type': 'application/msgpack' } });
      assert.equal(beyond.status, 400);
      assert.match(beyond.body.error.message, /9007199254740992 is beyond 2\^53/);
      const got = await poll(s.url, { ch, cursor: 'earliest' });
      assert.deepEqual(got.body.messages.map((m) => m.data), bodies.map(([, v]) => v));
    });

    it('Idempotency-Key: a retry returns the first result and publishes nothing new', async () => {
      const ch = fresh();
      const key = `k-${n}`;
      const first = await publish(s.url, ch, { v: 1 }, { 'idempotency-key': key });
      const retry = await publish(s.url, ch, { v: 'different body' }, { 'idempotency-key': key });
      assert.deepEqual(retry.body, first.body);
      const other = await publish(s.url, ch, { v: 2 }, { 'idempotency-key': `${key}-b` });
      assert.equal(other.body.seq, 2);
      // Scoped per channel: the same key on another channel is a new publish.
      const elsewhere = await publish(s.url, fresh(), 'x', { 'idempotency-key': key });
      assert.equal(elsewhere.body.seq, 1);
      const got = await poll(s.url, { ch, cursor: 'earliest' });
      assert.deepEqual(got.body.messages.map((m) => m.data), [{ v: 1 }, { v: 2 }]);
    });

    it('batch ids are idempotency keys, also against single publishes', async () => {
      const ch = fresh();
      const single = await publish(s.url, ch, 'one', { 'idempotency-key': 'id-1' });
      const r = await http(`${s.url}/v1/publish`, {
        method: 'POST',
        json: { messages: [{ ch, data: 'dup', id: 'id-1' }, { ch, data: 'two', id: 'id-2' }, { ch, data: 'dup2', id: 'id-2' }] },
      });
      assert.deepEqual(r.body.results[0], single.body);
      assert.equal(r.body.results[1].seq, 2);
      assert.deepEqual(r.body.results[2], r.body.results[1]);
      assert.equal((await http(`${s.url}/v1/channels/${ch}`)).body.lastSeq, 2);
    });

    it('500 publishes raced against a polling loop with max=7: each arrives once, in order', async () => {
      const ch = fresh('race');
      const TOTAL = 500;
      const seen: number[] = [];
      let cursor = (await poll(s.url, { ch, timeout: 1000 })).body.cursor;
      const reader = (async () => {
        while (seen.length < TOTAL) {
          const r = await poll(s.url, { ch, cursor, max: 7, timeout: 5000 });
          assert.equal(r.status, 200);
          assert.equal(r.body.gap, false, 'no gap: history holds everything');
          for (const m of r.body.messages) seen.push(m.data as number);
          cursor = r.body.cursor;
        }
      })();
      // Publish from 4 concurrent publishers; each value is its own seq order key.
      const results: number[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < TOTAL) {
            const i = next++;
            const p = await publish(s.url, ch, i);
            assert.equal(p.status, 200);
            results[p.body.seq - 1] = i;
          }
        }),
      );
      await reader;
      assert.equal(seen.length, TOTAL);
      assert.deepEqual(seen, results, 'delivered in seq order, each once');
      assert.equal(new Set(seen).size, TOTAL);
    });

    it('several pollers on one channel all see every message once', async () => {
      const ch = fresh('multi');
      const TOTAL = 200;
      const start = (await poll(s.url, { ch, timeout: 1000 })).body.cursor;
      const readers = Array.from({ length: 5 }, async (_, r) => {
        const got: number[] = [];
        let cursor = start;
        while (got.length < TOTAL) {
          const a: { body: PollBody } = await poll(s.url, { ch, cursor, max: 3 + r, timeout: 5000 });
          for (const m of a.body.messages) got.push(m.seq);
          cursor = a.body.cursor;
        }
        return got;
      });
      for (let i = 0; i < TOTAL; i++) await publish(s.url, ch, i);
      for (const got of await Promise.all(readers)) assert.deepEqual(got, Array.from({ length: TOTAL }, (_, i) => i + 1));
    });
  });
});

describe('publish backpressure', () => {
  it('more publishes in flight than LP_MAX_PUBLISH_INFLIGHT get 429 with Retry-After', async () => {
    const s = await startTestServer({ LP_MAX_PUBLISH_INFLIGHT: '1' });
    try {
      // The memory broker answers at once, so stand in for a publish stuck on the broker.
      s.server.context.state.publishesInFlight = 1;
      const r = await publish(s.url, 'ch', 1);
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, 'too_many_publishes');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      assert.equal(typeof r.body.retryMs, 'number');
      s.server.context.state.publishesInFlight = 0;
      assert.equal((await publish(s.url, 'ch', 1)).status, 200);
    } finally {
      await s.close();
    }
  });
});
