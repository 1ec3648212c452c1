/** Subscriber tokens (HS256 JWT), publisher key, loopback-only publishing, CORS. */

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { signToken } from '../../src/auth/jwt.js';
import { isLoopback } from '../../src/auth/publisher.js';
import { type TestServer, http, poll, publish, startTestServer } from '../helpers/server.js';

const SECRET = 'test-secret-0123456789';
const KEY = 'publish-key-abcdefgh';
const hour = () => Math.floor(Date.now() / 1000) + 3600;

describe('subscriber auth (LP_JWT_SECRET)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ LP_JWT_SECRET: SECRET, LP_PUBLIC_PREFIXES: 'public:,news.', LP_JWT_LEEWAY_S: '5' });
  });
  after(() => s.close());

  const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

  it('a granted channel polls with the header or ?token=, exact names and prefix* patterns', async () => {
    const token = signToken(SECRET, { channels: ['user:42', 'room:*'], exp: hour() });
    await publish(s.url, 'user:42', 'hello');
    const r = await poll(s.url, { ch: ['user:42', 'room:lobby'], cursor: 'earliest' }, bearer(token));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.messages.map((m) => m.data), ['hello']);
    const q = await http(`${s.url}/v1/poll?ch=user:42&cursor=earliest&token=${token}`);
    assert.equal(q.status, 200);
  });

  it('the header wins over ?token=', async () => {
    const good = signToken(SECRET, { channels: ['user:1'], exp: hour() });
    const other = signToken(SECRET, { channels: ['user:2'], exp: hour() });
    const r = await http(`${s.url}/v1/poll?ch=user:1&cursor=earliest&timeout=1000&token=${other}`, bearer(good));
    assert.equal(r.status, 200);
    const r2 = await http(`${s.url}/v1/poll?ch=user:1&cursor=earliest&timeout=1000&token=${good}`, bearer(other));
    assert.equal(r2.status, 403);
  });

  it('public channels need no token, and a poll of only public channels ignores a bad one', async () => {
    await publish(s.url, 'public:x', 1);
    assert.equal((await poll(s.url, { ch: ['public:x', 'news.today'], cursor: 'earliest' })).status, 200);
    assert.equal((await poll(s.url, { ch: 'public:x', cursor: 'earliest' }, bearer('garbage'))).status, 200);
  });

  it('missing, malformed, forged, expired, alg=none or claim-less tokens get 401', async () => {
    const past = Math.floor(Date.now() / 1000) - 60;
    const forged = signToken('another-secret-000000', { channels: ['user:42'], exp: hour() });
    const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const p = Buffer.from(JSON.stringify({ channels: ['user:42'], exp: hour() })).toString('base64url');
    const hs512h = Buffer.from(JSON.stringify({ alg: 'HS512' })).toString('base64url');
    const cases: [string, RequestInit][] = [
      ['missing', {}],
      ['not a jwt', bearer('abc')],
      ['garbage parts', bearer('a.b.c')],
      ['forged', bearer(forged)],
      ['expired', bearer(signToken(SECRET, { channels: ['user:42'], exp: past }))],
      ['no exp', bearer(signToken(SECRET, { channels: ['user:42'] } as any))],
      ['no channels', bearer(signToken(SECRET, { exp: hour() } as any))],
      ['alg none', bearer(`${h}.${p}.`)],
      ['alg HS512', bearer(`${hs512h}.${p}.${createHmac('sha512', SECRET).update(`${hs512h}.${p}`).digest('base64url')}`)],
      ['basic auth', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }],
    ];
    for (const [what, init] of cases) {
      const r = await poll(s.url, { ch: 'user:42' }, init);
      assert.equal(r.status, 401, what);
      assert.equal(r.body.error.code, 'unauthorized', what);
    }
  });

  it('within the leeway an expired token still works', async () => {
    const t = signToken(SECRET, { channels: ['user:7'], exp: Math.floor(Date.now() / 1000) - 2 });
    assert.equal((await poll(s.url, { ch: 'user:7', cursor: 'earliest', timeout: 1000 }, bearer(t))).status, 200);
  });

  it('any channel not granted is 403 for the whole poll', async () => {
    const token = signToken(SECRET, { channels: ['user:42'], exp: hour() });
    const r = await poll(s.url, { ch: ['user:42', 'user:43'] }, bearer(token));
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'forbidden');
  });

  it('bad input is answered (400) before auth', async () => {
    const r = await poll(s.url, { ch: 'bad channel!' });
    assert.equal(r.status, 400);
    const c = await poll(s.url, { ch: 'user:42', cursor: 'nope' });
    assert.equal(c.status, 400);
  });

  it('seed /poll needs a token granting the clientId', async () => {
    const token = signToken(SECRET, { channels: ['client-*'], exp: hour() });
    assert.equal((await http(`${s.url}/poll?clientId=client-1&timeout=1000`)).status, 401);
    assert.equal((await http(`${s.url}/poll?clientId=other&timeout=1000`, bearer(token))).status, 403);
    const ok = await http(`${s.url}/poll?clientId=client-1&timeout=1000`, bearer(token));
    assert.deepEqual([ok.status, ok.body], [200, { status: 'timeout' }]);
  });
});

describe('publisher auth', () => {
  it('with LP_PUBLISH_KEY: a Bearer key is required for publish, admin, /push, /disconnect', async () => {
    const s = await startTestServer({ LP_PUBLISH_KEY: KEY });
    try {
      const calls = [
        (h: Record<string, string>) => publish(s.url, 'c', 1, h),
        (h: Record<string, string>) => http(`${s.url}/v1/publish`, { method: 'POST', json: { messages: [] }, headers: h }),
        (h: Record<string, string>) => http(`${s.url}/v1/channels/c`, { headers: h }),
        (h: Record<string, string>) => http(`${s.url}/v1/channels/c`, { method: 'DELETE', headers: h }),
        (h: Record<string, string>) => http(`${s.url}/push`, { method: 'POST', json: { clientId: 'a', message: 1 }, headers: h }),
        (h: Record<string, string>) => http(`${s.url}/disconnect?clientId=a`, { method: 'DELETE', headers: h }),
      ];
      for (const call of calls) {
        assert.equal((await call({})).status, 401);
        assert.equal((await call({ authorization: 'Bearer wrong-key-wrong-key' })).status, 401);
        assert.equal((await call({ authorization: `Bearer ${KEY}` })).status, 200);
      }
    } finally {
      await s.close();
    }
  });

  it('without a key: loopback only, and never through a proxy (403)', async () => {
    const s = await startTestServer();
    try {
      assert.equal((await publish(s.url, 'c', 1)).status, 200);
      const fwd = await publish(s.url, 'c', 1, { 'x-forwarded-for': '203.0.113.9' });
      assert.equal(fwd.status, 403);
      assert.match(fwd.body.error.message, /LP_PUBLISH_KEY/);
      assert.equal((await publish(s.url, 'c', 1, { forwarded: 'for=203.0.113.9' })).status, 403);
      assert.equal((await http(`${s.url}/v1/channels/c`, { headers: { 'x-forwarded-for': '1.2.3.4' } })).status, 403);
    } finally {
      await s.close();
    }
  });

  it('LP_SEED_OPEN=1 lets anyone push and disconnect', async () => {
    const s = await startTestServer({ LP_PUBLISH_KEY: KEY, LP_SEED_OPEN: '1' });
    try {
      assert.equal((await http(`${s.url}/push`, { method: 'POST', json: { clientId: 'a', message: 1 }, headers: { 'x-forwarded-for': '1.2.3.4' } })).status, 200);
      assert.equal((await http(`${s.url}/disconnect?clientId=a`, { method: 'DELETE' })).status, 200);
      assert.equal((await publish(s.url, 'c', 1)).status, 401, 'channels still need the key');
    } finally {
      await s.close();
    }
  });

  it('knows which addresses are loopback', () => {
    const v6 = (tail: number[]) => new Uint8Array([...new Array(16 - tail.length).fill(0), ...tail]);
    const yes = [new Uint8Array([127, 0, 0, 1]), new Uint8Array([127, 1, 2, 3]), v6([1]), v6([0xff, 0xff, 127, 0, 0, 1])];
    const no = [new Uint8Array([10, 0, 0, 1]), new Uint8Array([192, 168, 1, 1]), v6([0xff, 0xff, 10, 0, 0, 1]), v6([2]), new Uint8Array([0x20, 1, 0xd, 0xb8, ...new Array(11).fill(0), 1]), new Uint8Array(0)];
    for (const a of yes) assert.ok(isLoopback(a), a.join('.'));
    for (const a of no) assert.ok(!isLoopback(a), a.join('.'));
  });
});

describe('CORS', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ LP_CORS_ORIGINS: 'https://app.example.com' });
  });
  after(() => s.close());

  it('a listed origin gets a 204 preflight and CORS headers on answers', async () => {
    const pre = await http(`${s.url}/v1/poll?ch=a`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com');
    assert.match(pre.headers.get('access-control-allow-methods')!, /GET.*POST.*DELETE/);
    for (const h of ['Authorization', 'Content-Type', 'Accept', 'Idempotency-Key']) assert.match(pre.headers.get('access-control-allow-headers')!, new RegExp(h));
    const r = await publish(s.url, 'a', 1, { origin: 'https://app.example.com' });
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example.com');
    assert.match(r.headers.get('access-control-expose-headers')!, /Retry-After/);
  });

  it('an unlisted origin: preflight 403 without CORS headers, and no CORS headers on answers', async () => {
    const pre = await http(`${s.url}/v1/poll?ch=a`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    assert.equal(pre.status, 403);
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    const r = await publish(s.url, 'a', 1, { origin: 'https://evil.example' });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });

  it('LP_CORS_ORIGINS=* allows any origin', async () => {
    const any = await startTestServer({ LP_CORS_ORIGINS: '*' });
    try {
      const pre = await http(`${any.url}/v1/poll`, { method: 'OPTIONS', headers: { origin: 'https://x.example' } });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    } finally {
      await any.close();
    }
  });
});
