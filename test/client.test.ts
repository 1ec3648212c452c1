/**
 * holdfast/client against a real server, with a fake clock for every delay the client
 * schedules (backoff, retry hints, its own poll timeout), so bounds are checked exactly.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signToken } from '../src/auth/jwt.js';
import { type Clock, type PollMessage, type Status, PROBE_HOLD_MS, backoffDelay, publish as clientPublish, publishBatch, subscribe } from '../src/client/index.js';
import { freePort } from './helpers/redis.js';
import { type TestServer, poll, publish, startTestServer, until } from './helpers/server.js';

/** Timers that fire only when the test says so. */
class FakeClock implements Clock {
  now = 0;
  private timers = new Map<number, { at: number; fn: () => void; ms: number }>();
  private nextId = 1;
  /** Every delay the client asked for, in order. */
  readonly requested: number[] = [];
  constructor(public random: () => number = () => 0.5) {}
  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, fn, ms });
    this.requested.push(ms);
    return id;
  }
  clearTimeout(id: unknown): void {
    this.timers.delete(id as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  /** Fires the earliest timer whose delay is at most `maxMs` (client poll timeouts, hold + 10 s grace, are longer). */
  fireNext(maxMs = 10_000): boolean {
    const due = [...this.timers.entries()].filter(([, t]) => t.ms <= maxMs).sort((a, b) => a[1].at - b[1].at)[0];
    if (!due) return false;
    this.timers.delete(due[0]);
    this.now = Math.max(this.now, due[1].at);
    due[1].fn();
    return true;
  }
}

/** Drives the fake clock until `predicate` holds (each step also lets real I/O run). */
async function drive(clock: FakeClock, predicate: () => boolean, what: string): Promise<void> {
  await until(() => {
    if (predicate()) return true;
    clock.fireNext();
    return false;
  }, what, 20_000);
}

describe('holdfast/client', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ LP_HISTORY_SIZE: '5' });
  });
  after(() => s.close());

  it('delivers in order, keeps the cursor across answers, and drops repeats', async () => {
    const ch = 'c-order';
    for (let i = 1; i <= 3; i++) await publish(s.url, ch, i);
    const clock = new FakeClock();
    const got: PollMessage[] = [];
    // A fetch that repeats each answer once, as a retried request through a proxy might.
    let last: Response | undefined;
    const replaying: typeof fetch = async (input, init) => {
      if (last) {
        const r = last;
        last = undefined;
        return r;
      }
      const res = await fetch(input, init);
      last = res.clone();
      return res;
    };
    const sub = subscribe({ transport: 'poll', url: s.url, channels: [ch], cursor: 'earliest', holdMs: 1000, clock, fetch: replaying, onMessage: (m) => got.push(m) });
    await drive(clock, () => got.length >= 3, 'history delivered');
    await publish(s.url, ch, 4);
    await drive(clock, () => got.length >= 4, 'live message delivered');
    sub.stop();
    assert.deepEqual(got.map((m) => [m.seq, m.data]), [[1, 1], [2, 2], [3, 3], [4, 4]]);
    assert.equal(typeof sub.cursor, 'string');
    const resumed = await poll(s.url, { ch, cursor: sub.cursor!, timeout: 1000 });
    assert.deepEqual(resumed.body.messages, [], 'the saved cursor resumes after the last message');
  });

  it('reports gaps, then continues with what is retained', async () => {
    const ch = 'c-gap';
    const start = (await poll(s.url, { ch, timeout: 1000 })).body.cursor;
    for (let i = 1; i <= 8; i++) await publish(s.url, ch, i);
    const clock = new FakeClock();
    const got: number[] = [];
    const gaps: string[][] = [];
    const sub = subscribe({ transport: 'poll', url: s.url, channels: [ch], cursor: start, clock, onMessage: (m) => got.push(m.seq), onGap: (c) => gaps.push(c) });
    await drive(clock, () => got.length >= 5, 'retained delivered');
    sub.stop();
    assert.deepEqual(gaps, [[ch]]);
    assert.deepEqual(got, [4, 5, 6, 7, 8]);
  });

  it('backs off with full jitter within [0, min(cap, base·2^n)] while the server is down', async () => {
    const port = await freePort();
    const delays: number[] = [];
    for (const random of [() => 0.999999, () => 0]) {
      const clock = new FakeClock(random);
      const statuses: [Status, number | undefined][] = [];
      const sub = subscribe({ transport: 'poll',
        url: `http://127.0.0.1:${port}`, channels: ['x'], clock, backoff: { baseMs: 100, capMs: 1000 },
        onMessage: () => undefined, onError: () => undefined,
        onStatus: (st, d) => statuses.push([st, d.delayMs]),
      });
      await drive(clock, () => statuses.filter(([st]) => st === 'reconnecting').length >= 6, 'six retries');
      sub.stop();
      delays.push(...statuses.filter(([st]) => st === 'reconnecting').map(([, d]) => d!));
    }
    assert.deepEqual(delays.slice(0, 6), [99, 199, 399, 799, 999, 999], 'upper bound doubles up to the cap');
    assert.deepEqual(delays.slice(6, 12), [0, 0, 0, 0, 0, 0], 'lower bound is zero');
    for (let n = 0; n < 20; n++) {
      const d = backoffDelay(n, 500, 30_000, Math.random);
      assert.ok(d >= 0 && d <= Math.min(30_000, 500 * 2 ** n));
    }
  });

  it('honours retryMs / Retry-After on 503', async () => {
    const full = await startTestServer({ LP_MAX_PARKED: '1' });
    try {
      const blocker = poll(full.url, { ch: 'b', timeout: 5000 });
      await until(() => full.server.context.hub.parkedCount === 1, 'one parked');
      const clock = new FakeClock();
      const statuses: [Status, number | undefined][] = [];
      const sub = subscribe({ transport: 'poll', url: full.url, channels: ['c'], clock, onMessage: () => undefined, onStatus: (st, d) => statuses.push([st, d.delayMs]) });
      await drive(clock, () => statuses.some(([st]) => st === 'reconnecting'), 'a 503');
      sub.stop();
      const delay = statuses.find(([st]) => st === 'reconnecting')![1]!;
      assert.ok(delay >= 1500 && delay <= 2500, `server hint 2000 ms ±25%, got ${delay}`);
      await publish(full.url, 'b', 'release');
      await blocker;
    } finally {
      await full.close();
    }
  });

  it('fetches a new token on 401 and goes on', async () => {
    const secret = 'client-test-secret-123';
    const auth = await startTestServer({ LP_JWT_SECRET: secret });
    try {
      const tokens = [
        signToken(secret, { channels: ['inbox:1'], exp: Math.floor(Date.now() / 1000) - 3600 }),
        signToken(secret, { channels: ['inbox:1'], exp: Math.floor(Date.now() / 1000) + 3600 }),
      ];
      let calls = 0;
      const clock = new FakeClock();
      const got: unknown[] = [];
      const sub = subscribe({ transport: 'poll', url: auth.url, channels: ['inbox:1'], cursor: 'earliest', clock, getToken: () => tokens[Math.min(calls++, 1)]!, onMessage: (m) => got.push(m.data), onError: () => undefined });
      await publish(auth.url, 'inbox:1', 'for you');
      await drive(clock, () => got.length === 1, 'delivered after refresh');
      sub.stop();
      assert.equal(calls, 2);
      assert.deepEqual(got, ['for you']);
    } finally {
      await auth.close();
    }
  });

  it('setChannels keeps the place on kept channels; stop() aborts the poll and leaves no timer', async () => {
    const clock = new FakeClock();
    const got: string[] = [];
    const sub = subscribe({ transport: 'poll', url: s.url, channels: ['k-a'], clock, onMessage: (m) => got.push(`${m.ch}:${m.data}`) });
    await drive(clock, () => s.server.context.hub.registry.countOn('k-a') === 1, 'parked on k-a');
    await publish(s.url, 'k-a', 1);
    await drive(clock, () => got.length === 1, 'first');
    await drive(clock, () => s.server.context.hub.registry.countOn('k-a') === 1, 'parked again');
    sub.setChannels(['k-a', 'k-b']);
    await drive(clock, () => s.server.context.hub.registry.countOn('k-b') === 1, 'parked on both');
    await publish(s.url, 'k-a', 2);
    await publish(s.url, 'k-b', 'x');
    await drive(clock, () => got.length === 3, 'both channels');
    assert.deepEqual(got, ['k-a:1', 'k-a:2', 'k-b:x']);
    await drive(clock, () => s.server.context.hub.registry.countOn('k-a') === 1, 'parked again');
    sub.stop();
    assert.equal(sub.status, 'stopped');
    assert.equal(clock.pending, 0, 'no timer left');
    await until(() => s.server.context.hub.registry.countOn('k-a') === 0, 'server saw the abort');
  });

  it('onStatus says connecting at once and connected within a short first poll on a quiet channel', async () => {
    const clock = new FakeClock();
    const statuses: Status[] = [];
    const asked: number[] = [];
    const recording: typeof fetch = (input, init) => {
      asked.push(Number(new URL(String(input)).searchParams.get('timeout')));
      return fetch(input, init);
    };
    const got: unknown[] = [];
    const sub = subscribe({ transport: 'poll', url: s.url, channels: ['st-quiet'], holdMs: 30_000, clock, fetch: recording, onMessage: (m) => got.push(m.data), onStatus: (st) => statuses.push(st) });
    assert.deepEqual(statuses, [], 'nothing is said before subscribe() returns');
    await Promise.resolve();
    assert.deepEqual(statuses, ['connecting'], 'connecting at once, before any request');
    assert.equal(asked.length, 0);
    const t0 = Date.now();
    await drive(clock, () => statuses.includes('connected'), 'connected');
    const took = Date.now() - t0;
    // The channel is quiet: only a short first poll can be answered this soon (the hold is 30 s).
    assert.ok(took < 5000, `connected after ${took} ms`);
    assert.deepEqual(asked, [PROBE_HOLD_MS], 'the first poll asks for the shortest hold');
    await drive(clock, () => asked.length === 2, 'next poll sent');
    assert.equal(asked[1], 30_000, 'once connected, polls hold for holdMs');
    await until(() => s.server.context.hub.registry.countOn('st-quiet') === 1, 'parked for the long hold');
    await publish(s.url, 'st-quiet', 'hello');
    await drive(clock, () => got.length === 1, 'delivered through the long poll');
    sub.stop();
    assert.deepEqual(statuses, ['connecting', 'connected', 'stopped']);
  });

  it('after a failure: reconnecting, then connected again after a short poll', async () => {
    const clock = new FakeClock();
    const statuses: Status[] = [];
    const asked: number[] = [];
    let failNext = false;
    const flaky: typeof fetch = async (input, init) => {
      asked.push(Number(new URL(String(input)).searchParams.get('timeout')));
      if (failNext) {
        failNext = false;
        throw new TypeError('fetch failed');
      }
      return fetch(input, init);
    };
    const sub = subscribe({ transport: 'poll', url: s.url, channels: ['st-flaky'], holdMs: 20_000, clock, fetch: flaky, onMessage: () => undefined, onError: () => undefined, onStatus: (st) => statuses.push(st) });
    await drive(clock, () => statuses.includes('connected'), 'connected');
    await drive(clock, () => s.server.context.hub.registry.countOn('st-flaky') === 1 && asked.length === 2, 'parked for the long hold');
    failNext = true;
    sub.setChannels(['st-flaky']); // the next request (the one that fails) goes out now
    await drive(clock, () => statuses.includes('reconnecting'), 'reconnecting');
    await drive(clock, () => statuses.lastIndexOf('connected') > statuses.indexOf('reconnecting'), 'connected again');
    sub.stop();
    assert.deepEqual(statuses, ['connecting', 'connected', 'reconnecting', 'connected', 'stopped']);
    assert.deepEqual(asked.slice(-2), [20_000, PROBE_HOLD_MS], 'the poll after the failure is a short one');
  });

  it('publish() and publishBatch() for Node backends, with idempotency keys', async () => {
    const target = { url: s.url };
    const a = await clientPublish(target, 'pub:1', { n: 1 }, { idempotencyKey: 'k1' });
    const b = await clientPublish(target, 'pub:1', { n: 'retry' }, { idempotencyKey: 'k1' });
    assert.deepEqual(b, a);
    const results = await publishBatch(target, [{ ch: 'pub:1', data: 2, id: 'k2' }, { ch: 'pub:2', data: 3 }]);
    assert.deepEqual(results.map((r) => [r.ch, r.seq]), [['pub:1', 2], ['pub:2', 1]]);
    await assert.rejects(clientPublish(target, 'bad name', 1), (e: any) => e.status === 400 && e.code === 'bad_channel');
  });
});
