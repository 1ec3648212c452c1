/** /healthz, /readyz, /metrics, admission (LP_MAX_PARKED), slow readers, and the drain. */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { eachProfile } from '../helpers/profiles.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const METRIC_NAMES = [
  'holdfast_parked_polls',
  'holdfast_polls_answered_total{reason="messages"}',
  'holdfast_polls_answered_total{reason="timeout"}',
  'holdfast_polls_answered_total{reason="gap"}',
  'holdfast_polls_answered_total{reason="drain"}',
  'holdfast_messages_published_total',
  'holdfast_messages_delivered_total',
  'holdfast_delivery_latency_seconds_bucket',
  'holdfast_poll_lag_messages_bucket',
  'holdfast_slow_responses_closed_total',
  'holdfast_rejected_requests_total',
  'holdfast_broker_reconnects_total',
  'holdfast_decode_queue_depth',
  'holdfast_event_loop_lag_seconds',
];

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  assert.ok(line, `metric ${name} present`);
  return Number(line.split(' ').pop());
}

eachProfile((profile, env) => {
  describe(`operations [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_MAX_PARKED: '3', LP_MAX_BACKPRESSURE: '65536', LP_WRITE_TIMEOUT_MS: '1000' });
    });
    after(() => s.close());

    it('/healthz and /readyz answer 200', async () => {
      assert.equal((await http(`${s.url}/healthz`)).status, 200);
      const ready = await http(`${s.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(ready.body.broker, profile.name === 'memory' ? 'memory' : profile.name);
    });

    it('/metrics has every holdfast_ metric, and the counts follow the traffic', async () => {
      const ch = `m-${process.pid}`;
      const waiting = poll(s.url, { ch, timeout: 10_000 });
      await until(() => s.server.context.hub.parkedCount === 1, 'parked');
      const m1 = await http(`${s.url}/metrics`);
      assert.equal(m1.status, 200);
      assert.match(m1.headers.get('content-type')!, /^text\/plain/);
      const text1 = (m1.body as Buffer).toString();
      for (const name of METRIC_NAMES) assert.ok(text1.includes(name), `${name} in /metrics`);
      assert.equal(metricValue(text1, 'holdfast_parked_polls'), 1);
      await publish(s.url, ch, 'x');
      await waiting;
      await http(`${s.url}/nope`);
      const text2 = ((await http(`${s.url}/metrics`)).body as Buffer).toString();
      assert.equal(metricValue(text2, 'holdfast_parked_polls'), 0);
      assert.ok(metricValue(text2, 'holdfast_messages_published_total') >= 1);
      assert.ok(metricValue(text2, 'holdfast_messages_delivered_total{transport="poll"}') >= 1);
      assert.ok(metricValue(text2, 'holdfast_polls_answered_total{reason="messages"}') >= 1);
      assert.ok(metricValue(text2, 'holdfast_rejected_requests_total{reason="not_found"}') >= 1);
      assert.ok(metricValue(text2, 'holdfast_delivery_latency_seconds_count{transport="poll"}') >= 1);
    });

    it('LP_MAX_PARKED: a poll that would park beyond it gets 503 + Retry-After; one with messages is served', async () => {
      const ch = `full-${process.pid}`;
      const parked = [1, 2, 3].map(() => poll(s.url, { ch, timeout: 10_000 }));
      await until(() => s.server.context.hub.parkedCount === 3, '3 parked');
      const r = await poll(s.url, { ch: `${ch}-other`, timeout: 10_000 });
      assert.equal(r.status, 503);
      assert.equal((r.body as any).error.code, 'too_many_polls');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      const seedFull = await http(`${s.url}/poll?clientId=x${process.pid}&timeout=5000`);
      assert.equal(seedFull.status, 503);
      await publish(s.url, `${ch}-ready`, 'waiting');
      const served = await poll(s.url, { ch: `${ch}-ready`, cursor: 'earliest' });
      assert.equal(served.status, 200, 'a poll that answers at once does not count');
      await publish(s.url, ch, 'release');
      for (const p of await Promise.all(parked)) assert.equal(p.status, 200);
    });

    it('a reader that stops reading is closed when its answer cannot be written in LP_WRITE_TIMEOUT_MS', async () => {
      // An answer far larger than the loopback socket buffers, to a client that reads nothing.
      const big = await startTestServer({ ...env(), LP_MAX_BACKPRESSURE: String(64 << 20), LP_WRITE_TIMEOUT_MS: '1000' });
      try {
        const ch = `slow-${process.pid}`;
        const chunk = 'y'.repeat(60_000);
        for (let i = 0; i < 400; i++) await publish(big.url, ch, chunk);
        const sock = net.connect({ port: big.port, host: '127.0.0.1' });
        await once(sock, 'connect');
        sock.pause();
        sock.write(`GET /v1/poll?ch=${ch}&cursor=earliest&max=1000 HTTP/1.1\r\nHost: x\r\n\r\n`);
        // A paused socket emits no 'close'; the server's own count says when it gave up.
        await until(async () => metricValue(((await http(`${big.url}/metrics`)).body as Buffer).toString(), 'holdfast_slow_responses_closed_total') === 1, 'slow reader closed', 20_000);
        sock.destroy();
        assert.equal((await http(`${big.url}/healthz`)).status, 200);
      } finally {
        await big.close();
      }
    });
  });
});

describe('drain', () => {
  it('in process: parked polls answer at once with their cursor and a retry hint', async () => {
    const s = await startTestServer();
    const ch = 'drain-a';
    await publish(s.url, ch, 'before');
    const r0 = await poll(s.url, { ch, cursor: 'earliest' });
    const parked = [1, 2, 3].map(() => poll(s.url, { ch, cursor: r0.body.cursor, timeout: 60_000 }));
    const seed = http(`${s.url}/poll?clientId=drain-seed&timeout=60000`);
    await until(() => s.server.context.hub.parkedCount === 3 && s.server.context.seed.parkedCount === 1, 'parked');
    const t0 = Date.now();
    await s.close();
    for (const p of await Promise.all(parked)) {
      assert.equal(p.status, 200);
      assert.deepEqual(p.body.messages, []);
      assert.equal(p.body.gap, false);
      assert.equal(p.body.cursor, r0.body.cursor, 'the cursor still covers the channel where it was');
      assert.ok(typeof p.body.retryMs === 'number' && p.body.retryMs > 0);
    }
    assert.deepEqual((await seed).body, { status: 'timeout' });
    assert.ok(Date.now() - t0 < 3000);
  });

  it('the CLI drains on SIGTERM and exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts'], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', LP_DRAIN_MS: '3000' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! });
    let port = 0;
    for await (const line of lines) {
      const entry = JSON.parse(line);
      if (entry.msg === 'holdfast listening') {
        port = entry.port;
        break;
      }
    }
    const base = `http://127.0.0.1:${port}`;
    const first = await poll(base, { ch: 'sig', timeout: 1000 });
    const parked = poll(base, { ch: 'sig', cursor: first.body.cursor, timeout: 60_000 });
    // The server logs nothing per poll; give the request a moment to be parked by waiting for
    // the channel to report it.
    await until(async () => (await http(`${base}/v1/channels/sig`)).body.pollers === 1, 'parked in the child');
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const answer = await parked;
    assert.equal(answer.status, 200);
    assert.equal(answer.body.cursor, first.body.cursor);
    assert.equal(typeof answer.body.retryMs, 'number');
    const [code] = await exited;
    assert.equal(code, 0);
  });
});
