/**
 * Bad input: every case gets the right status and a JSON error with a code and a message,
 * and the server keeps serving (and leaks no parked slot) after all of them. Then the same at
 * the byte level, where fetch cannot go: HEAD on a keep-alive connection, conflicting body
 * framing (400 and the connection closes), smuggling, odd methods, what uWS itself drops.
 */

import assert from 'node:assert/strict';
import { request as httpRequest, Agent } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { pack } from 'msgpackr';
import { withFrontKey } from '../helpers/nginx.js';
import { eachProfile } from '../helpers/profiles.js';
import { type RawAnswer, exchange } from '../helpers/raw-http.js';
import { type TestServer, http, poll, publish, startTestServer } from '../helpers/server.js';

type Case = [what: string, status: number, code: string, request: (base: string) => Promise<Response>];

const json = 'application/json';
const mp = 'application/msgpack';
/** fetch, plus the publish key when the suite runs through nginx (HOLDFAST_VIA=nginx). */
const send = (url: string, init: RequestInit = {}) => {
  const headers = new Headers(init.headers);
  withFrontKey(url, headers);
  return fetch(url, { ...init, headers });
};
const post = (path: string, body: BodyInit, type?: string, headers: Record<string, string> = {}) => (base: string) =>
  send(`${base}${path}`, { method: 'POST', body, headers: type ? { 'content-type': type, ...headers } : headers });
const get = (path: string, init: RequestInit = {}) => (base: string) => send(`${base}${path}`, init);
/** MessagePack int64 (0xd3) of `n`, the wire form other languages' encoders often use. */
const int64 = (n: bigint) => {
  const b = Buffer.alloc(9);
  b[0] = 0xd3;
  b.writeBigInt64BE(n, 1);
  return b;
};
const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const nestedMp = (depth: number) => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return pack(v);
};

/** A real cursor from the server, so the tampering cases start from a valid one. */
let cursor = '';

const CASES: Case[] = [
  // /v1/poll
  ['poll without ch', 400, 'bad_request', get('/v1/poll')],
  ['poll with empty ch', 400, 'bad_channel', get('/v1/poll?ch=')],
  ['channel with a space', 400, 'bad_channel', get('/v1/poll?ch=a%20b')],
  ['channel with a slash', 400, 'bad_channel', get('/v1/poll?ch=a%2Fb')],
  ['channel "."', 400, 'bad_channel', get('/v1/poll?ch=.')],
  ['channel ".."', 400, 'bad_channel', get('/v1/poll?ch=..')],
  ['channel of 201 bytes', 400, 'bad_channel', get(`/v1/poll?ch=${'a'.repeat(201)}`)],
  ['channel with unicode', 400, 'bad_channel', get('/v1/poll?ch=%C3%BC')],
  ['33 channels', 400, 'bad_request', get(`/v1/poll?${Array.from({ length: 33 }, (_, i) => `ch=c${i}`).join('&')}`)],
  ['cursor of punctuation', 400, 'bad_cursor', get('/v1/poll?ch=a&cursor=!!!')],
  ['cursor of random base64', 400, 'bad_cursor', get('/v1/poll?ch=a&cursor=AAAAAAAAAAAAAAAA')],
  ['cursor truncated', 400, 'bad_cursor', (b) => send(`${b}/v1/poll?ch=a&cursor=${cursor.slice(0, -3)}`)],
  ['cursor with one character changed', 400, 'bad_cursor', (b) => send(`${b}/v1/poll?ch=a&cursor=${cursor.slice(0, 10)}${cursor[10] === 'A' ? 'B' : 'A'}${cursor.slice(11)}`)],
  ['cursor given twice', 400, 'bad_request', (b) => send(`${b}/v1/poll?ch=a&cursor=${cursor}&cursor=${cursor}`)],
  ['empty cursor', 400, 'bad_cursor', get('/v1/poll?ch=a&cursor=')],
  ['timeout not a number', 400, 'bad_request', get('/v1/poll?ch=a&timeout=soon')],
  ['timeout negative', 400, 'bad_request', get('/v1/poll?ch=a&timeout=-5')],
  ['timeout fractional', 400, 'bad_request', get('/v1/poll?ch=a&timeout=1.5')],
  ['max zero', 400, 'bad_request', get('/v1/poll?ch=a&max=0')],
  ['max not a number', 400, 'bad_request', get('/v1/poll?ch=a&max=lots')],
  ['malformed %-escape', 400, 'bad_request', get('/v1/poll?ch=%E0%A4%A')],
  ['timeout with a plus sign', 400, 'bad_request', get('/v1/poll?ch=a&timeout=%2B5000')],
  ['max of 16 digits', 400, 'bad_request', get('/v1/poll?ch=a&max=1234567890123456')],
  ['token given twice', 400, 'bad_request', get('/v1/poll?ch=a&token=x&token=y')],
  ['query string of 40 KiB', 431, 'headers_too_large', get(`/v1/poll?ch=a&pad=${'x'.repeat(40 * 1024)}`)],
  // POST /v1/publish/<ch>
  ['publish without Content-Type', 415, 'unsupported_media_type', post('/v1/publish/a', new TextEncoder().encode('1'))], // a string body would get text/plain from fetch
  ['publish as image/png', 415, 'unsupported_media_type', post('/v1/publish/a', '1', 'image/png')],
  ['publish as form data', 415, 'unsupported_media_type', post('/v1/publish/a', 'a=1', 'application/x-www-form-urlencoded')],
  ['invalid JSON', 400, 'bad_json', post('/v1/publish/a', '{"a":', json)],
  ['JSON with trailing garbage', 400, 'bad_json', post('/v1/publish/a', '{"a":1} x', json)],
  ['empty JSON body', 400, 'bad_json', post('/v1/publish/a', '', json)],
  ['JSON that is not UTF-8', 400, 'bad_json', post('/v1/publish/a', new Uint8Array([0x22, 0xff, 0xfe, 0x22]), json)],
  ['text that is not UTF-8', 400, 'bad_text', post('/v1/publish/a', new Uint8Array([0xc3, 0x28]), 'text/plain')],
  ['JSON nested 101 deep', 400, 'unsupported_value', post('/v1/publish/a', nested(101), json)],
  ['JSON nested 100000 deep', 400, 'unsupported_value', post('/v1/publish/a', nested(100000), json)],
  ['MessagePack nested 100000 deep', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([...new Array(100000).fill(0x91), 0x01]), mp)],
  ['JSON integer beyond 2^53', 400, 'unsupported_value', post('/v1/publish/a', '{"id":9007199254740993}', json)],
  ['JSON integer below -(2^53 - 1)', 400, 'unsupported_value', post('/v1/publish/a', '-9007199254740992', json)],
  ['JSON integer beyond 2^53 deep inside', 400, 'unsupported_value', post('/v1/publish/a', '{"a":{"b":[1.5,"9007199254740993",{"c":123456789012345678901234567890}]}}', json)],
  ['JSON number too large for a float', 400, 'unsupported_value', post('/v1/publish/a', '[1e400]', json)],
  ['batch data with an integer beyond 2^53', 400, 'unsupported_value', post('/v1/publish', '{"messages":[{"ch":"a","data":{"n":9007199254740993}}]}', json)],
  ['MessagePack nested 101 deep', 400, 'unsupported_value', post('/v1/publish/a', nestedMp(101), mp)],
  ['MessagePack bin', 400, 'unsupported_value', post('/v1/publish/a', pack(Buffer.from([1, 2, 3])), mp)],
  ['MessagePack timestamp ext', 400, 'unsupported_value', post('/v1/publish/a', pack(new Date(0)), mp)],
  ['MessagePack unknown ext', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([0xd4, 0x05, 0x01]), mp)],
  ['MessagePack integer map key', 400, 'unsupported_value', post('/v1/publish/a', pack(new Map([[1, 'a']])), mp)],
  ['MessagePack uint64 beyond 2^53', 400, 'unsupported_value', post('/v1/publish/a', new Uint8Array([0xcf, 0xff, 0, 0, 0, 0, 0, 0, 1]), mp)],
  ['MessagePack int64 below -(2^53 - 1)', 400, 'unsupported_value', post('/v1/publish/a', int64(-(2n ** 53n)), mp)],
  ['MessagePack float NaN', 400, 'unsupported_value', post('/v1/publish/a', new Uint8Array([0xca, 0x7f, 0xc0, 0, 0]), mp)],
  ['MessagePack truncated', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([0x92, 0x01]), mp)],
  ['MessagePack with trailing bytes', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([0x01, 0x02]), mp)],
  ['MessagePack reserved byte 0xc1', 400, 'unsupported_value', post('/v1/publish/a', new Uint8Array([0xc1]), mp)],
  ['body over LP_MAX_BODY_BYTES', 413, 'body_too_large', post('/v1/publish/a', `"${'x'.repeat(300_000)}"`, json)],
  ['chunked body over the limit', 413, 'body_too_large', (b) =>
    send(`${b}/v1/publish/a`, {
      method: 'POST',
      headers: { 'content-type': json },
      body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(`"${'x'.repeat(300_000)}"`)); c.close(); } }),
      duplex: 'half',
    } as RequestInit)],
  ['bad channel in the publish path', 400, 'bad_channel', post('/v1/publish/bad*name', '1', json)],
  ['publish path with a slash', 400, 'bad_channel', post('/v1/publish/a/b', '1', json)],
  ['publish to an empty channel', 400, 'bad_channel', post('/v1/publish/', '1', json)],
  ['an encoded slash in the publish path', 400, 'bad_channel', post('/v1/publish/a%2Fb', '1', json)],
  ['an encoded space in the admin path', 400, 'bad_channel', get('/v1/channels/a%20b')],
  ['Idempotency-Key of 201 characters', 400, 'bad_request', post('/v1/publish/a', '1', json, { 'idempotency-key': 'k'.repeat(201) })],
  // POST /v1/publish (batch)
  ['batch that is an array', 400, 'bad_request', post('/v1/publish', '[]', json)],
  ['batch without messages', 400, 'bad_request', post('/v1/publish', '{"items":[]}', json)],
  ['batch item without data', 400, 'bad_request', post('/v1/publish', '{"messages":[{"ch":"a"}]}', json)],
  ['batch item with a numeric ch', 400, 'bad_channel', post('/v1/publish', '{"messages":[{"ch":5,"data":1}]}', json)],
  ['batch item with a non-string id', 400, 'bad_request', post('/v1/publish', '{"messages":[{"ch":"a","data":1,"id":7}]}', json)],
  ['batch as text/plain', 415, 'unsupported_media_type', post('/v1/publish', '{"messages":[]}', 'text/plain')],
  // seed endpoints
  ['seed poll without clientId', 400, 'bad_request', get('/poll')],
  ['seed poll with a bad clientId', 400, 'bad_channel', get('/poll?clientId=a%20b')],
  ['push of a non-object', 400, 'bad_request', post('/push', '[1]', json)],
  ['push without a message', 400, 'bad_request', post('/push', '{"clientId":"a"}', json)],
  ['push with a numeric clientId', 400, 'bad_request', post('/push', '{"clientId":7,"message":1}', json)],
  ['disconnect without clientId', 400, 'bad_request', get('/disconnect', { method: 'DELETE' })],
  // routes and methods
  ['unknown path', 404, 'not_found', get('/nope')],
  ['unknown versioned path', 404, 'not_found', get('/v2/poll?ch=a')],
  ['PUT on /v1/poll', 405, 'method_not_allowed', get('/v1/poll?ch=a', { method: 'PUT' })],
  ['GET on /v1/publish/a', 405, 'method_not_allowed', get('/v1/publish/a')],
  ['PATCH on /v1/channels/a', 405, 'method_not_allowed', get('/v1/channels/a', { method: 'PATCH' })],
  ['POST on /poll', 405, 'method_not_allowed', get('/poll?clientId=a', { method: 'POST' })],
  ['GET on /push', 405, 'method_not_allowed', get('/push')],
  ['DELETE on /v1/publish/a', 405, 'method_not_allowed', get('/v1/publish/a', { method: 'DELETE' })],
  ['PATCH on /healthz', 405, 'method_not_allowed', get('/healthz', { method: 'PATCH' })],
  ['POST on /metrics', 405, 'method_not_allowed', get('/metrics', { method: 'POST' })],
  ['OPTIONS without an Origin', 403, 'forbidden', get('/v1/poll?ch=a', { method: 'OPTIONS' })],
  ['bad channel in the admin path', 400, 'bad_channel', get('/v1/channels/bad!name')],
  ['admin on an empty channel', 400, 'bad_channel', get('/v1/channels/')],
];

eachProfile((profile, env) => {
  describe(`bad input [${profile.name}]`, () => {
    let s: TestServer;
    before(async () => {
      s = await startTestServer({ ...env(), LP_MAX_BODY_BYTES: '262144' });
      await publish(s.url, 'a', 'seed');
      cursor = (await poll(s.url, { ch: 'a', cursor: 'earliest' })).body.cursor;
    });
    after(() => s.close());

    it(`${CASES.length} bad inputs each get the right status and a JSON error`, async () => {
      assert.ok(CASES.length >= 80);
      for (const [what, status, code, request] of CASES) {
        const res = await request(s.url);
        const text = await res.text();
        assert.equal(res.status, status, `${what}: ${text}`);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/, what);
        const body = JSON.parse(text);
        assert.equal(body.error?.code, code, `${what}: ${text}`);
        assert.ok(typeof body.error.message === 'string' && body.error.message.length > 10, what);
        if (status === 405) assert.ok(res.headers.get('allow'), `${what}: Allow header`);
      }
    });

    it('a value nested exactly 100 deep is accepted', async () => {
      const r = await http(`${s.url}/v1/publish/deep`, { method: 'POST', body: nested(100), headers: { 'content-type': json } });
      assert.equal(r.status, 200);
    });

    it('keeps serving afterwards, with no parked slot leaked and nothing lost', async () => {
      assert.equal(s.server.context.hub.parkedCount, 0);
      assert.equal(s.server.context.hub.registry.size, 0);
      const r = await poll(s.url, { ch: 'a', cursor: 'earliest' });
      assert.deepEqual(r.body.messages.map((m) => m.data), ['seed'], 'the acknowledged message is still there, alone');
      assert.equal((await publish(s.url, 'a', 'after')).body.seq, 2);
    });
  });
});

// ---- At the byte level (direct: these are Holdfast's own HTTP rules, not the proxy's) ----

const CRLF = '\r\n';
const req = (head: string[], body = '') => head.join(CRLF) + CRLF + CRLF + body;
const jsonError = (a: RawAnswer) => JSON.parse(a.body.toString()) as { error: { code: string; message: string } };

eachProfile((profile, env) => {
  describe(`HTTP framing, HEAD and methods [${profile.name}]`, () => {
    let s: TestServer;
    const lastSeq = async (ch: string) => (await http(`${s.url}/v1/channels/${ch}`)).body.lastSeq as number;
    before(async () => {
      s = await startTestServer({ ...env(), VIA: 'direct' });
      await publish(s.url, 'a', 'seed');
    });
    after(() => s.close());

    it('HEAD answers carry headers and no body; the keep-alive connection goes on', async () => {
      const heads = [true, false, true, true, true, false];
      const x = await exchange(
        s.port,
        ['HEAD /healthz', 'GET /healthz', 'HEAD /v1/poll?ch=a', 'HEAD /nope', 'HEAD /v1/channels/a', 'GET /readyz'].map((l) => req([`${l} HTTP/1.1`, 'Host: x'])).join(''),
        { expect: 6, heads },
      );
      assert.equal(x.answers.length, 6, `answers: ${x.answers.map((a) => a.status)}`);
      assert.equal(x.rest.length, 0, `no stray bytes after the answers: ${JSON.stringify(x.rest.toString().slice(0, 80))}`);
      const [head, get, pollHead, notFound, admin, ready] = x.answers as [RawAnswer, RawAnswer, RawAnswer, RawAnswer, RawAnswer, RawAnswer];
      assert.deepEqual([get.status, JSON.parse(get.body.toString())], [200, { status: 'ok' }]);
      assert.deepEqual([head.status, head.header('content-length'), head.header('content-type')], [200, String(get.body.length), 'application/json'], 'the headers of the GET answer');
      assert.deepEqual([pollHead.status, pollHead.header('allow')], [405, 'GET']);
      assert.ok(Number(pollHead.header('content-length')) > 20, 'the length of the error the GET would get');
      assert.equal(notFound.status, 404);
      assert.deepEqual([admin.status, admin.header('allow')], [405, 'GET, DELETE']);
      assert.equal(ready.status, 200);
      assert.equal(JSON.parse(ready.body.toString()).status, 'ready');
      const metrics = await exchange(s.port, req(['HEAD /metrics HTTP/1.1', 'Host: x']), { heads: [true] });
      assert.equal(metrics.answers[0]!.status, 200);
      assert.ok(Number(metrics.answers[0]!.header('content-length')) > 1000);
      assert.equal(metrics.rest.length, 0);
    });

    it("Node's http client: HEAD then GET on one keep-alive socket (it used to fail with Parse Error)", async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const call = (method: string) =>
          new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
            const r = httpRequest(`${s.url}/healthz`, { method, agent }, (res) => {
              let body = '';
              res.on('data', (d) => (body += d));
              res.on('end', () => resolve({ status: res.statusCode!, body, reused: r.reusedSocket }));
            });
            r.on('error', reject);
            r.end();
          });
        assert.deepEqual(await call('HEAD'), { status: 200, body: '', reused: false });
        const get = await call('GET');
        assert.deepEqual([get.status, JSON.parse(get.body), get.reused], [200, { status: 'ok' }, true]);
        assert.deepEqual(await call('HEAD'), { status: 200, body: '', reused: true });
      } finally {
        agent.destroy();
      }
    });

    it('conflicting Content-Length or a Transfer-Encoding other than a lone chunked: 400 JSON, then the connection closes', async () => {
      const pub = ['POST /v1/publish/a HTTP/1.1', 'Host: x', 'Content-Type: application/json'];
      const cases: [string, string, RegExp][] = [
        ['Content-Length 3 then 10', req([...pub, 'Content-Length: 3', 'Content-Length: 10'], '1234567890'), /Content-Length headers that disagree/],
        ['Content-Length 10 then 3', req([...pub, 'Content-Length: 10', 'Content-Length: 3'], '1234567890'), /Content-Length headers that disagree/],
        ['Transfer-Encoding: chunked, identity', req([...pub, 'Transfer-Encoding: chunked, identity'], `1${CRLF}1${CRLF}0${CRLF}${CRLF}`), /Transfer-Encoding "chunked, identity"/],
        ['Transfer-Encoding: gzip, chunked', req([...pub, 'Transfer-Encoding: gzip, chunked'], `1${CRLF}1${CRLF}0${CRLF}${CRLF}`), /Transfer-Encoding/],
        ['Transfer-Encoding: identity', req([...pub, 'Transfer-Encoding: identity'], '1'), /Transfer-Encoding "identity"/],
        ['Transfer-Encoding: chunked, twice', req([...pub, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], `1${CRLF}1${CRLF}0${CRLF}${CRLF}`), /Transfer-Encoding "chunked, chunked"/],
        ['a GET poll with Transfer-Encoding: chunked, identity', req(['GET /v1/poll?ch=a HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked, identity'], `0${CRLF}${CRLF}`), /Transfer-Encoding/],
        ['a GET with Content-Length 0 then 5', req(['GET /healthz HTTP/1.1', 'Host: x', 'Content-Length: 0', 'Content-Length: 5'], 'abcde'), /Content-Length/],
        ['a DELETE with Content-Length 1 then 2', req(['DELETE /v1/channels/a HTTP/1.1', 'Host: x', 'Content-Length: 1', 'Content-Length: 2'], 'ab'), /Content-Length/],
      ];
      const before = await lastSeq('a');
      for (const [what, bytes, message] of cases) {
        const x = await exchange(s.port, bytes, { waitForClose: true });
        assert.equal(x.answers.length, 1, what);
        const a = x.answers[0]!;
        assert.equal(a.status, 400, what);
        assert.equal(a.header('connection'), 'close', what);
        assert.equal(jsonError(a).error.code, 'bad_request', what);
        assert.match(jsonError(a).error.message, message, what);
        assert.ok(x.closed, `${what}: the server closed the connection`);
      }
      const head = await exchange(s.port, req(['HEAD /healthz HTTP/1.1', 'Host: x', 'Content-Length: 1', 'Content-Length: 2'], 'ab'), { heads: [true], waitForClose: true });
      assert.deepEqual([head.answers[0]?.status, head.answers[0]?.header('connection'), head.rest.length, head.closed], [400, 'close', 0, true], 'a HEAD gets its 400 without a body');
      assert.equal(await lastSeq('a'), before, 'nothing was published');
      // A lone chunked, in any case, is fine.
      for (const coding of ['chunked', 'CHUNKED']) {
        const ok = await exchange(s.port, req([...pub, `Transfer-Encoding: ${coding}`], `2${CRLF}42${CRLF}0${CRLF}${CRLF}`));
        assert.equal(ok.answers[0]?.status, 200, coding);
      }
      assert.equal(await lastSeq('a'), before + 2);
    });

    it('a request smuggled behind ambiguous framing is never served', async () => {
      const smuggled = req(['POST /v1/publish/smuggled HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 1'], '1');
      const pub = ['POST /v1/publish/a HTTP/1.1', 'Host: x', 'Content-Type: application/json'];
      const attempts = [
        req([...pub, 'Content-Length: 1', `Content-Length: ${1 + smuggled.length}`], `1${smuggled}`),
        req([...pub, 'Transfer-Encoding: chunked, identity'], `1${CRLF}1${CRLF}0${CRLF}${CRLF}${smuggled}`),
      ];
      const before = await lastSeq('a');
      for (const bytes of attempts) {
        const x = await exchange(s.port, bytes, { waitForClose: true });
        assert.ok(x.closed);
        for (const a of x.answers) assert.equal(a.status, 400, 'only the refusal, never the smuggled answer');
      }
      assert.equal(await lastSeq('smuggled'), 0, 'the smuggled publish never ran');
      assert.equal(await lastSeq('a'), before, 'the carrier was not published either');
    });

    it('what uWS v20.30 drops by itself closes the connection at once, without an answer', async () => {
      const pub = ['POST /v1/publish/a HTTP/1.1', 'Host: x', 'Content-Type: application/json'];
      const cases: [string, string][] = [
        ['Content-Length and Transfer-Encoding', req([...pub, 'Content-Length: 5', 'Transfer-Encoding: chunked'], `1${CRLF}1${CRLF}0${CRLF}${CRLF}`)],
        ['Content-Length not a number', req([...pub, 'Content-Length: 1x'], '1')],
        ['Content-Length negative', req([...pub, 'Content-Length: -1'], '1')],
        ['Content-Length as a list', req([...pub, 'Content-Length: 1, 1'], '1')],
        ['a bad chunk size', req([...pub, 'Transfer-Encoding: chunked'], `zz${CRLF}1${CRLF}0${CRLF}${CRLF}`)],
        ['an unknown method', req(['FOO /v1/poll?ch=a HTTP/1.1', 'Host: x'])],
        ['a WebDAV method', req(['PROPFIND /v1/poll?ch=a HTTP/1.1', 'Host: x'])],
        ['a lowercase method', req(['get /healthz HTTP/1.1', 'Host: x'])],
      ];
      const before = await lastSeq('a');
      for (const [what, bytes] of cases) {
        const x = await exchange(s.port, bytes, { waitForClose: true, limitMs: 3000 });
        assert.deepEqual([x.answers.length, x.rest.length, x.closed], [0, 0, true], what);
      }
      assert.equal(await lastSeq('a'), before, 'nothing was published');
    });

    it('TRACE gets a JSON 405', async () => {
      const x = await exchange(s.port, req(['TRACE /v1/poll?ch=a HTTP/1.1', 'Host: x']));
      assert.deepEqual([x.answers[0]?.status, x.answers[0]?.header('allow')], [405, 'GET']);
      assert.equal(jsonError(x.answers[0]!).error.code, 'method_not_allowed');
    });

    it('keeps serving afterwards, with no parked slot leaked', async () => {
      assert.equal(s.server.context.hub.registry.size, 0);
      const r = await poll(s.url, { ch: 'a', cursor: 'earliest' });
      assert.equal(r.status, 200);
      assert.equal((await publish(s.url, 'a', 'after')).status, 200);
    });
  });
});
