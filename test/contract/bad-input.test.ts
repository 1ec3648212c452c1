/**
 * Bad input: every case gets the right status and a JSON error with a code and a message,
 * and the server keeps serving (and leaks no parked slot) after all of them.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pack } from 'msgpackr';
import { eachProfile } from '../helpers/profiles.js';
import { type TestServer, http, poll, publish, startTestServer } from '../helpers/server.js';

type Case = [what: string, status: number, code: string, request: (base: string) => Promise<Response>];

const json = 'application/json';
const mp = 'application/msgpack';
const post = (path: string, body: BodyInit, type?: string, headers: Record<string, string> = {}) => (base: string) =>
  fetch(`${base}${path}`, { method: 'POST', body, headers: type ? { 'content-type': type, ...headers } : headers });
const get = (path: string, init: RequestInit = {}) => (base: string) => fetch(`${base}${path}`, init);
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
  ['cursor truncated', 400, 'bad_cursor', (b) => fetch(`${b}/v1/poll?ch=a&cursor=${cursor.slice(0, -3)}`)],
  ['cursor with one character changed', 400, 'bad_cursor', (b) => fetch(`${b}/v1/poll?ch=a&cursor=${cursor.slice(0, 10)}${cursor[10] === 'A' ? 'B' : 'A'}${cursor.slice(11)}`)],
  ['cursor given twice', 400, 'bad_request', (b) => fetch(`${b}/v1/poll?ch=a&cursor=${cursor}&cursor=${cursor}`)],
  ['empty cursor', 400, 'bad_cursor', get('/v1/poll?ch=a&cursor=')],
  ['timeout not a number', 400, 'bad_request', get('/v1/poll?ch=a&timeout=soon')],
  ['timeout negative', 400, 'bad_request', get('/v1/poll?ch=a&timeout=-5')],
  ['timeout fractional', 400, 'bad_request', get('/v1/poll?ch=a&timeout=1.5')],
  ['max zero', 400, 'bad_request', get('/v1/poll?ch=a&max=0')],
  ['max not a number', 400, 'bad_request', get('/v1/poll?ch=a&max=lots')],
  ['malformed %-escape', 400, 'bad_request', get('/v1/poll?ch=%E0%A4%A')],
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
  ['MessagePack nested 101 deep', 400, 'unsupported_value', post('/v1/publish/a', nestedMp(101), mp)],
  ['MessagePack bin', 400, 'unsupported_value', post('/v1/publish/a', pack(Buffer.from([1, 2, 3])), mp)],
  ['MessagePack timestamp ext', 400, 'unsupported_value', post('/v1/publish/a', pack(new Date(0)), mp)],
  ['MessagePack unknown ext', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([0xd4, 0x05, 0x01]), mp)],
  ['MessagePack integer map key', 400, 'unsupported_value', post('/v1/publish/a', pack(new Map([[1, 'a']])), mp)],
  ['MessagePack uint64 beyond 2^53', 400, 'unsupported_value', post('/v1/publish/a', new Uint8Array([0xcf, 0xff, 0, 0, 0, 0, 0, 0, 1]), mp)],
  ['MessagePack float NaN', 400, 'unsupported_value', post('/v1/publish/a', new Uint8Array([0xca, 0x7f, 0xc0, 0, 0]), mp)],
  ['MessagePack truncated', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([0x92, 0x01]), mp)],
  ['MessagePack with trailing bytes', 400, 'bad_msgpack', post('/v1/publish/a', new Uint8Array([0x01, 0x02]), mp)],
  ['MessagePack reserved byte 0xc1', 400, 'unsupported_value', post('/v1/publish/a', new Uint8Array([0xc1]), mp)],
  ['body over LP_MAX_BODY_BYTES', 413, 'body_too_large', post('/v1/publish/a', `"${'x'.repeat(300_000)}"`, json)],
  ['chunked body over the limit', 413, 'body_too_large', (b) =>
    fetch(`${b}/v1/publish/a`, {
      method: 'POST',
      headers: { 'content-type': json },
      body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(`"${'x'.repeat(300_000)}"`)); c.close(); } }),
      duplex: 'half',
    } as RequestInit)],
  ['bad channel in the publish path', 400, 'bad_channel', post('/v1/publish/bad*name', '1', json)],
  ['publish path with a slash', 400, 'bad_channel', post('/v1/publish/a/b', '1', json)],
  ['publish to an empty channel', 400, 'bad_channel', post('/v1/publish/', '1', json)],
  ['Idempotency-Key of 201 characters', 400, 'bad_request', post('/v1/publish/a', '1', json, { 'idempotency-key': 'k'.repeat(201) })],
  // POST /v1/publish (batch)
  ['batch that is an array', 400, 'bad_request', post('/v1/publish', '[]', json)],
  ['batch without messages', 400, 'bad_request', post('/v1/publish', '{"items":[]}', json)],
  ['batch item without data', 400, 'bad_request', post('/v1/publish', '{"messages":[{"ch":"a"}]}', json)],
  ['batch item with a numeric ch', 400, 'bad_channel', post('/v1/publish', '{"messages":[{"ch":5,"data":1}]}', json)],
  ['batch item with a non-string id', 400, 'bad_request', post('/v1/publish', '{"messages":[{"ch":"a","data":1,"id":7}]}', json)],
  ['batch as text/plain', 415, 'unsupported_media_type', post('/v1/publish', '{"messages":[]}', 'text/plain')],
  // routes and methods
  ['unknown path', 404, 'not_found', get('/nope')],
  ['unknown versioned path', 404, 'not_found', get('/v2/poll?ch=a')],
  ['PUT on /v1/poll', 405, 'method_not_allowed', get('/v1/poll?ch=a', { method: 'PUT' })],
  ['GET on /v1/publish/a', 405, 'method_not_allowed', get('/v1/publish/a')],
  ['PATCH on /v1/channels/a', 405, 'method_not_allowed', get('/v1/channels/a', { method: 'PATCH' })],
  ['POST on /poll', 405, 'method_not_allowed', get('/poll?clientId=a', { method: 'POST' })],
  ['GET on /push', 405, 'method_not_allowed', get('/push')],
  ['bad channel in the admin path', 400, 'bad_channel', get('/v1/channels/bad!name')],
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
      assert.ok(CASES.length >= 40);
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
