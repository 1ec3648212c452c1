/**
 * Answer compression (src/compress): poll answers of at least LP_COMPRESS_MIN_BYTES go out
 * compressed with the coding the client accepts (brotli preferred, then gzip), once per shared
 * body; large ones are compressed on the pool. Real server, real HTTP (node:http, so the test
 * sees the bytes on the wire and decompresses them itself).
 */

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { preferredEncoding } from '../../src/compress/accept.js';
import { AnswerCompressor } from '../../src/compress/compressor.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: Buffer;
}

/** A GET with the given headers; the body exactly as it came over the wire. */
function get(url: string, headers: Record<string, string>): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, bytes: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function decoded(r: Raw): unknown {
  const coding = r.headers['content-encoding'];
  const plain = coding === 'br' ? brotliDecompressSync(r.bytes) : coding === 'gzip' ? gunzipSync(r.bytes) : r.bytes;
  return JSON.parse(plain.toString());
}

/** ~2 KiB JSON values that compress like real ones (words, ids, numbers). */
function payload(i: number) {
  const words = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa'.split(' ');
  let text = '';
  for (let k = 0; text.length < 1800; k++) text += words[(i * 7 + k * 13) % words.length] + (k % 5 === 0 ? ` ${i * 31 + k} ` : ' ');
  return { id: `m-${i}`, n: i, text };
}

describe('accept-encoding', () => {
  it('prefers br, then gzip; q=0 refuses; * stands for the rest', () => {
    assert.equal(preferredEncoding(''), undefined);
    assert.equal(preferredEncoding('gzip, deflate, br'), 'br');
    assert.equal(preferredEncoding('gzip'), 'gzip');
    assert.equal(preferredEncoding('br;q=0, gzip'), 'gzip');
    assert.equal(preferredEncoding('gzip;q=1.0, br;q=0.5'), 'gzip');
    assert.equal(preferredEncoding('identity'), undefined);
    assert.equal(preferredEncoding('*'), 'br');
    assert.equal(preferredEncoding('br;q=0, *;q=0.1'), 'gzip');
    assert.equal(preferredEncoding('gzip;q=0, br;q=0'), undefined);
    assert.equal(preferredEncoding('X-GZIP'), 'gzip');
  });

  it('a shared body is compressed once per coding, from its second answer on', () => {
    const c = new AnswerCompressor({ compressMinBytes: 1024, compressPoolBytes: 1 << 30, compressThreads: 0 });
    const body = Buffer.from(JSON.stringify(Array.from({ length: 50 }, (_, i) => payload(i))));
    assert.equal(c.compressed(body, 'gzip'), null, 'its first answer goes out as it is (it may be the only one)');
    const a = c.compressed(body, 'gzip');
    const b = c.compressed(body, 'gzip');
    assert.ok(Buffer.isBuffer(a));
    assert.equal(a, b, 'the same compressed bytes');
    assert.equal(c.counts.inline, 1);
    assert.ok(Buffer.isBuffer(c.compressed(body, 'br')));
    assert.equal(c.counts.inline, 2);
    const small = Buffer.from('{"small":true}');
    c.compressed(small, 'gzip');
    assert.equal(c.compressed(small, 'gzip'), null, 'under LP_COMPRESS_MIN_BYTES');
  });

  it('a large body goes to the pool at its first answer', async () => {
    const c = new AnswerCompressor({ compressMinBytes: 1024, compressPoolBytes: 4096, compressThreads: 1 });
    const body = Buffer.from(JSON.stringify(Array.from({ length: 50 }, (_, i) => payload(i))));
    const z = c.compressed(body, 'br');
    assert.ok(z instanceof Promise);
    assert.deepEqual(JSON.parse(brotliDecompressSync((await z)!).toString()), JSON.parse(body.toString()));
    assert.equal(c.counts.pool, 1);
    assert.ok(Buffer.isBuffer(c.compressed(body, 'br')), 'once made, at once');
  });
});

describe('compressed poll answers', () => {
  let s: TestServer;
  let pooled: TestServer;
  const ch = `z-${process.pid}`;
  before(async () => {
    s = await startTestServer({ VIA: 'direct', LP_COMPRESS_MIN_BYTES: '4096', LP_COMPRESS_THREADS: '0' });
    pooled = await startTestServer({ VIA: 'direct', LP_COMPRESS_MIN_BYTES: '4096', LP_COMPRESS_POOL_BYTES: '16384', LP_COMPRESS_THREADS: '1' });
    for (const server of [s, pooled]) for (let i = 0; i < 100; i++) assert.equal((await publish(server.url, ch, payload(i))).status, 200);
  });
  after(async () => {
    await s?.close();
    await pooled?.close();
  });

  it('a catch-up answer goes out compressed with the coding accepted, and reads the same', async () => {
    const url = `${s.url}/v1/poll?ch=${ch}&cursor=earliest`;
    const plain = await get(url, {});
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.match(String(plain.headers.vary), /Accept-Encoding/);
    for (const [accept, coding] of [['gzip', 'gzip'], ['gzip, deflate, br', 'br'], ['br;q=0, gzip', 'gzip']] as const) {
      // Pollers from one cursor share one body: compressed from its second answer on.
      for (let i = 0; i < 2; i++) await get(url, { 'accept-encoding': accept });
      const z = await get(url, { 'accept-encoding': accept });
      assert.equal(z.status, 200);
      assert.equal(z.headers['content-encoding'], coding, accept);
      assert.match(String(z.headers.vary), /Accept-Encoding/);
      assert.equal(z.headers['cache-control'], 'no-store');
      assert.ok(z.bytes.length < plain.bytes.length / 2, `${coding}: ${z.bytes.length} of ${plain.bytes.length} bytes`);
      assert.deepEqual(decoded(z), decoded(plain));
    }
    // The answer is documented (the OpenAPI check runs on every http() answer).
    const checked = await http(url, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(checked.status, 200);
    assert.equal(checked.body.messages.length, (decoded(plain) as { messages: unknown[] }).messages.length);
  });

  it('small answers and MessagePack answers stay readable; Accept-Encoding identity gets none', async () => {
    const small = await get(`${s.url}/v1/poll?ch=${ch}&cursor=earliest&max=1`, { 'accept-encoding': 'gzip' });
    for (let i = 0; i < 2; i++) await get(`${s.url}/v1/poll?ch=${ch}&cursor=earliest`, { 'accept-encoding': 'br', accept: 'application/msgpack' });
    assert.equal(small.headers['content-encoding'], undefined, 'under LP_COMPRESS_MIN_BYTES');
    assert.equal((decoded(small) as { messages: unknown[] }).messages.length, 1);
    const none = await get(`${s.url}/v1/poll?ch=${ch}&cursor=earliest`, { 'accept-encoding': 'identity' });
    assert.equal(none.headers['content-encoding'], undefined);
    const mp = await get(`${s.url}/v1/poll?ch=${ch}&cursor=earliest`, { 'accept-encoding': 'br', accept: 'application/msgpack' });
    assert.equal(mp.headers['content-type'], 'application/msgpack');
    assert.equal(mp.headers['content-encoding'], 'br');
    assert.ok(brotliDecompressSync(mp.bytes).length > mp.bytes.length);
  });

  it('a body only one poll gets goes out as it is below LP_COMPRESS_POOL_BYTES', async () => {
    const own = `${ch}-own`;
    for (let i = 0; i < 10; i++) await publish(s.url, own, payload(i));
    const z = await get(`${s.url}/v1/poll?ch=${own}&cursor=earliest`, { 'accept-encoding': 'gzip' });
    assert.equal(z.headers['content-encoding'], undefined);
    assert.match(String(z.headers.vary), /Accept-Encoding/);
  });

  it('large answers are compressed on the pool and arrive whole', async () => {
    const url = `${pooled.url}/v1/poll?ch=${ch}&cursor=earliest`;
    const plain = decoded(await get(url, {}));
    const answers = await Promise.all(['gzip', 'br', 'gzip', 'br'].map((a) => get(url, { 'accept-encoding': a })));
    for (const z of answers) {
      assert.ok(z.headers['content-encoding'] === 'gzip' || z.headers['content-encoding'] === 'br');
      assert.deepEqual(decoded(z), plain);
    }
  });

  it('a fan-out of a large message reaches compressed and plain pollers alike', async () => {
    const live = `${ch}-live`;
    const waiting = [
      get(`${pooled.url}/v1/poll?ch=${live}&timeout=10000`, { 'accept-encoding': 'gzip' }),
      get(`${pooled.url}/v1/poll?ch=${live}&timeout=10000`, { 'accept-encoding': 'br' }),
      get(`${pooled.url}/v1/poll?ch=${live}&timeout=10000`, {}),
      get(`${s.url}/v1/poll?ch=${live}&timeout=10000`, { 'accept-encoding': 'gzip' }),
    ];
    await until(() => pooled.server.context.hub.parkedCount === 3 && s.server.context.hub.parkedCount === 1, 'parked');
    const big = { items: Array.from({ length: 20 }, (_, i) => payload(i)) };
    await publish(pooled.url, live, big);
    await publish(s.url, live, big);
    const answers = await Promise.all(waiting);
    // The pool takes this large body from its first answer; the inline server compresses a
    // body from its second (its only poll here gets it as it is).
    assert.deepEqual(answers.map((a) => a.headers['content-encoding']), ['gzip', 'br', undefined, undefined]);
    for (const a of answers) assert.deepEqual((decoded(a) as { messages: { data: unknown }[] }).messages[0]!.data, big);
    const again = await poll(pooled.url, { ch: live, cursor: 'earliest' });
    assert.equal(again.status, 200);
  });
});
