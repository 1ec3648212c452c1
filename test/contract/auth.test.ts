/**
 * Subscriber tokens (jose: HS*, RS/PS/ES/EdDSA from a PEM file, a JWKS URL with rotation,
 * aud/iss, strict spelling, the verified-token cache), publisher auth (key, loopback only,
 * proxy headers), CORS. Tokens are minted with jose, as the README shows.
 */

import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type JWK, SignJWT, exportJWK, generateKeyPair } from 'jose';
import { TokenVerifier, createTokenVerifier } from '../../src/auth/jwt.js';
import { isLoopback } from '../../src/auth/publisher.js';
import { loadConfig } from '../../src/config.js';
import { freePort } from '../helpers/redis.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

const SECRET = 'test-secret-0123456789-abcdefghij';
const KEY = 'publish-key-abcdefgh';
const now = () => Math.floor(Date.now() / 1000);
const hour = () => now() + 3600;
const hs = new TextEncoder().encode(SECRET);
const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

type Key = Parameters<SignJWT['sign']>[0];
function mint(key: Key, alg: string, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, ...header }).sign(key);
}
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** HS256 by hand, for headers jose refuses to produce (an unknown `crit`). */
function handMint(header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}

/** 200 or the error code of a poll that answers at once (the channel has a message). */
async function outcome(base: string, ch: string, token: string): Promise<string> {
  const r = await poll(base, { ch, cursor: 'earliest', timeout: 1000 }, bearer(token));
  return r.status === 200 ? '200' : `${r.status} ${r.body.error.code}: ${r.body.error.message}`;
}

const dir = mkdtempSync(join(tmpdir(), 'hf-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('subscriber auth: LP_JWT_SECRET (HS256/384/512)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ LP_JWT_SECRET: SECRET, LP_PUBLIC_PREFIXES: 'public:,news.', LP_JWT_LEEWAY_S: '5' });
    await publish(s.url, 'user:42', 'hello');
  });
  after(() => s.close());

  it('a granted channel polls with the header or ?token=, exact names and prefix* patterns, in HS256/384/512', async () => {
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const token = await mint(hs, alg, { channels: ['user:42', 'room:*'], exp: hour() });
      const r = await poll(s.url, { ch: ['user:42', 'room:lobby'], cursor: 'earliest' }, bearer(token));
      assert.equal(r.status, 200, alg);
      assert.deepEqual(r.body.messages.map((m) => m.data), ['hello']);
      assert.equal((await http(`${s.url}/v1/poll?ch=user:42&cursor=earliest&token=${token}`)).status, 200, `${alg} ?token=`);
    }
  });

  it('the header wins over ?token=', async () => {
    const good = await mint(hs, 'HS256', { channels: ['user:1'], exp: hour() });
    const other = await mint(hs, 'HS256', { channels: ['user:2'], exp: hour() });
    assert.equal((await http(`${s.url}/v1/poll?ch=user:1&cursor=earliest&timeout=1000&token=${other}`, bearer(good))).status, 200);
    assert.equal((await http(`${s.url}/v1/poll?ch=user:1&cursor=earliest&timeout=1000&token=${good}`, bearer(other))).status, 403);
  });

  it('public channels need no token, and a poll of only public channels ignores a bad one', async () => {
    await publish(s.url, 'public:x', 1);
    assert.equal((await poll(s.url, { ch: ['public:x', 'news.today'], cursor: 'earliest' })).status, 200);
    assert.equal((await poll(s.url, { ch: 'public:x', cursor: 'earliest' }, bearer('garbage'))).status, 200);
  });

  it('missing, malformed, forged, expired, wrongly typed or claim-less tokens get 401 with a message that says why', async () => {
    const good = await mint(hs, 'HS256', { channels: ['user:42'], exp: hour() });
    const [h, p, sig] = good.split('.') as [string, string, string];
    // A 32-byte HMAC is 43 characters, the last carrying 2 unused bits: flip one, same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const nonCanonical = sig.slice(0, -1) + alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1];
    assert.deepEqual(Buffer.from(nonCanonical, 'base64url'), Buffer.from(sig, 'base64url'));
    const cases: [string, RequestInit, RegExp][] = [
      ['missing', {}, /need a token/],
      ['not a jwt', bearer('abc'), /not a JWT/],
      ['garbage parts', bearer('a.b.c'), /header/],
      ['forged', bearer(await mint(new TextEncoder().encode('another-secret-000000000000000'), 'HS256', { channels: ['user:42'], exp: hour() })), /signature is invalid/],
      ['expired', bearer(await mint(hs, 'HS256', { channels: ['user:42'], exp: now() - 60 })), /expired/],
      ['no exp', bearer(await mint(hs, 'HS256', { channels: ['user:42'] })), /"exp"/],
      ['exp as a string', bearer(await mint(hs, 'HS256', { channels: ['user:42'], exp: String(hour()) })), /exp/],
      ['nbf as a string', bearer(await mint(hs, 'HS256', { channels: ['user:42'], exp: hour(), nbf: '0' })), /nbf/],
      ['nbf in the future', bearer(await mint(hs, 'HS256', { channels: ['user:42'], exp: hour(), nbf: now() + 600 })), /not valid yet/],
      ['no channels', bearer(await mint(hs, 'HS256', { exp: hour() })), /channels/],
      ['channels not strings', bearer(await mint(hs, 'HS256', { channels: [1], exp: hour() })), /channels/],
      ['alg none', bearer(`${b64({ alg: 'none' })}.${p}.`), /alg "none" is not accepted/],
      ['crit header', bearer(handMint({ alg: 'HS256', crit: ['x-ext'], 'x-ext': 1 }, { channels: ['user:42'], exp: hour() })), /crit/],
      ['junk !! after the signature', bearer(`${good}!!`), /canonical base64url/],
      ['junk ~~~~ after the signature', bearer(`${good}~~~~`), /canonical base64url/],
      ['padding after the signature', bearer(`${good}=`), /canonical base64url/],
      ['non-canonical last character', bearer(`${h}.${p}.${nonCanonical}`), /signature is not canonical base64url/],
      ['a fourth part', bearer(`${good}.x`), /not a JWT/],
      ['basic auth', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }, /need a token/],
    ];
    assert.equal(await outcome(s.url, 'user:42', good), '200', 'the unaltered token works');
    for (const [what, init, message] of cases) {
      const r = await poll(s.url, { ch: 'user:42', cursor: 'earliest', timeout: 1000 }, init);
      assert.equal(r.status, 401, what);
      assert.equal(r.body.error.code, 'unauthorized', what);
      assert.match(r.body.error.message, message, what);
    }
  });

  it('a long token is accepted: no hidden length limit below the request head limit', async () => {
    const token = await mint(hs, 'HS512', { channels: ['user:42', ...Array.from({ length: 400 }, (_, i) => `room-${i}-${'x'.repeat(20)}`)], exp: hour() });
    assert.ok(token.length > 16_000, `token is ${token.length} characters`);
    assert.equal(await outcome(s.url, 'user:42', token), '200');
  });

  it('within the leeway an expired token still works', async () => {
    const t = await mint(hs, 'HS256', { channels: ['user:7'], exp: now() - 2 });
    assert.equal((await poll(s.url, { ch: 'user:7', cursor: 'earliest', timeout: 1000 }, bearer(t))).status, 200);
  });

  it('any channel not granted is 403 for the whole poll, first use (verified) and re-poll (cached) alike', async () => {
    const token = await mint(hs, 'HS256', { channels: ['user:42'], exp: hour() });
    for (const attempt of ['first', 'cached']) {
      const r = await poll(s.url, { ch: ['user:42', 'user:43'] }, bearer(token));
      assert.equal(r.status, 403, attempt);
      assert.equal(r.body.error.code, 'forbidden');
      assert.match(r.body.error.message, /user:43/);
    }
  });

  it('a poll whose token is verified on this request parks, and gets the next message', async () => {
    const ch = `fresh-${process.pid}`;
    const token = await mint(hs, 'HS384', { channels: [ch], exp: hour() });
    const waiting = poll(s.url, { ch, timeout: 10_000 }, bearer(token));
    await until(() => s.server.context.hub.registry.countOn(ch) === 1, 'parked after the token was verified');
    await publish(s.url, ch, 'after');
    assert.deepEqual((await waiting).body.messages.map((m) => m.data), ['after']);
  });

  it('bad input is answered (400) before auth', async () => {
    assert.equal((await poll(s.url, { ch: 'bad channel!' })).status, 400);
    assert.equal((await poll(s.url, { ch: 'user:42', cursor: 'nope' })).status, 400);
  });

  it('seed /poll needs a token granting the clientId', async () => {
    const token = await mint(hs, 'HS256', { channels: ['client-*'], exp: hour() });
    assert.equal((await http(`${s.url}/poll?clientId=client-1&timeout=1000`)).status, 401);
    assert.equal((await http(`${s.url}/poll?clientId=other&timeout=1000`, bearer(token))).status, 403);
    const ok = await http(`${s.url}/poll?clientId=client-1&timeout=1000`, bearer(token));
    assert.deepEqual([ok.status, ok.body], [200, { status: 'timeout' }]);
  });
});

describe('subscriber auth: LP_JWT_PUBLIC_KEY (RS, PS, ES, EdDSA)', () => {
  const pairs = {
    rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    ec: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    ed: generateKeyPairSync('ed25519'),
  };
  const pemFile = (name: string, pem: string) => {
    const file = join(dir, `${name}.pem`);
    writeFileSync(file, pem);
    return file;
  };
  const publicPem = (k: keyof typeof pairs) => pemFile(k, pairs[k].publicKey.export({ type: 'spki', format: 'pem' }) as string);
  const servers = new Map<string, TestServer>();
  before(async () => {
    for (const k of Object.keys(pairs) as (keyof typeof pairs)[]) {
      const s = await startTestServer({ LP_JWT_PUBLIC_KEY: publicPem(k), LP_JWT_AUDIENCE: 'rt.example', LP_JWT_ISSUER: 'https://id.example' });
      await publish(s.url, 'user:1', 'x');
      servers.set(k, s);
    }
  });
  after(async () => {
    for (const s of servers.values()) await s.close();
  });
  const claims = { channels: ['user:1'], exp: hour(), aud: 'rt.example', iss: 'https://id.example' };

  it('each key verifies the algorithms of its type, and only those', async () => {
    const table: [keyof typeof pairs, string[], string[]][] = [
      ['rsa', ['RS256', 'RS384', 'RS512', 'PS256', 'PS512'], ['ES256', 'EdDSA']],
      ['ec', ['ES256'], ['ES384', 'RS256']],
      ['ed', ['EdDSA'], ['ES256']],
    ];
    for (const [k, accepted, refused] of table) {
      const s = servers.get(k)!;
      for (const alg of accepted) assert.equal(await outcome(s.url, 'user:1', await mint(pairs[k].privateKey, alg, claims)), '200', `${k} ${alg}`);
      for (const alg of refused) {
        // Signed correctly by a key of the right type for `alg`, which this server does not hold.
        const other = alg.startsWith('RS') ? pairs.rsa : alg.startsWith('ES') ? generateKeyPairSync('ec', { namedCurve: alg === 'ES384' ? 'P-384' : 'P-256' }) : pairs.ed;
        assert.match(await outcome(s.url, 'user:1', await mint(other.privateKey, alg, claims)), /^401 unauthorized: token alg .* not accepted/, `${k} refuses ${alg}`);
      }
    }
  });

  it('a token signed by another key of the same type, or HS256 with the public PEM as secret, is 401', async () => {
    const s = servers.get('rsa')!;
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
    assert.match(await outcome(s.url, 'user:1', await mint(stranger.privateKey, 'RS256', claims)), /^401 .*signature is invalid/);
    const pem = new TextEncoder().encode(pairs.rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    assert.match(await outcome(s.url, 'user:1', await mint(pem, 'HS256', claims)), /^401 .*HS256.*not accepted/);
  });

  it('LP_JWT_AUDIENCE and LP_JWT_ISSUER must match aud and iss', async () => {
    const s = servers.get('ec')!;
    const k = pairs.ec.privateKey;
    assert.equal(await outcome(s.url, 'user:1', await mint(k, 'ES256', { ...claims, aud: ['other', 'rt.example'] })), '200', 'aud as a list containing ours');
    assert.match(await outcome(s.url, 'user:1', await mint(k, 'ES256', { ...claims, aud: 'other' })), /^401 .*"aud".*LP_JWT_AUDIENCE/);
    assert.match(await outcome(s.url, 'user:1', await mint(k, 'ES256', { ...claims, iss: 'https://evil.example' })), /^401 .*"iss".*LP_JWT_ISSUER/);
    const { aud: _a, ...noAud } = claims;
    assert.match(await outcome(s.url, 'user:1', await mint(k, 'ES256', noAud)), /^401 .*no "aud" claim/);
  });

  it('an unusable key file stops the start with a message naming LP_JWT_PUBLIC_KEY', () => {
    const config = (file: string) => loadConfig({ LP_JWT_PUBLIC_KEY: file, LOG_LEVEL: 'silent' });
    const privatePem = pemFile('private', pairs.rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const small = pemFile('small', generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const junk = pemFile('junk', 'not a key');
    for (const [file, why] of [[privatePem, /private key/], [small, /1024 bits/], [junk, /not a PEM/], [join(dir, 'missing.pem'), /cannot read/]] as const) {
      assert.throws(() => createTokenVerifier(config(file)), (err: Error) => /LP_JWT_PUBLIC_KEY=/.test(err.message) && why.test(err.message));
    }
  });
});

/** A JWKS document on a local HTTP server: its keys can be rotated, held back or taken down. */
class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  hold: Promise<void> | undefined;
  private server: Server | undefined;
  url = '';
  async start(): Promise<void> {
    this.server = createServer(async (_req, res) => {
      this.fetches++;
      if (this.hold) await this.hold;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server!.address() as net.AddressInfo).port}/jwks.json`;
  }
  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

async function signer(kid: string, alg = 'RS256') {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { jwk, sign: (claims: Record<string, unknown>) => mint(privateKey, alg, claims, { kid }) };
}

describe('subscriber auth: LP_JWT_JWKS_URL', () => {
  const jwks = new JwksServer();
  let s: TestServer;
  let a: Awaited<ReturnType<typeof signer>>;
  let b: Awaited<ReturnType<typeof signer>>;
  before(async () => {
    [a, b] = await Promise.all([signer('key-a', 'RS256'), signer('key-b', 'ES256')]);
    await jwks.start();
    jwks.keys = [a.jwk];
    s = await startTestServer({ LP_JWT_JWKS_URL: jwks.url });
    await publish(s.url, 'user:1', 'x');
  });
  after(async () => {
    await s.close();
    await jwks.stop();
  });
  const claims = () => ({ channels: ['user:1'], exp: hour() });

  it('fetches the JWKS at start-up and verifies tokens by kid; a re-poll does not verify again', async () => {
    await until(() => jwks.fetches >= 1, 'the start-up fetch');
    const token = await a.sign(claims());
    assert.equal(await outcome(s.url, 'user:1', token), '200');
    assert.ok(s.server.context.tokens!.cached(token), 'the verified token is cached with its grants');
    assert.equal(await outcome(s.url, 'user:1', token), '200');
    assert.equal(jwks.fetches, 1, 'no fetch for a known kid');
  });

  it('a rotated-in key (new kid) is picked up without a restart; made-up kids cost at most one fetch per cooldown', async () => {
    const token = await b.sign(claims());
    const first = await outcome(s.url, 'user:1', token);
    assert.ok(first === '200' || /no key in LP_JWT_JWKS_URL matches/.test(first), first);
    jwks.keys = [a.jwk, b.jwk]; // the identity provider publishes the new key
    await until(async () => (await outcome(s.url, 'user:1', token)) === '200', 'the new kid accepted', 15_000);
    const fetched = jwks.fetches;
    const ghosts = await Promise.all(Array.from({ length: 20 }, async (_, i) => outcome(s.url, 'user:1', await mint((await generateKeyPair('RS256')).privateKey, 'RS256', claims(), { kid: `ghost-${i}` }))));
    for (const g of ghosts) assert.match(g, /^401 unauthorized: no key in LP_JWT_JWKS_URL matches the token \(kid "ghost-/);
    assert.ok(jwks.fetches - fetched <= 1, `${jwks.fetches - fetched} fetches for 20 unknown kids`);
  });

  it('a JWKS that cannot be fetched is 503 auth_unavailable with Retry-After, not a 401', async () => {
    const unreachable = await startTestServer({ LP_JWT_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks.json` });
    try {
      const r = await poll(unreachable.url, { ch: 'user:1', timeout: 1000 }, bearer(await a.sign(claims())));
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'auth_unavailable');
      assert.match(r.body.error.message, /LP_JWT_JWKS_URL/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    } finally {
      await unreachable.close();
    }
  });
});

describe('a token verification in flight when its client leaves', () => {
  const jwks = new JwksServer();
  let s: TestServer;
  let release!: () => void;
  before(async () => {
    await jwks.start();
    // The JWKS answers only when released: the start-up fetch, and every verification, wait.
    jwks.hold = new Promise<void>((r) => (release = r));
    s = await startTestServer({ LP_JWT_JWKS_URL: jwks.url });
  });
  after(async () => {
    release();
    await s.close();
    await jwks.stop();
  });

  it('nothing parks, nothing breaks, and the token works once the JWKS answers', async () => {
    const k = await signer('key-slow', 'EdDSA');
    jwks.keys = [k.jwk];
    const token = await k.sign({ channels: ['slow:1'], exp: hour() });
    await until(() => jwks.fetches === 1, 'the start-up fetch is waiting');
    const sock = net.connect(s.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.on('error', () => undefined);
    sock.write(`GET /v1/poll?ch=slow:1&timeout=30000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    // A round trip on another connection: the server has read the poll (and is verifying).
    assert.equal((await http(`${s.url}/healthz`)).status, 200);
    sock.destroy();
    assert.equal((await http(`${s.url}/healthz`)).status, 200, 'the abort is seen before the JWKS answers');
    release();
    jwks.hold = undefined;
    await until(() => s.server.context.tokens!.cached(token) !== undefined, 'the verification finished');
    assert.equal(s.server.context.hub.registry.countOn('slow:1'), 0, 'the abandoned poll did not park');
    const metrics = ((await http(`${s.url}/metrics`)).body as Buffer).toString();
    assert.ok(!metrics.includes('reason="internal"'), 'no internal error');
    const again = poll(s.url, { ch: 'slow:1', timeout: 10_000 }, bearer(token));
    await until(() => s.server.context.hub.registry.countOn('slow:1') === 1, 'the same token parks now');
    await publish(s.url, 'slow:1', 'late');
    assert.deepEqual((await again).body.messages.map((m) => m.data), ['late']);
  });
});

describe('the verified-token cache', () => {
  it('keeps grants until exp + leeway, then says expired; keyed by the exact token text', async () => {
    let clock = Date.now();
    const v = new TokenVerifier({ secret: SECRET }, { leewayS: 10, nowMs: () => clock });
    const token = await mint(hs, 'HS256', { channels: ['a', 'b:*'], exp: Math.floor(clock / 1000) + 60 });
    assert.equal(v.cached(token), undefined, 'a miss before the first verification');
    const grants = await v.verify(token);
    assert.ok(grants.allows('b:7') && !grants.allows('c'));
    assert.equal(v.cached(token), grants, 'a hit afterwards: same compiled grants');
    assert.equal(v.cached(`${token} `), undefined, 'another spelling is another key');
    clock += 69_000;
    assert.equal(v.cached(token), grants, 'inside the leeway');
    clock += 2_000;
    assert.throws(() => v.cached(token), /expired/);
    assert.equal(v.cached(token), undefined, 'forgotten once expired');
  });

  it('one verification for concurrent first uses of a token', async () => {
    const v = new TokenVerifier(SECRET, 0);
    const token = await mint(hs, 'HS256', { channels: ['a'], exp: hour() });
    const [g1, g2] = await Promise.all([v.verify(token), v.verify(token)]);
    assert.equal(g1, g2);
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

  it('without a key: loopback only, and never with any proxy header (403 naming it)', async () => {
    // Direct on purpose: this is the rule for clients that reach Holdfast without a proxy.
    const s = await startTestServer({ VIA: 'direct' });
    try {
      assert.equal((await publish(s.url, 'c', 1)).status, 200);
      const headers: Record<string, string> = {
        forwarded: 'for=203.0.113.9',
        'x-forwarded-for': '203.0.113.9',
        'x-forwarded-host': 'rt.example.com',
        'x-forwarded-proto': 'https',
        'x-forwarded-port': '443',
        'x-real-ip': '203.0.113.9',
        via: '1.1 proxy',
        'true-client-ip': '203.0.113.9',
        'cf-connecting-ip': '203.0.113.9',
        'fastly-client-ip': '203.0.113.9',
        'x-envoy-external-address': '203.0.113.9',
        'cdn-loop': 'cloudflare',
      };
      for (const [name, value] of Object.entries(headers)) {
        const r = await publish(s.url, 'c', 1, { [name]: value });
        assert.equal(r.status, 403, name);
        assert.match(r.body.error.message, new RegExp(`LP_PUBLISH_KEY.*${name}`), name);
      }
      for (const call of [
        () => http(`${s.url}/v1/channels/c`, { headers: { via: '1.1 lb' } }),
        () => http(`${s.url}/v1/channels/c`, { method: 'DELETE', headers: { 'x-real-ip': '1.2.3.4' } }),
        () => http(`${s.url}/push`, { method: 'POST', json: { clientId: 'a', message: 1 }, headers: { 'x-forwarded-proto': 'https' } }),
        () => http(`${s.url}/disconnect?clientId=a`, { method: 'DELETE', headers: { forwarded: 'proto=https' } }),
      ]) assert.equal((await call()).status, 403);
      assert.equal((await http(`${s.url}/v1/channels/c`)).body.lastSeq, 1, 'only the direct publish went through');
    } finally {
      await s.close();
    }
  });

  it('without a key: a PROXY protocol connection is refused too', async () => {
    const s = await startTestServer({ VIA: 'direct' });
    try {
      // PROXY v2, TCP4, from 203.0.113.9: what HAProxy or an AWS NLB sends ahead of the request.
      const preamble = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 203, 0, 113, 9, 127, 0, 0, 1, 0x30, 0x39, 0x0b, 0xb8]);
      const answer = await new Promise<string>((resolve) => {
        const sock = net.connect(s.port, '127.0.0.1');
        let out = '';
        sock.on('data', (d) => {
          out += d;
          if (out.includes('}}')) sock.end();
        });
        sock.on('close', () => resolve(out));
        sock.write(Buffer.concat([preamble, Buffer.from('POST /v1/publish/c HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n1')]));
      });
      assert.match(answer, /^HTTP\/1.1 403 /);
      assert.match(answer, /PROXY protocol/);
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
    assert.equal(pre.body.error.code, 'forbidden');
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
