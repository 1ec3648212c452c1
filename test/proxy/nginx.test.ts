/**
 * Holdfast behind a real nginx loading the README's recommended configuration
 * (test/proxy/nginx-holdfast.conf): what uWS v20.30 cannot take directly (HTTP/1.0, more than
 * ~48 header lines) works through it; polls, publishes with a key, CORS, drains and slow
 * readers work; publishing without a key through it is refused.
 *
 * The whole contract suite also runs through it: HOLDFAST_VIA=nginx (see .ci/run).
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { MAX_TIMEOUT_MS } from '../../src/http/poll.js';
import { type Nginx, RECOMMENDED_CONF, hasNginx, startNginx } from '../helpers/nginx.js';
import { exchange } from '../helpers/raw-http.js';
import { SseClient, WsClient, closeStreams } from '../helpers/streams.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const KEY = 'proxy-publish-key-0123456789';
const key = { authorization: `Bearer ${KEY}` };
const skip = hasNginx() ? false : 'nginx is not installed (apt-get install nginx-light; .ci/run does)';
const CRLF = '\r\n';

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, name);
  return Number(line.split(' ').pop());
}
const metricsOf = async (s: TestServer) => ((await http(`${s.url}/metrics`)).body as Buffer).toString();

describe('the recommended nginx configuration', { skip }, () => {
  const conf = readFileSync(RECOMMENDED_CONF, 'utf8');

  it('speaks HTTP/1.1 with keep-alive upstream and outwaits the longest hold', () => {
    assert.match(conf, /^\s*proxy_http_version 1\.1;/m);
    assert.match(conf, /^\s*proxy_set_header Connection \$holdfast_connection;/m);
    assert.match(conf, /^\s*''\s+'';/m, 'no Upgrade: an empty Connection header, so the upstream connection is kept');
    assert.match(conf, /^\s*keepalive \d+;/m);
    assert.match(conf, /^\s*proxy_buffering off;/m);
    const read = Number(/^\s*proxy_read_timeout (\d+)s;/m.exec(conf)?.[1]);
    assert.ok(read * 1000 > MAX_TIMEOUT_MS, `proxy_read_timeout ${read}s is above the ${MAX_TIMEOUT_MS / 1000} s maximum hold`);
  });

  it('is, verbatim, the snippet in the README\'s "Behind a proxy" section', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.split(/^## /m).find((s) => s.startsWith('Behind a proxy'));
    assert.ok(section, 'README.md has a "Behind a proxy" section');
    const block = /```nginx\n([\s\S]*?)```/.exec(section)?.[1];
    assert.equal(block, conf, 'README snippet and test/proxy/nginx-holdfast.conf differ');
  });
});

describe('through nginx, with LP_PUBLISH_KEY', { skip }, () => {
  let s: TestServer;
  let n: Nginx;
  before(async () => {
    s = await startTestServer({ VIA: 'direct', LP_PUBLISH_KEY: KEY, LP_CORS_ORIGINS: 'https://app.example.com' });
    n = await startNginx(s.port);
  });
  after(async () => {
    await s.close();
    await n.stop();
  });

  it('uWS v20.30 never answers HTTP/1.0 or a head of 49+ header lines; through nginx both are served', async () => {
    const many = Array.from({ length: 60 }, (_, i) => `X-Extra-${i}: ${i}`);
    const http10 = `GET /healthz HTTP/1.0${CRLF}${CRLF}`;
    const crowded = ['GET /healthz HTTP/1.1', 'Host: x', ...many].join(CRLF) + CRLF + CRLF;
    // Direct: no answer; uWS closes the idle socket after ~10 s.
    const direct = await Promise.all([http10, crowded].map((r) => exchange(s.port, r, { waitForClose: true, limitMs: 20_000 })));
    for (const d of direct) assert.deepEqual([d.answers.length, d.rest.length, d.closed], [0, 0, true]);
    for (const r of [http10, crowded]) {
      const x = await exchange(n.port, r);
      assert.equal(x.answers[0]?.status, 200, r.split(CRLF)[0]);
      assert.equal(JSON.parse(x.answers[0]!.body.toString()).status, 'ok');
    }
  });

  it('HEAD through nginx: headers only, and the connection goes on', async () => {
    const x = await exchange(n.port, `HEAD /healthz HTTP/1.1${CRLF}Host: x${CRLF}${CRLF}GET /healthz HTTP/1.1${CRLF}Host: x${CRLF}${CRLF}`, { expect: 2, heads: [true, false] });
    assert.deepEqual(x.answers.map((a) => a.status), [200, 200]);
    assert.equal(x.answers[0]!.body.length, 0);
    assert.equal(x.answers[0]!.header('content-length'), String(x.answers[1]!.body.length));
    assert.equal(x.rest.length, 0);
  });

  it('polls park and wake, publishes and admin need the key, batches and msgpack pass', async () => {
    const ch = `px-${process.pid}`;
    const waiting = poll(n.url, { ch, timeout: 10_000 });
    await until(() => s.server.context.hub.registry.countOn(ch) === 1, 'parked through nginx');
    assert.equal((await publish(n.url, ch, 'no key')).status, 401);
    const p = await publish(n.url, ch, { hello: 'proxy' }, key);
    assert.equal(p.status, 200);
    assert.deepEqual((await waiting).body.messages.map((m) => m.data), [{ hello: 'proxy' }]);
    const batch = await http(`${n.url}/v1/publish`, { method: 'POST', json: { messages: [{ ch, data: 2 }, { ch, data: 3 }] }, headers: key });
    assert.deepEqual(batch.body.results.map((r: { seq: number }) => r.seq), [2, 3]);
    const mp = await http(`${n.url}/v1/poll?ch=${ch}&cursor=earliest`, { headers: { accept: 'application/msgpack' } });
    assert.match(mp.headers.get('content-type')!, /msgpack/);
    const info = await http(`${n.url}/v1/channels/${ch}`, { headers: key });
    assert.deepEqual([info.status, info.body.lastSeq], [200, 3]);
    const idem = await publish(n.url, ch, 'again', { ...key, 'idempotency-key': 'k1' });
    assert.deepEqual((await publish(n.url, ch, 'again', { ...key, 'idempotency-key': 'k1' })).body, idem.body, 'Idempotency-Key passes through');
  });

  it('SSE and WebSocket streams pass: events as they are published, and the WebSocket subprotocol', async () => {
    const ch = `stream-${process.pid}`;
    try {
      const sse = await SseClient.start(n.url, { ch });
      const ws = await WsClient.connect(n.url, { msgpack: true });
      await ws.subscribe(ch);
      for (const i of [1, 2, 3]) assert.equal((await publish(n.url, ch, i, key)).status, 200);
      await sse.until(() => sse.messages().length === 3, 'three SSE events through nginx');
      await ws.until(() => ws.messages().length === 3, 'three WebSocket messages through nginx');
      assert.deepEqual(sse.messages().map((m) => m.data), [1, 2, 3]);
      assert.deepEqual(ws.messages().map((m) => m.data), [1, 2, 3]);
    } finally {
      closeStreams();
    }
  });

  it('a request line of 32 long channel names and a cursor passes', async () => {
    const channels = Array.from({ length: 32 }, (_, i) => `${String(i).padStart(2, '0')}${'c'.repeat(198)}`);
    const first = await poll(n.url, { ch: channels, cursor: 'earliest', timeout: 1000 });
    assert.equal(first.status, 200);
    const again = await poll(n.url, { ch: channels, cursor: first.body.cursor, timeout: 1000 });
    assert.equal(again.status, 200);
  });

  it('CORS: preflight and answer headers pass through', async () => {
    const origin = 'https://app.example.com';
    const pre = await http(`${n.url}/v1/publish/x`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
    assert.match(pre.headers.get('access-control-allow-headers')!, /Authorization/);
    const r = await publish(n.url, 'cors', 1, { ...key, origin });
    assert.equal(r.headers.get('access-control-allow-origin'), origin);
    const evil = await http(`${n.url}/v1/poll?ch=a`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    assert.equal(evil.status, 403);
  });

  it('a slow reader through nginx is closed by Holdfast and counted; both keep serving', async () => {
    const big = await startTestServer({ VIA: 'direct', LP_PUBLISH_KEY: KEY, LP_MAX_BACKPRESSURE: String(64 << 20), LP_WRITE_TIMEOUT_MS: '1000' });
    const front = await startNginx(big.port);
    try {
      const ch = `slow-${process.pid}`;
      const chunk = 'y'.repeat(60_000);
      for (let i = 0; i < 400; i++) await publish(big.url, ch, chunk, key);
      const { connect } = await import('node:net');
      const sock = connect(front.port, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.on('error', () => undefined);
      sock.pause();
      sock.write(`GET /v1/poll?ch=${ch}&cursor=earliest&max=1000 HTTP/1.1${CRLF}Host: x${CRLF}${CRLF}`);
      await until(async () => metric(await metricsOf(big), 'holdfast_slow_responses_closed_total') === 1, 'the slow answer closed', 30_000);
      sock.destroy();
      assert.equal((await http(`${front.url}/healthz`)).status, 200);
    } finally {
      await big.close();
      await front.stop();
    }
  });
});

describe('through nginx, without LP_PUBLISH_KEY', { skip }, () => {
  let s: TestServer;
  let n: Nginx;
  before(async () => {
    s = await startTestServer({ VIA: 'direct' });
    n = await startNginx(s.port);
  });
  after(async () => {
    await s.close();
    await n.stop();
  });

  it('publishing, admin, /push and /disconnect through the proxy are 403; polls work; direct loopback still publishes', async () => {
    for (const r of [
      await publish(n.url, 'c', 1),
      await http(`${n.url}/v1/publish`, { method: 'POST', json: { messages: [{ ch: 'c', data: 1 }] } }),
      await http(`${n.url}/v1/channels/c`),
      await http(`${n.url}/v1/channels/c`, { method: 'DELETE' }),
      await http(`${n.url}/push`, { method: 'POST', json: { clientId: 'a', message: 1 } }),
      await http(`${n.url}/disconnect?clientId=a`, { method: 'DELETE' }),
    ]) {
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'forbidden');
      assert.match(r.body.error.message, /LP_PUBLISH_KEY.*x-forwarded-for/);
    }
    assert.equal((await publish(s.url, 'c', 'direct')).status, 200);
    const got = await poll(n.url, { ch: 'c', cursor: 'earliest' });
    assert.deepEqual(got.body.messages.map((m) => m.data), ['direct']);
  });

  it('nginx refuses conflicting framing itself, before Holdfast sees it', async () => {
    const x = await exchange(n.port, ['POST /v1/publish/c HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 1', 'Content-Length: 2', '', '12'].join(CRLF), { waitForClose: true });
    assert.equal(x.answers[0]?.status, 400);
    assert.equal((await http(`${s.url}/v1/channels/c`)).body.lastSeq, 1);
  });
});

describe('drain and restart behind nginx', { skip }, () => {
  it('parked polls are answered with their cursor and a retry hint; then nginx answers JSON 503 with Retry-After', async () => {
    const s = await startTestServer({ VIA: 'direct', LP_PUBLISH_KEY: KEY });
    const n = await startNginx(s.port);
    try {
      const ch = 'drain-proxy';
      await publish(s.url, ch, 'before', key);
      const r0 = await poll(n.url, { ch, cursor: 'earliest' });
      const parked = [1, 2, 3].map(() => poll(n.url, { ch, cursor: r0.body.cursor, timeout: 60_000 }));
      await until(() => s.server.context.hub.parkedCount === 3, 'parked through nginx');
      await s.close();
      for (const p of await Promise.all(parked)) {
        assert.equal(p.status, 200);
        assert.deepEqual([p.body.messages, p.body.cursor], [[], r0.body.cursor]);
        assert.ok(typeof p.body.retryMs === 'number' && p.body.retryMs > 0);
      }
      const down = await http(`${n.url}/v1/poll?ch=${ch}`);
      assert.equal(down.status, 503);
      assert.equal(down.body.error.code, 'upstream_unavailable');
      assert.equal(down.headers.get('retry-after'), '1');
      assert.equal(down.body.retryMs, 1000);
    } finally {
      await s.close();
      await n.stop();
    }
  });
});
