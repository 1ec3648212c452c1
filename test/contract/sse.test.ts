/**
 * GET /v1/sse on every broker profile: the stream's shape (retry, a start id, one event per
 * message whose id is the cursor just after it), the validation and auth of /v1/poll,
 * cursors (Last-Event-ID wins, earliest, channels the cursor does not cover start from now),
 * gaps, heartbeats, a reader that stops reading (closed, then resumed from its last id with
 * nothing repeated or skipped), token expiry, LP_STREAM_MAX_S, the drain, and one write for
 * messages that arrive together.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signToken } from '../../src/auth/jwt.js';
import { eachProfile } from '../helpers/profiles.js';
import { SseClient, assertRun, closeStreams, followWithPolls, watchArrivals } from '../helpers/streams.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const SECRET = 'sse-test-secret-of-enough-length';
let n = 0;
const fresh = (p: string) => `${p}${process.pid}-${++n}`;
const token = (channels: string[], inS = 3600) => signToken(SECRET, { channels, exp: Math.floor(Date.now() / 1000) + inS });
const batch = (base: string, messages: { ch: string; data: unknown }[]) => http(`${base}/v1/publish`, { method: 'POST', json: { messages } });

/** Query strings /v1/poll refuses (from the bad-input suite); /v1/sse must refuse them alike. */
function badQueries(cursor: string): [string, string][] {
  return [
    ['no ch', ''],
    ['empty ch', 'ch='],
    ['a space', 'ch=a%20b'],
    ['a slash', 'ch=a%2Fb'],
    ['"."', 'ch=.'],
    ['".."', 'ch=..'],
    ['201 bytes', `ch=${'a'.repeat(201)}`],
    ['unicode', 'ch=%C3%BC'],
    ['33 channels', Array.from({ length: 33 }, (_, i) => `ch=c${i}`).join('&')],
    ['a cursor of punctuation', 'ch=pub-a&cursor=!!!'],
    ['a cursor of random base64', 'ch=pub-a&cursor=AAAAAAAAAAAAAAAA'],
    ['a truncated cursor', `ch=pub-a&cursor=${cursor.slice(0, -3)}`],
    ['a cursor with one character changed', `ch=pub-a&cursor=${cursor.slice(0, 10)}${cursor[10] === 'A' ? 'B' : 'A'}${cursor.slice(11)}`],
    ['a cursor given twice', `ch=pub-a&cursor=${cursor}&cursor=${cursor}`],
    ['an empty cursor', 'ch=pub-a&cursor='],
    ['a malformed %-escape', 'ch=%E0%A4%A'],
    ['a token given twice', 'ch=pub-a&token=x&token=y'],
    ['a query string of 40 KiB', `ch=pub-a&pad=${'x'.repeat(40 * 1024)}`],
    ['no token for a guarded channel', 'ch=user-1'],
    ['a forged token', `ch=user-1&token=${token(['user-1']).slice(0, -2)}xx`],
    ['a token that does not grant the channel', `ch=user-1&token=${token(['user-2'])}`],
  ];
}

eachProfile((profile, env) => {
  describe(`SSE /v1/sse [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_JWT_SECRET: SECRET, LP_JWT_LEEWAY_S: '0', LP_PUBLIC_PREFIXES: 'pub', LP_SSE_HEARTBEAT_MS: '1000', LP_HISTORY_SIZE: '50' });
    });
    after(async () => {
      closeStreams();
      await s.close();
    });

    it('streams as documented: retry, the start id, then one event per message whose id is the cursor just after it', async () => {
      const ch = fresh('pub-shape-');
      const sse = await SseClient.start(s.url, { ch });
      assert.equal(sse.headers.get('content-type'), 'text/event-stream');
      assert.equal(sse.headers.get('cache-control'), 'no-store');
      assert.equal(sse.headers.get('x-accel-buffering'), 'no');
      assert.deepEqual(sse.retries, [1000], 'the reconnect hint comes first');
      assert.equal(sse.events.length, 1);
      const start = sse.events[0]!;
      assert.equal(start.data, undefined, 'the start event carries only an id (EventSource dispatches nothing)');
      assert.deepEqual((await poll(s.url, { ch, cursor: start.id!, timeout: 1000 })).body.messages, [], 'the start id is a cursor at the head');

      await publish(s.url, ch, { n: 1 });
      await publish(s.url, ch, 'two');
      await sse.until(() => sse.messages().length === 2, 'two events');
      const [m1, m2] = sse.messages();
      assert.deepEqual([m1!.ch, m1!.seq, m1!.data, m2!.seq, m2!.data], [ch, 1, { n: 1 }, 2, 'two']);
      // Each id resumes exactly after its event.
      await publish(s.url, ch, 3);
      assert.deepEqual(await followWithPolls(s.url, ch, m1!.id, 3), [2, 3]);
      assert.deepEqual(await followWithPolls(s.url, ch, m2!.id, 3), [3]);
      await sse.until(() => sse.messages().length === 3, 'the third event');
      assert.equal(sse.events.filter((e) => e.event !== 'message').length, 0, 'no gap or error events');
    });

    it('refuses what /v1/poll refuses, with the same status and code, before any stream starts', async () => {
      const cursor = (await SseClient.start(s.url, { ch: 'pub-a' })).lastId!;
      for (const [what, query] of badQueries(cursor)) {
        const p = await http(`${s.url}/v1/poll?${query}&timeout=1000`);
        const sse = await SseClient.open(s.url, query);
        assert.ok(p.status >= 400, `${what}: /v1/poll refuses (${p.status})`);
        assert.equal(sse.status, p.status, `${what}: same status`);
        if (p.status !== 431) assert.equal(sse.body.error.code, p.body.error.code, `${what}: same code`);
        assert.equal(sse.events.length, 0, `${what}: no stream`);
      }
      // Last-Event-ID is a cursor, checked like one.
      const bad = await SseClient.open(s.url, { ch: 'pub-a' }, { 'Last-Event-ID': 'not-a-cursor' });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'bad_cursor');
      // Methods other than GET: 405 with Allow.
      const post = await http(`${s.url}/v1/sse?ch=pub-a`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET');
    });

    it('auth: a token in the header or ?token=, the header wins; public channels need none', async () => {
      const ch = fresh('user-');
      await publish(s.url, ch, 'private');
      const viaQuery = await SseClient.start(s.url, { ch, cursor: 'earliest', token: token([ch]) });
      const viaHeader = await SseClient.start(s.url, { ch, cursor: 'earliest' }, { Authorization: `Bearer ${token(['user-*'])}` });
      for (const c of [viaQuery, viaHeader]) await c.until(() => c.messages().length === 1, 'the retained message');
      // Header valid, query refused: streams. Header refused, query valid: 403.
      const headerWins = await SseClient.start(s.url, { ch, token: token(['other']) }, { Authorization: `Bearer ${token([ch])}` });
      assert.equal(headerWins.status, 200);
      const headerLoses = await SseClient.open(s.url, { ch, token: token([ch]) }, { Authorization: `Bearer ${token(['other'])}` });
      assert.equal(headerLoses.status, 403);
      assert.equal(headerLoses.body.error.code, 'forbidden');
      const none = await SseClient.open(s.url, { ch });
      assert.equal(none.status, 401);
      const expired = await SseClient.open(s.url, { ch, token: token([ch], -10) });
      assert.equal(expired.status, 401);
      // A public channel ignores a bad token.
      const pub = await SseClient.start(s.url, { ch: fresh('pub-open-'), token: 'garbage' });
      assert.equal(pub.status, 200);
    });

    it('cursors: Last-Event-ID wins over ?cursor=, earliest sends what is retained, an uncovered channel starts from now', async () => {
      const a = fresh('pub-cur-a-');
      const b = fresh('pub-cur-b-');
      for (let i = 1; i <= 3; i++) await publish(s.url, a, i);
      await publish(s.url, b, 'b before');
      const all = await SseClient.start(s.url, { ch: a, cursor: 'earliest' });
      await all.until(() => all.messages().length === 3, 'the retained messages');
      assertRun(all.seqs(), 1, 3, 'earliest: everything retained');
      const afterOne = all.messages()[0]!.id;
      const afterTwo = all.messages()[1]!.id;
      const resumed = await SseClient.start(s.url, { ch: a, cursor: afterOne }, { 'Last-Event-ID': afterTwo });
      await resumed.until(() => resumed.messages().length >= 1, 'the message after Last-Event-ID');
      assert.deepEqual(resumed.seqs(), [3], 'Last-Event-ID wins over ?cursor=');
      // The cursor covers a only: b starts from now (its earlier message is not sent).
      const both = await SseClient.start(s.url, { ch: [a, b], cursor: all.lastId! });
      await publish(s.url, b, 'b after');
      await publish(s.url, a, 4);
      await both.until(() => both.messages().length === 2, 'the two new messages');
      assert.deepEqual(both.messages().map((m) => [m.ch, m.seq]), [[b, 2], [a, 4]]);
      // Ids of a multi-channel stream are cursors of both channels.
      const next = await poll(s.url, { ch: [a, b], cursor: both.lastId!, timeout: 1000 });
      assert.deepEqual(next.body.messages, []);
    });

    it('gaps: event: gap with its id before the retained messages; a deleted channel is a gap on a live stream', async () => {
      const ch = fresh('pub-gap-');
      await publish(s.url, ch, 1);
      const first = await SseClient.start(s.url, { ch, cursor: 'earliest' });
      await first.until(() => first.messages().length === 1, 'seq 1');
      const cursor = first.lastId!;
      first.close();
      for (let i = 2; i <= 60; i++) await publish(s.url, ch, i); // history keeps 50: 2…10 are gone
      const sse = await SseClient.start(s.url, { ch, cursor });
      await sse.until(() => sse.messages().length === 50, 'the retained messages');
      const gap = sse.events.find((e) => e.event === 'gap')!;
      assert.ok(gap, 'a gap event');
      assert.deepEqual(JSON.parse(gap.data!), { gapChannels: [ch] });
      assert.ok(sse.events.indexOf(gap) < sse.events.findIndex((e) => e.event === 'message' && e.data !== undefined), 'the gap comes first');
      assertRun(sse.seqs(), 11, 60, 'then the retained messages');
      // The gap's id resumes before the retained messages.
      const fromGap = await poll(s.url, { ch, cursor: gap.id!, max: 1 });
      assert.equal(fromGap.body.gap, false);
      assert.deepEqual(fromGap.body.messages.map((m) => m.seq), [11]);
      // A delete starts a new epoch: the live stream reports it, then follows the new numbering.
      assert.equal((await http(`${s.url}/v1/channels/${ch}`, { method: 'DELETE' })).status, 200);
      await sse.until(() => sse.events.filter((e) => e.event === 'gap').length === 2, 'the second gap');
      await publish(s.url, ch, 'new 1');
      await sse.until(() => sse.messages().length === 51, 'the new numbering');
      assert.deepEqual(sse.messages()[50]!.seq, 1);
    });

    it('heartbeats: an idle stream gets a comment line every LP_SSE_HEARTBEAT_MS', async () => {
      const sse = await SseClient.start(s.url, { ch: fresh('pub-idle-') });
      const t0 = Date.now();
      await sse.until(() => sse.comments >= 2, 'two heartbeats', 6000);
      const took = Date.now() - t0;
      assert.ok(took >= 1000, `not before the interval (${took} ms)`);
      assert.equal(sse.ended, false);
    });

    it('messages that arrive together leave in one write: one chunk for a batch', async () => {
      const direct = await startTestServer({ ...env(), VIA: 'direct', LP_PUBLIC_PREFIXES: 'pub' });
      try {
        const ch = fresh('pub-batch-');
        const others = [fresh('pub-batch-x-'), fresh('pub-batch-y-')];
        const one = await SseClient.start(direct.url, { ch });
        const multi = await SseClient.start(direct.url, { ch: [ch, ...others] });
        // The in-memory broker hands a batch over in one turn; Redis usually does (one read of
        // the subscriber connection), and the chunks may not outnumber the turns it took.
        const arrivals = watchArrivals(direct.server.context.hub);
        assert.equal((await batch(direct.url, [1, 2, 3, 4, 5].map((i) => ({ ch, data: i })))).status, 200);
        await one.until(() => one.messages().length === 5, 'the batch');
        await multi.until(() => multi.messages().length === 5, 'the batch on the multi-channel stream');
        const turns = arrivals.turns(ch);
        if (profile.name === 'memory') assert.equal(turns, 1, 'the memory broker hands a batch over at once');
        for (const c of [one, multi]) {
          const chunks = new Set(c.messages().map((m) => m.chunk)).size;
          assert.ok(chunks >= 1 && chunks <= turns, `five events in ${chunks} chunks, handed over in ${turns} turns`);
        }
        if (profile.name === 'memory') {
          // Across channels: one chunk for the whole batch.
          assert.equal((await batch(direct.url, [{ ch: others[0]!, data: 'x' }, { ch: others[1]!, data: 'y' }, { ch, data: 6 }])).status, 200);
          await multi.until(() => multi.messages().length === 8, 'the cross-channel batch');
          assert.equal(new Set(multi.messages().slice(5).map((m) => m.chunk)).size, 1);
        }
        arrivals.stop();
      } finally {
        closeStreams();
        await direct.close();
      }
    });

    it('token expiry ends the stream with event: error, then closes it', async () => {
      const ch = fresh('user-exp-');
      const sse = await SseClient.start(s.url, { ch }, { Authorization: `Bearer ${token([ch], 2)}` });
      const t0 = Date.now();
      await sse.until(() => sse.ended, 'the end of the stream', 8000);
      const error = sse.events.find((e) => e.event === 'error');
      assert.ok(error, `an error event before the close: ${JSON.stringify(sse.events)}`);
      assert.equal(JSON.parse(error.data!).error.code, 'unauthorized');
      assert.equal(sse.events.at(-1), error, 'it is the last event');
      assert.ok(Date.now() - t0 < 4000);
      await until(() => s.server.context.hub.registry.countOn(ch) === 0, 'the stream left the hub');
    });

    it('a reader that stops reading is closed; it resumes from its last id with nothing repeated or skipped', async () => {
      const slow = await startTestServer({ ...env(), LP_MAX_BACKPRESSURE: '65536', LP_MAX_BODY_BYTES: '1048576', LP_HISTORY_SIZE: '1000' });
      try {
        const ch = fresh('slow-');
        const sse = await SseClient.start(slow.url, { ch });
        const { hub } = slow.server.context;
        sse.pause();
        const big = 'x'.repeat(60_000);
        let published = 0;
        // The kernel's buffers take several MB first; bounded at 24 MB.
        while (hub.registry.countOn(ch) > 0 && published < 400) {
          assert.equal((await publish(slow.url, ch, { i: ++published, big })).status, 200);
        }
        assert.equal(hub.registry.countOn(ch), 0, `closed after ${published} messages`);
        sse.resume();
        await sse.until(() => sse.closed, 'the close');
        const seen = sse.seqs();
        assertRun(seen, 1, seen.length, 'the first stream got a prefix');
        assert.ok(seen.length < published, 'it was cut before the end');
        // What EventSource does: reconnect with the last id it got.
        for (let i = 0; i < 3; i++) await publish(slow.url, ch, { i: ++published, big: 'small' });
        const again = await SseClient.start(slow.url, { ch }, { 'Last-Event-ID': sse.lastId! });
        await again.until(() => again.messages().length === published - seen.length, 'the rest');
        assertRun([...seen, ...again.seqs()], 1, published, 'every message once, in order');
        assert.equal(again.events.some((e) => e.event === 'gap'), false);
        const metrics = ((await http(`${slow.url}/metrics`)).body as Buffer).toString();
        assert.match(metrics, /^holdfast_slow_responses_closed_total [1-9]/m);
      } finally {
        closeStreams();
        await slow.close();
      }
    });

    it('a reader that keeps up is never closed, however much it reads; a stall it recovers from does not end the stream', async () => {
      const roomy = await startTestServer({ ...env(), LP_MAX_BACKPRESSURE: '65536', LP_MAX_BODY_BYTES: '1048576' });
      const huge = await startTestServer({ ...env(), LP_MAX_BACKPRESSURE: String(256 * 1024 * 1024), LP_MAX_BODY_BYTES: '1048576' });
      try {
        // 300 KB through a stream whose limit is 64 KB: what counts is what is unsent.
        const ch = fresh('long-');
        const sse = await SseClient.start(roomy.url, { ch });
        const kb = 'k'.repeat(1000);
        for (let i = 1; i <= 300; i++) await publish(roomy.url, ch, { i, kb });
        await sse.until(() => sse.messages().length === 300, 'every message');
        assert.equal(sse.ended, false, 'still open');

        // A reader that stalls long enough for uWS to buffer, then catches up, keeps its stream
        // (uWS arms a 10 s timeout on a write it cannot flush).
        const stalled = fresh('stall-');
        const st = await SseClient.start(huge.url, { ch: stalled });
        st.pause();
        const big = 'y'.repeat(200_000);
        const stream = () => huge.server.context.hub.registry.spool(stalled)?.parked()[0] as { watching?: boolean } | undefined;
        let published = 0;
        while (!stream()?.watching && published < 200) await publish(huge.url, stalled, { i: ++published, big });
        assert.equal(stream()?.watching, true, `uWS buffered after ${published} messages`);
        st.resume();
        await st.until(() => st.messages().length === published, 'the stalled reader caught up');
        await new Promise((r) => setTimeout(r, 11_000)); // past uWS's 10 s write timeout, on purpose
        await publish(huge.url, stalled, 'after the stall');
        await st.until(() => st.messages().length === published + 1, 'delivered after 11 s');
        assert.equal(st.ended, false, 'the stream is still open');
      } finally {
        closeStreams();
        await roomy.close();
        await huge.close();
      }
    });

    it('LP_STREAM_MAX_S ends a stream; the drain ends every stream with a jittered retry', async () => {
      const short = await startTestServer({ ...env(), LP_STREAM_MAX_S: '2' });
      try {
        const ch = fresh('max-');
        const t0 = Date.now();
        const sse = await SseClient.start(short.url, { ch });
        await publish(short.url, ch, 'before');
        await sse.until(() => sse.ended, 'the end of the stream', 15_000);
        const took = Date.now() - t0;
        assert.ok(took >= 1900 && took < 5000, `ended after ${took} ms`);
        assert.equal(sse.events.some((e) => e.event === 'error'), false, 'no error: a plain end');
        await publish(short.url, ch, 'between');
        const again = await SseClient.start(short.url, { ch }, { 'Last-Event-ID': sse.lastId! });
        await again.until(() => again.messages().length === 1, 'what was published in between');
        assert.deepEqual(again.messages().map((m) => m.data), ['between']);

        const draining = await SseClient.start(short.url, { ch: [ch, fresh('max-other-')] });
        await short.close();
        await draining.until(() => draining.ended, 'the end of the stream');
        const retry = draining.retries.at(-1)!;
        assert.equal(draining.retries.length, 2, 'a second retry line before the end');
        assert.ok(retry >= 750 && retry <= 1250, `jittered around 1000 ms: ${retry}`);
      } finally {
        closeStreams();
        await short.close();
      }
    });

    it('holdfast_streams{transport="sse"} counts open streams; deliveries count under transport="sse"', async () => {
      const scrape = async () => ((await http(`${s.url}/metrics`)).body as Buffer).toString();
      const value = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1]);
      const before0 = await scrape();
      const open0 = value(before0, 'holdfast_streams{transport="sse"}');
      const delivered0 = value(before0, 'holdfast_messages_delivered_total{transport="sse"}');
      const ch = fresh('pub-metrics-');
      const a = await SseClient.start(s.url, { ch });
      const b = await SseClient.start(s.url, { ch });
      assert.equal(value(await scrape(), 'holdfast_streams{transport="sse"}'), open0 + 2);
      await publish(s.url, ch, 1);
      await a.until(() => a.messages().length === 1 && b.messages().length === 1, 'both got it');
      const text = await scrape();
      assert.equal(value(text, 'holdfast_messages_delivered_total{transport="sse"}'), delivered0 + 2);
      assert.ok(value(text, 'holdfast_delivery_latency_seconds_count{transport="sse"}') >= 2);
      a.close();
      b.close();
      await until(async () => value(await scrape(), 'holdfast_streams{transport="sse"}') === open0, 'the gauge went back');
    });
  });
});
