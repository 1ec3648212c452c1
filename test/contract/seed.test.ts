/** The seed-compatible /poll, /push, /disconnect in their own wire format. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eachProfile } from '../helpers/profiles.js';
import { type TestServer, http, startTestServer, until } from '../helpers/server.js';

let n = 0;
const fresh = () => `client-${process.pid}-${++n}`;

eachProfile((profile, env) => {
  describe(`seed-compatible endpoints [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_HISTORY_SIZE: '3' });
    });
    after(() => s.close());

    const push = (body: unknown) => http(`${s.url}/push`, { method: 'POST', json: body });
    const seedPoll = (id: string, timeout = 10_000, key = 'clientId') => http(`${s.url}/poll?${key}=${id}&timeout=${timeout}`);

    it('a queued message is answered at once as {"data": …}, one per poll, oldest first', async () => {
      const id = fresh();
      assert.deepEqual((await push({ clientId: id, message: { n: 1 } })).body, { status: 'ok' });
      assert.deepEqual((await push({ client_id: id, data: 'two' })).body, { status: 'ok' });
      const a = await seedPoll(id);
      assert.equal(a.status, 200);
      assert.deepEqual(a.body, { data: { n: 1 } });
      assert.deepEqual((await seedPoll(id, 10_000, 'client_id')).body, { data: 'two' });
    });

    it('a parked poll gets the next push; on timeout {"status":"timeout"}', async () => {
      const id = fresh();
      const waiting = seedPoll(id);
      await until(() => s.server.context.seed.parkedCount >= 1, 'seed poll parked');
      await push({ clientId: id, message: 'hi' });
      assert.deepEqual((await waiting).body, { data: 'hi' });
      const t0 = Date.now();
      const timedOut = await seedPoll(fresh(), 1000);
      assert.ok(Date.now() - t0 >= 900);
      assert.deepEqual(timedOut.body, { status: 'timeout' });
    });

    it('with several polls parked for one client, the oldest gets the message', async () => {
      const id = fresh();
      const before0 = s.server.context.seed.parkedCount;
      const first = seedPoll(id, 5000);
      await until(() => s.server.context.seed.parkedCount === before0 + 1, 'first parked');
      const second = seedPoll(id, 2000);
      await until(() => s.server.context.seed.parkedCount === before0 + 2, 'second parked');
      await push({ clientId: id, message: 'only one' });
      assert.deepEqual((await first).body, { data: 'only one' });
      assert.deepEqual((await second).body, { status: 'timeout' });
    });

    it('the queue is bounded: when full, the oldest message goes', async () => {
      const id = fresh();
      for (let i = 1; i <= 5; i++) await push({ clientId: id, message: i });
      const got = [];
      for (let i = 0; i < 3; i++) got.push((await seedPoll(id)).body.data);
      assert.deepEqual(got, [3, 4, 5]);
    });

    it('a message whose poll was already gone goes back to the head of the queue', async () => {
      const id = fresh();
      const controller = new AbortController();
      const before0 = s.server.context.seed.parkedCount;
      const gone = seedPoll(id, 30_000).catch(() => 'aborted');
      void gone;
      const aborted = http(`${s.url}/poll?clientId=${id}&timeout=30000`, { signal: controller.signal }).catch(() => 'aborted');
      await until(() => s.server.context.seed.parkedCount === before0 + 2, 'both parked');
      controller.abort();
      assert.equal(await aborted, 'aborted');
      await until(() => s.server.context.seed.parkedCount === before0 + 1, 'aborted poll left');
      await push({ clientId: id, message: 'kept' });
      assert.deepEqual(await gone.then((r: any) => r.body), { data: 'kept' });
    });

    it('DELETE /disconnect drops waiting messages and answers the parked poll with timeout', async () => {
      const id = fresh();
      await push({ clientId: id, message: 'dropped' });
      const r = await http(`${s.url}/disconnect?clientId=${id}`, { method: 'DELETE' });
      assert.deepEqual([r.status, r.body], [200, { status: 'ok' }]);
      const waiting = seedPoll(id, 30_000);
      await until(() => s.server.context.seed.isWatching(id), 'parked and watching');
      const t0 = Date.now();
      await http(`${s.url}/disconnect?client_id=${id}`, { method: 'DELETE' });
      assert.deepEqual((await waiting).body, { status: 'timeout' });
      assert.ok(Date.now() - t0 < 5000, 'answered at once, not at its timeout');
    });

    it('bad seed input gets JSON errors', async () => {
      const cases: [Promise<any>, number, string][] = [
        [http(`${s.url}/poll`), 400, 'bad_request'],
        [http(`${s.url}/poll?clientId=bad%20id`), 400, 'bad_channel'],
        [http(`${s.url}/poll?clientId=a&timeout=soon`), 400, 'bad_request'],
        [push({ message: 1 }), 400, 'bad_request'],
        [push({ clientId: 'x' }), 400, 'bad_request'],
        [push([1, 2]), 400, 'bad_request'],
        [http(`${s.url}/push`, { method: 'POST', body: '{"clientId":', headers: { 'content-type': 'application/json' } }), 400, 'bad_json'],
        [http(`${s.url}/push`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
        [http(`${s.url}/disconnect`, { method: 'DELETE' }), 400, 'bad_request'],
        [http(`${s.url}/disconnect?clientId=a`), 405, 'method_not_allowed'],
      ];
      for (const [p, status, code] of cases) {
        const r = await p;
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.error.code, code);
      }
    });
  });
});
