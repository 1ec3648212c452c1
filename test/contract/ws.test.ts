/**
 * GET /v1/ws on every broker profile: subscribe and token ops, frames shaped like poll answers
 * (JSON, or MessagePack with the holdfast.msgpack subprotocol), the validation and auth of
 * /v1/poll per op (a refused subscribe changes nothing; ops apply in the order sent), cursors,
 * gaps, one frame for messages that arrive together, the close codes (1013 slow reader, then
 * resumed with nothing repeated or skipped; 4001 token expired; 1012 drain and
 * LP_STREAM_MAX_S), the upgrade refusals, and two cases across transports: one cursor carried
 * poll → SSE → WebSocket → poll, and forty channels at one seq woken in one flush while polls,
 * SSE streams and sockets share their position groups.
 * With HOLDFAST_VIA=nginx the sockets go through the recommended nginx configuration, which
 * relays upgrades (test/client-transports.test.ts and the browser suite cover proxies that do not).
 */

import assert from 'node:assert/strict';
import http1 from 'node:http';
import { after, before, describe, it } from 'node:test';
import { signToken } from '../../src/auth/jwt.js';
import { eachProfile } from '../helpers/profiles.js';
import { SseClient, WsClient, assertRun, closeStreams, followWithPolls, sameSlot, watchArrivals } from '../helpers/streams.js';
import { assertMatchesOpenApi } from '../helpers/openapi.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const SECRET = 'ws-test-secret-of-enough-length!';
let n = 0;
const fresh = (p: string) => `${p}${process.pid}-${++n}`;
const token = (channels: string[], inS = 3600) => signToken(SECRET, { channels, exp: Math.floor(Date.now() / 1000) + inS });
const batch = (base: string, messages: { ch: string; data: unknown }[]) => http(`${base}/v1/publish`, { method: 'POST', json: { messages } });

/** What /v1/poll refuses, as subscribe ops: [what, poll query, op fields]. */
function badOps(cursor: string): [string, string, Record<string, unknown>][] {
  return [
    ['no ch', '', {}],
    ['an empty channel list', '', { ch: [] }],
    ['empty ch', 'ch=', { ch: [''] }],
    ['a space', 'ch=a%20b', { ch: ['a b'] }],
    ['"."', 'ch=.', { ch: ['.'] }],
    ['201 bytes', `ch=${'a'.repeat(201)}`, { ch: ['a'.repeat(201)] }],
    ['unicode', 'ch=%C3%BC', { ch: ['ü'] }],
    ['33 channels', Array.from({ length: 33 }, (_, i) => `ch=c${i}`).join('&'), { ch: Array.from({ length: 33 }, (_, i) => `c${i}`) }],
    ['a cursor of punctuation', 'ch=pub-a&cursor=!!!', { ch: ['pub-a'], cursor: '!!!' }],
    ['a truncated cursor', `ch=pub-a&cursor=${cursor.slice(0, -3)}`, { ch: ['pub-a'], cursor: cursor.slice(0, -3) }],
    ['an empty cursor', 'ch=pub-a&cursor=', { ch: ['pub-a'], cursor: '' }],
    ['no token for a guarded channel', 'ch=user-1', { ch: ['user-1'] }],
    ['a forged token', `ch=user-1&token=${token(['user-1']).slice(0, -2)}xx`, { ch: ['user-1'], token: `${token(['user-1']).slice(0, -2)}xx` }],
    ['a token that does not grant the channel', `ch=user-1&token=${token(['user-2'])}`, { ch: ['user-1'], token: token(['user-2']) }],
  ];
}

eachProfile((profile, env) => {
  describe(`WebSocket /v1/ws [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_JWT_SECRET: SECRET, LP_JWT_LEEWAY_S: '0', LP_PUBLIC_PREFIXES: 'pub', LP_HISTORY_SIZE: '50' });
    });
    after(async () => {
      closeStreams();
      await s.close();
    });

    it('a subscribe is answered at once with its start cursor; then one frame per delivery, each cursor resuming exactly after it', async () => {
      const ch = fresh('pub-shape-');
      const ws = await WsClient.connect(s.url);
      const start = await ws.subscribe(ch);
      assert.deepEqual(start.messages, []);
      assert.equal(start.gap, false);
      assert.deepEqual((await poll(s.url, { ch, cursor: start.cursor!, timeout: 1000 })).body.messages, [], 'the start cursor stands at the head');
      await publish(s.url, ch, { n: 1 });
      await ws.until(() => ws.frames.length === 2, 'the first message');
      await publish(s.url, ch, 'two');
      await ws.until(() => ws.frames.length === 3, 'the second message');
      assert.deepEqual(ws.messages(), [{ ch, seq: 1, data: { n: 1 } }, { ch, seq: 2, data: 'two' }]);
      await publish(s.url, ch, 3);
      assert.deepEqual(await followWithPolls(s.url, ch, ws.frames[1]!.cursor!, 3), [2, 3]);
      assert.equal(ws.binary.some(Boolean), false, 'JSON frames are text');
      assert.equal(ws.closed, false);
    });

    it('refuses in an error frame what /v1/poll refuses, with the same code; the socket stays open', async () => {
      const ws = await WsClient.connect(s.url);
      const cursor = (await ws.subscribe('pub-a')).cursor!;
      for (const [what, query, op] of badOps(cursor)) {
        const p = await http(`${s.url}/v1/poll?${query}&timeout=1000`);
        assert.ok(p.status >= 400, `${what}: /v1/poll refuses`);
        const before = ws.frames.length;
        ws.send({ op: 'subscribe', ...op });
        await ws.until(() => ws.frames.length > before, what);
        const frame = ws.frames[before]!;
        assert.equal(frame.error?.code, p.body.error.code, `${what}: same code as the poll (${JSON.stringify(frame)})`);
      }
      const bad: [string, string | Buffer, string][] = [
        ['not JSON', '{"op":', 'bad_request'],
        ['not an object', '[1,2]', 'bad_request'],
        ['an unknown op', '{"op":"dance"}', 'bad_request'],
        ['a token op without a token', '{"op":"token"}', 'bad_request'],
        ['a channel that is a number', '{"op":"subscribe","ch":[5]}', 'bad_channel'],
        ['a cursor that is a number', '{"op":"subscribe","ch":["pub-a"],"cursor":5}', 'bad_request'],
      ];
      for (const [what, frame, code] of bad) {
        const before = ws.frames.length;
        ws.ws.send(frame);
        await ws.until(() => ws.frames.length > before, what);
        assert.equal(ws.frames[before]!.error?.code, code, what);
      }
      // Still subscribed to pub-a, still open.
      await publish(s.url, 'pub-a', 'still here');
      await ws.until(() => ws.messages().some((m) => m.data === 'still here'), 'a message after the errors');
      // A frame over 64 KiB closes the socket (uWS drops it without a close frame: 1006).
      ws.send({ op: 'subscribe', ch: ['pub-a'], pad: 'x'.repeat(65 * 1024) });
      await ws.until(() => ws.closed, 'the close');
      assert.ok([1006, 1009].includes(ws.closeCode!), `closed: ${ws.closeCode}`);
      await until(() => s.server.context.hub.registry.countOn('pub-a') === 0, 'its subscription left the hub');
    });

    it('the upgrade: a bad query is 400, a GET without Upgrade is 426, both JSON and not cached', async () => {
      const refused = await rawUpgrade(s.port, '/v1/ws?token=a&token=b');
      assert.equal(refused.status, 400);
      assert.equal(refused.headers.get('cache-control'), 'no-store');
      assert.equal(JSON.parse(refused.body.toString()).error.code, 'bad_request');
      assertMatchesOpenApi({ method: 'GET', url: `${s.url}/v1/ws`, ...refused });
      const escape = await rawUpgrade(s.port, '/v1/ws?token=%E0%A4%A');
      assert.equal(escape.status, 400);
      const plain = await http(`${s.url}/v1/ws`);
      assert.equal(plain.status, 426);
      assert.equal(plain.headers.get('upgrade'), 'websocket');
      assert.equal(plain.headers.get('cache-control'), 'no-store');
      assert.equal(plain.body.error.code, 'upgrade_required');
      // A proxy that dropped the hop-by-hop Upgrade header but relayed Sec-WebSocket-Key cannot
      // carry a WebSocket: 426, not 101.
      const dropped = await rawUpgrade(s.port, '/v1/ws', { upgrade: undefined, connection: 'keep-alive' });
      assert.equal(dropped.status, 426);
      assertMatchesOpenApi({ method: 'GET', url: `${s.url}/v1/ws`, ...dropped });
      const post = await http(`${s.url}/v1/ws`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET');
      // The server is fine after all that.
      const ws = await WsClient.connect(s.url);
      assert.equal((await ws.subscribe('pub-after')).gap, false);
    });

    it('auth: the token of the upgrade (header or ?token=, the header wins) or of the op; a refused subscribe changes nothing', async () => {
      const ch = fresh('user-');
      await publish(s.url, ch, 'private');
      const viaQuery = await WsClient.connect(s.url, { token: token([ch]) });
      assert.deepEqual((await viaQuery.subscribe(ch, { cursor: 'earliest' })).messages?.map((m) => m.data), ['private']);
      const viaHeader = await WsClient.connect(s.url, { headers: { authorization: `Bearer ${token(['user-*'])}` } });
      assert.equal((await viaHeader.subscribe(ch)).error, undefined);
      const headerWins = await WsClient.connect(s.url, { token: token([ch]), headers: { authorization: `Bearer ${token(['other'])}` } });
      assert.equal((await headerWins.subscribe(ch)).error?.code, 'forbidden');
      const inOp = await WsClient.connect(s.url);
      assert.equal((await inOp.subscribe(ch, { token: token([ch]) })).error, undefined);

      // Refused: the subscription before it stays.
      const other = fresh('user-other-');
      const refused = await inOp.subscribe(other, { token: token(['nothing']) });
      assert.equal(refused.error?.code, 'forbidden');
      const expired = await inOp.subscribe(other, { token: token([other], -10) });
      assert.equal(expired.error?.code, 'unauthorized');
      await publish(s.url, other, 'not for you');
      await publish(s.url, ch, 'still yours');
      await inOp.until(() => inOp.messages().some((m) => m.data === 'still yours'), 'the old subscription delivering');
      assert.equal(inOp.messages().some((m) => m.ch === other), false);

      // Ops apply in the order sent: a refused op does not drop an earlier one still verifying.
      const ordered = await WsClient.connect(s.url);
      const mine = fresh('user-order-');
      ordered.send({ op: 'subscribe', ch: [mine], token: token([mine], 3000 + n) }); // a new token: verified asynchronously
      ordered.send({ op: 'subscribe', ch: [fresh('user-none-')] }); // refused at once: no token
      await ordered.until(() => ordered.frames.length === 2, 'an error and a start frame');
      assert.equal(ordered.frames[0]!.error?.code, 'unauthorized');
      assert.equal(ordered.frames[1]!.error, undefined);
      await publish(s.url, mine, 'ordered');
      await ordered.until(() => ordered.messages().length === 1, 'the first op applied');
    });

    it('token renewal: {"op":"token"} moves the expiry; one that does not grant the channels is refused and changes nothing', async () => {
      const ch = fresh('user-renew-');
      const ws = await WsClient.connect(s.url);
      await ws.subscribe(ch, { token: token([ch], 2) });
      ws.send({ op: 'token', token: token(['nothing'], 3600) });
      await ws.until(() => ws.errors().length === 1, 'the refusal');
      assert.equal(ws.errors()[0]!.code, 'forbidden');
      ws.send({ op: 'token', token: token([ch], 3600) });
      await new Promise((r) => setTimeout(r, 3000)); // past the first token's expiry, on purpose
      assert.equal(ws.closed, false, 'renewed: still open');
      await publish(s.url, ch, 'after renewal');
      await ws.until(() => ws.messages().length === 1, 'delivered after the first token expired');
      // Without a renewal: closed with 4001.
      const other = await WsClient.connect(s.url);
      await other.subscribe(ch, { token: token([ch], 2) });
      await other.until(() => other.closed, 'the close', 6000);
      assert.equal(other.closeCode, 4001);
      assert.match(other.closeReason, /token/);
      // On a server without tokens, a token op is a bad op.
      const open = await startTestServer(env());
      try {
        const plain = await WsClient.connect(open.url);
        plain.send({ op: 'token', token: 'x' });
        await plain.until(() => plain.frames.length === 1, 'the error');
        assert.equal(plain.errors()[0]?.code, 'bad_request');
      } finally {
        closeStreams();
        await open.close();
      }
    });

    it('cursors: in the op, earliest, channels the cursor does not cover start from now; a subscribe replaces the whole subscription', async () => {
      const a = fresh('pub-cur-a-');
      const b = fresh('pub-cur-b-');
      for (let i = 1; i <= 3; i++) await publish(s.url, a, i);
      await publish(s.url, b, 'b before');
      const ws = await WsClient.connect(s.url);
      const all = await ws.subscribe(a, { cursor: 'earliest' });
      assert.deepEqual(all.messages?.map((m) => m.seq), [1, 2, 3]);
      const afterTwo = await poll(s.url, { ch: a, cursor: (await poll(s.url, { ch: a, cursor: 'earliest', max: 1 })).body.cursor, max: 1 });
      assert.deepEqual(afterTwo.body.messages.map((m) => m.seq), [2]);
      const fromTwo = await ws.subscribe(a, { cursor: afterTwo.body.cursor });
      assert.deepEqual(fromTwo.messages?.map((m) => m.seq), [3]);
      const both = await ws.subscribe([a, b], { cursor: all.cursor });
      assert.deepEqual(both.messages, [], 'b starts from now');
      await publish(s.url, b, 'b after');
      await ws.until(() => ws.messages().some((m) => m.data === 'b after'), 'b after');
      // Replace [a, b] by [b]: a is no longer followed.
      await ws.subscribe(b, { cursor: ws.cursor });
      await publish(s.url, a, 'a unfollowed');
      await publish(s.url, b, 'b last');
      await ws.until(() => ws.messages().some((m) => m.data === 'b last'), 'b last');
      assert.equal(ws.messages().some((m) => m.data === 'a unfollowed'), false);
    });

    it('gaps: gap:true with gapChannels and the retained messages; a deleted channel is a gap on a live socket', async () => {
      const ch = fresh('pub-gap-');
      await publish(s.url, ch, 1);
      const cursor = (await poll(s.url, { ch, cursor: 'earliest' })).body.cursor;
      for (let i = 2; i <= 60; i++) await publish(s.url, ch, i);
      const ws = await WsClient.connect(s.url);
      const first = await ws.subscribe(ch, { cursor });
      assert.equal(first.gap, true);
      assert.deepEqual(first.gapChannels, [ch]);
      assertRun(first.messages!.map((m) => m.seq), 11, 60, 'the retained messages');
      assert.equal((await http(`${s.url}/v1/channels/${ch}`, { method: 'DELETE' })).status, 200);
      await ws.until(() => ws.frames.length === 2, 'the gap of the delete');
      assert.equal(ws.frames[1]!.gap, true);
      await publish(s.url, ch, 'new 1');
      await ws.until(() => ws.messages().some((m) => m.data === 'new 1'), 'the new numbering');
      assert.equal(ws.messages().at(-1)!.seq, 1);
    });

    it('MessagePack: with holdfast.msgpack, binary frames of the same structures, ops in MessagePack too', async () => {
      const ch = fresh('pub-mp-');
      await publish(s.url, ch, { n: [1, 'two'] });
      const ws = await WsClient.connect(s.url, { msgpack: true });
      const first = await ws.subscribe(ch, { cursor: 'earliest' }); // sent as MessagePack
      assert.deepEqual(first.messages, [{ ch, seq: 1, data: { n: [1, 'two'] } }]);
      await publish(s.url, ch, 'live');
      await ws.until(() => ws.frames.length === 2, 'a live frame');
      ws.send({ op: 'dance' });
      await ws.until(() => ws.frames.length === 3, 'an error frame');
      assert.equal(ws.frames[2]!.error?.code, 'bad_request');
      assert.deepEqual(ws.binary, [true, true, true]);
      // The same answer as a JSON socket and a poll get (one rendering per format).
      const json = await WsClient.connect(s.url);
      const j = await json.subscribe(ch, { cursor: 'earliest' });
      assert.deepEqual(j.messages, ws.messages());
      assert.equal(j.cursor, ws.frames[1]!.cursor);
    });

    it('messages that arrive together leave in one frame', async () => {
      const ch = fresh('pub-batch-');
      const others = [fresh('pub-batch-x-'), fresh('pub-batch-y-')];
      const one = await WsClient.connect(s.url);
      await one.subscribe(ch);
      const multi = await WsClient.connect(s.url);
      await multi.subscribe([ch, ...others]);
      // The in-memory broker hands a batch over in one turn; Redis usually does (one read of
      // the subscriber connection), and the frames may not outnumber the turns it took.
      const arrivals = watchArrivals(s.server.context.hub);
      assert.equal((await batch(s.url, [1, 2, 3, 4, 5].map((i) => ({ ch, data: i })))).status, 200);
      await one.until(() => one.messages().length === 5, 'the batch');
      await multi.until(() => multi.messages().length === 5, 'the batch (multi)');
      const turns = arrivals.turns(ch);
      arrivals.stop();
      if (profile.name === 'memory') assert.equal(turns, 1, 'the memory broker hands a batch over at once');
      for (const c of [one, multi]) assert.ok(c.frames.length - 1 >= 1 && c.frames.length - 1 <= turns, `the start frame, then five messages in ${c.frames.length - 1} frames, handed over in ${turns} turns`);
      if (profile.name === 'memory') {
        const before = multi.frames.length;
        assert.equal((await batch(s.url, [{ ch: others[0]!, data: 'x' }, { ch: others[1]!, data: 'y' }, { ch, data: 6 }])).status, 200);
        await multi.until(() => multi.messages().length === 8, 'the cross-channel batch');
        assert.equal(multi.frames.length, before + 1, 'one frame for three channels');
      }
    });

    it('a reader that stops reading is closed with 1013; it resumes from its last cursor with nothing repeated or skipped', async () => {
      const slow = await startTestServer({ ...env(), LP_MAX_BACKPRESSURE: '65536', LP_MAX_BODY_BYTES: '1048576', LP_HISTORY_SIZE: '1000' });
      try {
        const ch = fresh('slow-');
        const ws = await WsClient.connect(slow.url);
        await ws.subscribe(ch);
        const { hub } = slow.server.context;
        ws.pause();
        const big = 'x'.repeat(60_000);
        let published = 0;
        while (hub.registry.countOn(ch) > 0 && published < 400) {
          assert.equal((await publish(slow.url, ch, { i: ++published, big })).status, 200);
        }
        assert.equal(hub.registry.countOn(ch), 0, `closed after ${published} messages`);
        ws.resume();
        await ws.until(() => ws.closed, 'the close');
        assert.equal(ws.closeCode, 1013);
        const seen = ws.seqs();
        // What was queued before the close still arrives, then the close: a prefix, in order.
        assertRun(seen, 1, seen.length, 'the first socket got a prefix');
        for (let i = 0; i < 3; i++) await publish(slow.url, ch, { i: ++published, big: 'small' });
        const again = await WsClient.connect(slow.url);
        await again.subscribe(ch, { cursor: ws.cursor });
        await again.until(() => again.messages().length === published - seen.length, 'the rest');
        assertRun([...seen, ...again.seqs()], 1, published, 'every message once, in order');
        assert.equal(again.frames.some((f) => f.gap), false);
      } finally {
        closeStreams();
        await slow.close();
      }
    });

    it('LP_STREAM_MAX_S and the drain close with 1012 and a jittered retry hint', async () => {
      const short = await startTestServer({ ...env(), LP_STREAM_MAX_S: '2' });
      try {
        const ch = fresh('max-');
        const t0 = Date.now();
        const ws = await WsClient.connect(short.url);
        await ws.subscribe(ch);
        await ws.until(() => ws.closed, 'the close', 15_000);
        const took = Date.now() - t0;
        assert.ok(took >= 1900 && took < 5000, `closed after ${took} ms`);
        assert.equal(ws.closeCode, 1012);
        assert.ok(JSON.parse(ws.closeReason).retryMs > 0);
        await publish(short.url, ch, 'between');
        const again = await WsClient.connect(short.url);
        assert.deepEqual((await again.subscribe(ch, { cursor: ws.cursor })).messages?.map((m) => m.data), ['between']);

        const idle = await WsClient.connect(short.url); // no subscription: closed too
        await short.close();
        for (const c of [again, idle]) {
          await c.until(() => c.closed, 'the drain');
          assert.equal(c.closeCode, 1012);
          const { retryMs } = JSON.parse(c.closeReason);
          assert.ok(retryMs >= 750 && retryMs <= 1250, `jittered around 1000 ms: ${retryMs}`);
        }
      } finally {
        closeStreams();
        await short.close();
      }
    });

    it('one cursor across transports: poll → SSE → WebSocket → poll, nothing repeated or skipped', async () => {
      const a = fresh('pub-switch-a-');
      const b = fresh('pub-switch-b-');
      const got: [string, number][] = [];
      let seq = { [a]: 0, [b]: 0 } as Record<string, number>;
      const pub = async (ch: string) => {
        await publish(s.url, ch, ++seq[ch]!);
      };
      await pub(a);
      await pub(b);
      await pub(a);
      const p1 = await poll(s.url, { ch: [a, b], cursor: 'earliest' });
      got.push(...p1.body.messages.map((m) => [m.ch, m.seq] as [string, number]));
      await pub(b);
      await pub(a);
      const sse = await SseClient.start(s.url, { ch: [a, b], cursor: p1.body.cursor });
      await sse.until(() => sse.messages().length === 2, 'SSE catches up');
      await pub(a);
      await sse.until(() => sse.messages().length === 3, 'SSE live');
      got.push(...sse.messages().map((m) => [m.ch, m.seq] as [string, number]));
      sse.close();
      await pub(b);
      const ws = await WsClient.connect(s.url);
      await ws.subscribe([a, b], { cursor: sse.lastId });
      await pub(a);
      await ws.until(() => ws.messages().length === 2, 'WebSocket catches up and goes live');
      got.push(...ws.messages().map((m) => [m.ch, m.seq] as [string, number]));
      ws.close();
      await pub(b);
      await pub(a);
      // An answer may carry fewer than every message waiting: follow the cursor to the end.
      let cursor = ws.cursor!;
      for (let i = 0; i < 10 && !(got.some(([ch, q]) => ch === a && q === seq[a]) && got.some(([ch, q]) => ch === b && q === seq[b])); i++) {
        const p2 = await poll(s.url, { ch: [a, b], cursor, timeout: 1000 });
        got.push(...p2.body.messages.map((m) => [m.ch, m.seq] as [string, number]));
        cursor = p2.body.cursor;
      }
      assertRun(got.filter(([ch]) => ch === a).map(([, q]) => q), 1, seq[a]!, `channel a, once each: ${JSON.stringify(got)}`);
      assertRun(got.filter(([ch]) => ch === b).map(([, q]) => q), 1, seq[b]!, `channel b, once each: ${JSON.stringify(got)}`);
      seq = {};
    });

    it('forty channels at one seq, woken in one flush: polls, SSE streams and sockets sharing position groups each get only their own channel', async () => {
      const channels = sameSlot(fresh('pub-lockstep-'), 40);
      for (const ch of channels) await publish(s.url, ch, { ch, seq: 1 });
      const cursors = await Promise.all(channels.map((ch) => poll(s.url, { ch, cursor: 'earliest' }).then((r) => r.body.cursor)));
      const polls = channels.map((ch, i) => poll(s.url, { ch, cursor: cursors[i], timeout: 10_000, max: i % 2 ? 1000 : 100 }));
      const sses = await Promise.all(channels.map((ch, i) => SseClient.start(s.url, { ch }, { 'Last-Event-ID': cursors[i]! })));
      const wss = await Promise.all(channels.map(async (ch, i) => {
        const ws = await WsClient.connect(s.url, { msgpack: i % 3 === 0 });
        await ws.subscribe(ch, { cursor: cursors[i] });
        return ws;
      }));
      const { hub } = s.server.context;
      await until(() => channels.every((ch) => hub.registry.countOn(ch) === 3), 'a poll, a stream and a socket on each channel');
      assert.equal((await batch(s.url, channels.map((ch) => ({ ch, data: { ch, seq: 2 } })))).status, 200);
      const answers = await Promise.all(polls);
      channels.forEach((ch, i) => {
        const want = [{ ch, seq: 2, data: { ch, seq: 2 } }];
        assert.deepEqual(answers[i]!.body.messages, want, `poll on ${ch}`);
      });
      await Promise.all(sses.map((c) => c.until(() => c.messages().length === 1, 'SSE')));
      await Promise.all(wss.map((c) => c.until(() => c.messages().length === 1, 'WebSocket')));
      channels.forEach((ch, i) => {
        const want = [{ ch, seq: 2, data: { ch, seq: 2 } }];
        assert.deepEqual(sses[i]!.messages().map(({ ch: c, seq, data }) => ({ ch: c, seq, data })), want, `SSE on ${ch}`);
        assert.deepEqual(wss[i]!.messages(), want, `WebSocket on ${ch}`);
        // Each cursor belongs to its own channel.
        assert.equal(wss[i]!.cursor, answers[i]!.body.cursor, `the socket's cursor is the poll's on ${ch}`);
      });
      for (const c of [...sses, ...wss]) c.close();
    });

    it('holdfast_streams{transport="ws"} counts open sockets; deliveries count under transport="ws"', async () => {
      const scrape = async () => ((await http(`${s.url}/metrics`)).body as Buffer).toString();
      const value = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1]);
      const before0 = await scrape();
      const open0 = value(before0, 'holdfast_streams{transport="ws"}');
      const delivered0 = value(before0, 'holdfast_messages_delivered_total{transport="ws"}');
      const ch = fresh('pub-metrics-');
      const a = await WsClient.connect(s.url);
      const b = await WsClient.connect(s.url, { msgpack: true });
      await a.subscribe(ch);
      await b.subscribe(ch);
      assert.equal(value(await scrape(), 'holdfast_streams{transport="ws"}'), open0 + 2);
      await publish(s.url, ch, 1);
      await a.until(() => a.messages().length === 1 && b.messages().length === 1, 'both got it');
      const text = await scrape();
      assert.equal(value(text, 'holdfast_messages_delivered_total{transport="ws"}'), delivered0 + 2);
      assert.ok(value(text, 'holdfast_delivery_latency_seconds_count{transport="ws"}') >= 2);
      a.close();
      b.close();
      await until(async () => value(await scrape(), 'holdfast_streams{transport="ws"}') === open0, 'the gauge went back');
    });
  });
});

/** A WebSocket upgrade request the server refuses: status, headers and body. */
function rawUpgrade(port: number, path: string, change: Record<string, string | undefined> = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const headers: Record<string, string | undefined> = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...change };
  for (const k of Object.keys(headers)) if (headers[k] === undefined) delete headers[k];
  return new Promise((resolve, reject) => {
    const req = http1.request({ host: '127.0.0.1', port, path, agent: false, headers: headers as Record<string, string> }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode!, headers: h, body: Buffer.concat(chunks) });
      });
    });
    req.on('upgrade', () => reject(new Error('the upgrade was accepted')));
    req.on('error', reject);
    req.end();
  });
}
