/**
 * holdfast/client over each transport against a real server, with a fake clock for every delay
 * the client schedules: WebSocket (the `ws` package as the constructor) and SSE (fetch
 * streaming) deliver in order and once, keep one cursor, and refresh tokens; `transport:
 * "auto"` falls back WebSocket → SSE → long-poll behind proxies that block upgrades or buffer
 * streams (a real nginx), remembers what worked, and keeps cursor, dedup and callbacks across
 * a switch. (Long-poll alone: test/client.test.ts.)
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { signToken } from '../src/auth/jwt.js';
import { type Clock, type PollMessage, type Status, type Subscription, type TransportName, type WebSocketConstructor, subscribe } from '../src/client/index.js';
import { forgetTransports } from '../src/client/remember.js';
import { type Nginx, hasNginx, startNginx } from './helpers/nginx.js';
import { freePort } from './helpers/redis.js';
import { type TestServer, publish, startTestServer, until } from './helpers/server.js';
import { proxyConfig } from './helpers/streams.js';

/** Timers that fire only when the test says so. */
class FakeClock implements Clock {
  now = 0;
  private timers = new Map<number, { at: number; fn: () => void; ms: number }>();
  private nextId = 1;
  constructor(public random: () => number = () => 0.5) {}
  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, fn, ms });
    return id;
  }
  clearTimeout(id: unknown): void {
    this.timers.delete(id as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  /** Delays of the timers waiting now. */
  delays(): number[] {
    return [...this.timers.values()].map((t) => t.ms);
  }
  /** Fires the earliest timer of exactly `ms`; false when there is none. */
  fire(ms: number): boolean {
    const due = [...this.timers.entries()].filter(([, t]) => t.ms === ms).sort((a, b) => a[1].at - b[1].at)[0];
    if (!due) return false;
    this.timers.delete(due[0]);
    this.now = Math.max(this.now, due[1].at);
    due[1].fn();
    return true;
  }
  /** Fires the earliest timer whose delay is at most `maxMs` (open and idle timeouts are longer by default). */
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
async function drive(clock: FakeClock, predicate: () => boolean, what: string, maxMs = 10_000): Promise<void> {
  await until(() => {
    if (predicate()) return true;
    clock.fireNext(maxMs);
    return false;
  }, what, 20_000);
}

/** The ws package, counting constructions (and able to refuse them, as a blocked network does). */
function countingWebSocket(): { ctor: WebSocketConstructor; made: WebSocket[]; refuse: boolean } {
  const state = { made: [] as WebSocket[], refuse: false, ctor: undefined as unknown as WebSocketConstructor };
  state.ctor = class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(state.refuse ? url.replace(/\/v1\/ws$/, '/v1/nowhere') : url, protocols);
      state.made.push(this);
    }
  } as unknown as WebSocketConstructor;
  return state;
}

const SECRET = 'client-transports-secret-12345678';
let n = 0;
const fresh = (p: string) => `${p}${process.pid}-${++n}`;
/** Long enough that drive() never fires them unless asked. */
const SLOW = { openTimeoutMs: 60_000, sseIdleMs: 60_000 };

describe('holdfast/client over WebSocket and SSE', () => {
  let s: TestServer;
  const subs: Subscription[] = [];
  const track = (sub: Subscription) => (subs.push(sub), sub);
  before(async () => {
    s = await startTestServer({ VIA: 'direct', LP_HISTORY_SIZE: '5', LP_JWT_SECRET: SECRET, LP_JWT_LEEWAY_S: '0', LP_PUBLIC_PREFIXES: 'pub' });
  });
  afterEach(() => {
    for (const sub of subs.splice(0)) sub.stop();
    forgetTransports();
  });
  after(() => s.close());

  for (const transport of ['websocket', 'sse'] as const) {
    it(`${transport}: history then live, in order and once; connected with its transport; stop() leaves nothing behind`, async () => {
      const ch = fresh('pub-order-');
      for (let i = 1; i <= 3; i++) await publish(s.url, ch, i);
      const clock = new FakeClock();
      const got: PollMessage[] = [];
      const statuses: [Status, TransportName | undefined][] = [];
      const ws = countingWebSocket();
      const sub = track(subscribe({ url: s.url, channels: [ch], cursor: 'earliest', transport, WebSocket: ws.ctor, clock, ...SLOW, onMessage: (m) => got.push(m), onStatus: (st, d) => statuses.push([st, d.transport]) }));
      await drive(clock, () => got.length === 3, 'history');
      assert.equal(sub.transport, transport);
      await publish(s.url, ch, 4);
      await publish(s.url, ch, 5);
      await drive(clock, () => got.length === 5, 'live messages');
      assert.deepEqual(got.map((m) => m.seq), [1, 2, 3, 4, 5]);
      assert.deepEqual(statuses, [['connecting', undefined], ['connected', transport]]);
      assert.equal(ws.made.length, transport === 'websocket' ? 1 : 0, 'one socket for the whole session');
      const { hub } = s.server.context;
      assert.equal(hub.registry.countOn(ch), 1);
      // The cursor resumes exactly after the last message, on any transport.
      const cursor = sub.cursor!;
      sub.stop();
      assert.equal(clock.pending, 0, 'no timer left');
      await until(() => hub.registry.countOn(ch) === 0, 'the server saw the close');
      await publish(s.url, ch, 6);
      const resumed: number[] = [];
      track(subscribe({ url: s.url, channels: [ch], cursor, transport: 'poll', clock, onMessage: (m) => resumed.push(m.seq) }));
      await drive(clock, () => resumed.length === 1, 'resumed by poll');
      assert.deepEqual(resumed, [6]);
    });

    it(`${transport}: gaps, setChannels keeping the place, and a server that drops the link resumed from the cursor`, async () => {
      const ch = fresh('pub-gap-');
      await publish(s.url, ch, 1);
      const clock = new FakeClock();
      const got: string[] = [];
      const gaps: string[][] = [];
      const ws = countingWebSocket();
      const sub = track(subscribe({ url: s.url, channels: [ch], cursor: 'earliest', transport, WebSocket: ws.ctor, clock, ...SLOW, onMessage: (m) => got.push(`${m.ch}:${m.seq}`), onGap: (c) => gaps.push(c) }));
      await drive(clock, () => got.length === 1, 'seq 1');
      const cursor = sub.cursor!;
      sub.stop();
      for (let i = 2; i <= 9; i++) await publish(s.url, ch, i); // history keeps 5: 2…4 are gone
      got.length = 0;
      const again = track(subscribe({ url: s.url, channels: [ch], cursor, transport, WebSocket: ws.ctor, clock, ...SLOW, onMessage: (m) => got.push(`${m.ch}:${m.seq}`), onGap: (c) => gaps.push(c) }));
      await drive(clock, () => got.length === 5, 'the retained messages');
      assert.deepEqual(gaps, [[ch]]);
      assert.deepEqual(got, [5, 6, 7, 8, 9].map((i) => `${ch}:${i}`));
      const other = fresh('pub-gap-other-');
      again.setChannels([ch, other]);
      await drive(clock, () => s.server.context.hub.registry.countOn(other) === 1, 'following both');
      await publish(s.url, ch, 10);
      await publish(s.url, other, 'o1');
      await drive(clock, () => got.length === 7, 'both channels');
      assert.deepEqual(got.slice(5), [`${ch}:10`, `${other}:1`]);
      // The server ends every stream (the drain's own path, as when a process restarts behind a
      // load balancer), then goes on serving: the client comes back from its cursor.
      s.server.context.hub.drain(1000);
      (s.server.context.hub as unknown as { draining: boolean }).draining = false;
      await publish(s.url, ch, 11);
      await drive(clock, () => got.length === 8, 'after the drop');
      assert.deepEqual(got.slice(7), [`${ch}:11`]);
      assert.equal(new Set(got).size, got.length, 'nothing twice');
    });

    it(`${transport}: a token that expires is replaced (${transport === 'websocket' ? 'renewed on the open socket with the token op' : 'the stream ends with event: error and comes back with a new one'})`, async () => {
      const ch = fresh('user-tok-');
      let calls = 0;
      // The first token expires within 3 s; the next ones live an hour.
      const getToken = () => signToken(SECRET, { channels: [ch], exp: Math.floor(Date.now() / 1000) + (calls++ === 0 ? 3 : 3600) });
      const clock = new FakeClock();
      const got: unknown[] = [];
      const ws = countingWebSocket();
      track(subscribe({ url: s.url, channels: [ch], transport, WebSocket: ws.ctor, clock, ...SLOW, getToken, onMessage: (m) => got.push(m.data), onError: () => undefined }));
      await drive(clock, () => s.server.context.hub.registry.countOn(ch) === 1, 'subscribed', 500);
      assert.equal(calls, 1);
      if (transport === 'websocket') {
        // The renewal timer: a new token goes over the open socket before the first expires.
        await drive(clock, () => calls === 2, 'the renewal', 30_000);
      }
      await new Promise((r) => setTimeout(r, 3500)); // past the first token's expiry (the server's clock)
      await publish(s.url, ch, 'after expiry');
      await drive(clock, () => got.length === 1, 'delivered after the first token expired', 500);
      assert.deepEqual(got, ['after expiry']);
      if (transport === 'websocket') assert.equal(ws.made.length, 1, 'the same socket');
      else assert.ok(calls >= 2, 'a new token for the new stream');
    });
  }

  it('websocket: a socket closed with 4001 reconnects with a fresh token', async () => {
    const ch = fresh('user-4001-');
    let calls = 0;
    const getToken = () => {
      calls++;
      return signToken(SECRET, { channels: [ch], exp: Math.floor(Date.now() / 1000) + 2 });
    };
    const clock = new FakeClock();
    const ws = countingWebSocket();
    const got: unknown[] = [];
    track(subscribe({ url: s.url, channels: [ch], transport: 'websocket', WebSocket: ws.ctor, clock, ...SLOW, getToken, onMessage: (m) => got.push(m.data) }));
    // Never fire the renewal (its delay is ≥ 1 s): the server closes the socket at expiry.
    await drive(clock, () => ws.made.length === 2 && s.server.context.hub.registry.countOn(ch) === 1, 'a second socket', 500);
    assert.equal(calls, 2);
    await publish(s.url, ch, 'x');
    await drive(clock, () => got.length === 1, 'delivered on the new socket', 500);
  });
});

describe('holdfast/client transport: "auto"', { skip: !hasNginx() && 'nginx is not installed' }, () => {
  let s: TestServer;
  let noUpgrade: Nginx;
  let buffering: Nginx;
  const subs: Subscription[] = [];
  const track = (sub: Subscription) => (subs.push(sub), sub);
  before(async () => {
    s = await startTestServer({ VIA: 'direct', LP_PUBLIC_PREFIXES: 'pub', LP_PUBLISH_KEY: 'k' });
    noUpgrade = await startNginx(s.port, proxyConfig('no-upgrade'));
    buffering = await startNginx(s.port, proxyConfig('buffering'));
  });
  afterEach(() => {
    for (const sub of subs.splice(0)) sub.stop();
    forgetTransports();
  });
  after(async () => {
    await noUpgrade?.stop();
    await buffering?.stop();
    await s?.close();
  });
  const pub = (ch: string, data: unknown) => publish(s.url, ch, data, { authorization: 'Bearer k' });

  it('takes WebSocket when it works, SSE when the proxy blocks the upgrade, polls when it also buffers streams', async () => {
    const cases: [string, string, TransportName][] = [[s.url, 'direct', 'websocket'], [noUpgrade.url, 'no Upgrade relayed', 'sse'], [buffering.url, 'buffering proxy', 'poll']];
    for (const [url, what, expected] of cases) {
      const ch = fresh('pub-auto-');
      await pub(ch, 'retained');
      const clock = new FakeClock();
      const got: unknown[] = [];
      const tried: (TransportName | undefined)[] = [];
      const ws = countingWebSocket();
      const errors: string[] = [];
      const sub = track(subscribe({ url, channels: [ch], cursor: 'earliest', WebSocket: ws.ctor, clock, openTimeoutMs: 20_000, onMessage: (m) => got.push(m.data), onError: (e) => errors.push(e.message), onStatus: (_st, d) => tried.push(d.transport) }));
      await drive(clock, () => sub.status === 'connected' || sub.transport === 'sse', `${what}: past WebSocket`);
      if (expected === 'poll') {
        // The buffered stream shows nothing, however long it is given; then the open timeout.
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(sub.status, 'connecting', `${what}: no event through the buffering proxy`);
        assert.equal(got.length, 0);
        assert.ok(clock.fire(20_000), 'the open timeout was waiting');
      }
      await drive(clock, () => got.length === 1, `${what}: the retained message`);
      assert.equal(sub.transport, expected, `${what}: ${JSON.stringify(errors)}`);
      assert.deepEqual(tried, [undefined, expected], `${what}: one status change, no reconnecting`);
      await pub(ch, 'live');
      await drive(clock, () => got.length === 2, `${what}: live`);
      assert.deepEqual(got, ['retained', 'live']);
      // Remembered: the next subscription to that URL starts there.
      const before = ws.made.length;
      const second = track(subscribe({ url, channels: [ch], cursor: 'earliest', WebSocket: ws.ctor, clock, openTimeoutMs: 20_000, onMessage: () => undefined }));
      await drive(clock, () => second.status === 'connected', `${what}: the second subscription`);
      assert.equal(second.transport, expected);
      assert.equal(ws.made.length - before, expected === 'websocket' ? 1 : 0, `${what}: no WebSocket attempt once it is known not to work`);
    }
  });

  it('Node without a WebSocket constructor starts with SSE', async () => {
    const ch = fresh('pub-nows-');
    const clock = new FakeClock();
    const sub = track(subscribe({ url: s.url, channels: [ch], clock, ...SLOW, onMessage: () => undefined }));
    await drive(clock, () => sub.status === 'connected', 'connected');
    assert.equal(sub.transport, 'sse');
    assert.throws(() => subscribe({ url: s.url, channels: [ch], transport: 'websocket', onMessage: () => undefined }), /WebSocket constructor/);
  });

  it('a switch mid-session keeps one cursor, dedup and the same callbacks', async () => {
    const ch = fresh('pub-switch-');
    const clock = new FakeClock();
    const got: number[] = [];
    const statuses: [Status, TransportName | undefined][] = [];
    const ws = countingWebSocket();
    const sub = track(subscribe({ url: s.url, channels: [ch], WebSocket: ws.ctor, clock, ...SLOW, backoff: { baseMs: 100, capMs: 100 }, onMessage: (m) => got.push(m.seq), onError: () => undefined, onStatus: (st, d) => statuses.push([st, d.transport]) }));
    await drive(clock, () => sub.status === 'connected', 'connected');
    assert.equal(sub.transport, 'websocket');
    for (let i = 1; i <= 3; i++) await pub(ch, i);
    await drive(clock, () => got.length === 3, 'three on WebSocket');
    // The network starts refusing WebSockets, and the open one drops; meanwhile 4…6 are published.
    ws.refuse = true;
    ws.made.at(-1)!.terminate();
    for (let i = 4; i <= 6; i++) await pub(ch, i);
    await drive(clock, () => got.length === 6 && sub.transport === 'sse', 'the rest over SSE');
    await pub(ch, 7);
    await drive(clock, () => got.length === 7, 'live over SSE');
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7], 'once each, in order');
    assert.deepEqual(statuses.map(([st, t]) => `${st}:${t}`), ['connecting:undefined', 'connected:websocket', 'reconnecting:websocket', 'connected:sse']);
  });

  it('a server that is down: every transport is tried once per attempt, then the client backs off and starts over', async () => {
    const port = await freePort();
    const clock = new FakeClock();
    const ws = countingWebSocket();
    const statuses: Status[] = [];
    const sub = track(subscribe({ url: `http://127.0.0.1:${port}`, channels: ['x'], WebSocket: ws.ctor, clock, ...SLOW, backoff: { baseMs: 100, capMs: 100 }, onMessage: () => undefined, onError: () => undefined, onStatus: (st) => statuses.push(st) }));
    await drive(clock, () => statuses.filter((st) => st === 'reconnecting').length === 2, 'two backoffs');
    sub.stop();
    assert.equal(ws.made.length, 2, 'one WebSocket attempt per cycle');
  });
});
