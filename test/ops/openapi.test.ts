/**
 * The OpenAPI document: served as it is in the repository, complete (every route the server
 * registers, every error code), internally sound (every $ref resolves), and its checker
 * rejects answers that break it (so the checks run on every test answer mean something).
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { OPENAPI_URL, openapi, problemsOf, schemaProblems } from '../helpers/openapi.js';
import { type TestServer, http, publish, startTestServer, until } from '../helpers/server.js';

const source = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

/** The error table of src/errors.ts: code → status. */
function errorTable(): Map<string, number> {
  const table = /const STATUS: Record<ErrorCode, number> = \{([^}]*)\}/.exec(source('src/errors.ts'))![1]!;
  return new Map([...table.matchAll(/^\s*(\w+): (\d{3}),/gm)].map((m) => [m[1]!, Number(m[2])]));
}

function resolve(pointer: string): unknown {
  return pointer.split('/').slice(1).reduce((o: any, k) => o?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], openapi);
}

function* refs(node: unknown): Generator<string> {
  if (Array.isArray(node)) for (const n of node) yield* refs(n);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') yield v;
      else yield* refs(v);
    }
  }
}

const METHODS = ['get', 'post', 'delete', 'head', 'options', 'put', 'patch'];
/** The catch-all's answers (info.description): for paths and methods the document does not list. */
const CATCH_ALL: Record<string, number[]> = { NotFound: [404], MethodNotAllowed: [405] };

describe('OpenAPI document', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  it('GET /v1/openapi.json serves the repository\'s document', async () => {
    const r = await http(`${s.url}/v1/openapi.json`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /^application\/json/);
    assert.deepEqual(r.body, openapi);
    const raw = Buffer.from(await (await fetch(`${s.url}/v1/openapi.json`)).arrayBuffer());
    assert.deepEqual(raw, readFileSync(OPENAPI_URL));
  });

  it('is OpenAPI 3.1 for this version, and every $ref resolves', () => {
    assert.equal(openapi.openapi, '3.1.0');
    assert.equal(openapi.info.version, JSON.parse(source('package.json')).version);
    assert.equal(openapi.info.license.identifier, 'MIT');
    const all = [...refs(openapi)];
    assert.ok(all.length > 50);
    for (const ref of all) {
      assert.ok(ref.startsWith('#/'), `${ref} is local`);
      assert.notEqual(resolve(ref.slice(1)), undefined, `${ref} resolves`);
    }
    const ids: string[] = [];
    for (const item of Object.values<any>(openapi.paths)) for (const m of METHODS) if (item[m]?.operationId) ids.push(item[m].operationId);
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
  });

  it('documents every route the server registers, with its methods', () => {
    const registered: [string, string][] = [];
    for (const m of source('src/http/routes.ts').matchAll(/app\.(get|post|del|head|options)\('([^']+)'/g)) registered.push([m[1] === 'del' ? 'delete' : m[1]!, m[2]!]);
    // Routes registered in a loop: `for (const [path, fn] of [['/healthz', …], …]) { app.get(path…); app.head(path…) }`.
    const loop = /for \(const \[path, fn\] of \[([^\n]*)\] as const\) \{\n((?:\s+app\.\w+\(path[^\n]*\n)+)/.exec(source('src/http/routes.ts'));
    if (loop) {
      for (const p of loop[1]!.matchAll(/\['([^']+)'/g)) for (const m of loop[2]!.matchAll(/app\.(\w+)\(path/g)) registered.push([m[1]!, p[1]!]);
    }
    for (const m of source('src/demo/serve.ts').matchAll(/^\s+'(\/[^']+)': \[/gm)) registered.push(['get', m[1]!]);
    assert.ok(registered.length >= 15, JSON.stringify(registered));
    for (const [method, route] of registered) {
      if (route === '/*') continue; // the preflight on every path, and the 404/405 catch-all
      const template = route.endsWith('/*')
        ? Object.keys(openapi.paths).find((p) => p.startsWith(route.slice(0, -1)) && /\{\w+\}$/.test(p))
        : route;
      assert.ok(template && openapi.paths[template], `${method.toUpperCase()} ${route} is documented`);
      assert.ok(openapi.paths[template][method], `${method.toUpperCase()} ${route} is documented as ${template}`);
    }
  });

  it('lists every error code of src/errors.ts under its status', () => {
    const table = errorTable();
    assert.ok(table.size >= 19);
    const codes: string[] = openapi.components.schemas.Error.properties.error.properties.code.enum;
    assert.deepEqual([...codes].sort(), [...table.keys()].sort(), 'the Error schema\'s codes are exactly the server\'s');
    // The status each shared error response is used under, from the operations that use it.
    const statusOf = new Map<string, Set<number>>();
    for (const item of Object.values<any>(openapi.paths)) {
      for (const m of METHODS) {
        for (const [status, r] of Object.entries<any>(item[m]?.responses ?? {})) {
          const name = /^#\/components\/responses\/(\w+)$/.exec(r.$ref ?? '')?.[1];
          if (name) statusOf.set(name, (statusOf.get(name) ?? new Set()).add(Number(status)));
        }
      }
    }
    for (const [code, status] of table) {
      const homes = Object.entries<any>(openapi.components.responses).filter(([, r]) => r.content?.['application/json']?.schema?.allOf?.[1]?.properties?.error?.properties?.code?.enum?.includes(code));
      assert.ok(homes.length > 0, `${code} has a documented response`);
      for (const [name] of homes) assert.deepEqual([...(statusOf.get(name) ?? CATCH_ALL[name] ?? [])], [status], `${name} (with ${code}) is used under ${status} only`);
    }
  });

  it('the streaming routes answer as documented before a stream starts', async () => {
    const cors = await startTestServer({ LP_CORS_ORIGINS: 'http://good.example' });
    try {
      // SSE: errors are the usual JSON; a stream's head (its body never ends) has the documented headers.
      assert.equal((await http(`${cors.url}/v1/sse`)).status, 400);
      assert.equal((await http(`${cors.url}/v1/sse?ch=x&cursor=nope`)).status, 400);
      const controller = new AbortController();
      const res = await fetch(`${cors.url}/v1/sse?ch=oa-sse`, { signal: controller.signal, headers: { origin: 'http://good.example' } });
      const head = { method: 'GET', url: `${cors.url}/v1/sse?ch=oa-sse`, status: res.status, headers: res.headers, body: Buffer.alloc(0) };
      controller.abort();
      assert.equal(res.status, 200);
      assert.deepEqual(problemsOf(head), []);
      assert.equal(res.headers.get('access-control-allow-origin'), 'http://good.example');
      // WebSocket: an upgrade from an origin that is not allowed, and a GET that is no upgrade.
      const refused = await rawGet(cors.port, '/v1/ws', { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', origin: 'http://evil.example' });
      assert.equal(refused.status, 403);
      assert.deepEqual(problemsOf({ method: 'GET', url: `${cors.url}/v1/ws`, ...refused }), []);
      assert.equal((await http(`${cors.url}/v1/ws`)).status, 426);
    } finally {
      await cors.close();
    }
  });

  it('SSE events and WebSocket frames have the documented shapes', async () => {
    const ch = 'oa-frames';
    await publish(s.url, ch, { n: 1 });
    await publish(s.url, ch, 'two');
    // SSE from the start of the retained history.
    const controller = new AbortController();
    const res = await fetch(`${s.url}/v1/sse?ch=${ch}&cursor=earliest`, { signal: controller.signal });
    const reader = res.body!.getReader();
    let text = '';
    const deadline = Date.now() + 10_000;
    while ((text.match(/^data: /gm) ?? []).length < 2 && Date.now() < deadline) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    const events = text.split('\n\n').filter((e) => e.includes('data: '));
    assert.equal(events.length, 2, text);
    for (const e of events) {
      assert.match(e, /^id: [A-Za-z0-9_-]+$/m, 'each event carries its cursor as id');
      assert.deepEqual(schemaProblems('SseMessage', JSON.parse(/^data: (.*)$/m.exec(e)![1]!)), []);
    }
    // WebSocket: a subscribe op, its answer frame, and the error frame of a bad op.
    const { WebSocket } = await import('ws');
    const ws = new WebSocket(`${s.url.replace('http', 'ws')}/v1/ws`);
    const frames: unknown[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data))));
    await once(ws, 'open');
    const subscribe = { op: 'subscribe', ch: [ch], cursor: 'earliest' };
    assert.deepEqual(schemaProblems('WsSubscribe', subscribe), []);
    ws.send(JSON.stringify(subscribe));
    await until(() => frames.length >= 1, 'a frame');
    ws.send(JSON.stringify({ op: 'dance' }));
    await until(() => frames.length >= 2, 'an error frame');
    ws.close();
    assert.deepEqual(schemaProblems('PollAnswer', frames[0]), []);
    assert.deepEqual((frames[0] as { messages: { seq: number }[] }).messages.map((m) => m.seq), [1, 2]);
    assert.deepEqual(schemaProblems('WsError', frames[1]), []);
    assert.deepEqual(schemaProblems('WsToken', { op: 'token', token: 'x' }), []);
  });

  it('its checker refuses answers that break the document', () => {
    const base = 'http://127.0.0.1:1';
    const headers = (h: Record<string, string> = {}) => new Headers({ 'content-type': 'application/json', 'cache-control': 'no-store', uwebsockets: '20', ...h });
    const body = (v: unknown, newline = true) => Buffer.from(JSON.stringify(v) + (newline ? '\n' : ''));
    const ok = { method: 'GET', url: `${base}/v1/poll?ch=a`, status: 200, headers: headers(), body: body({ messages: [{ ch: 'a', seq: 1, data: 1 }], cursor: 'AQE', gap: false }) };
    assert.deepEqual(problemsOf(ok), []);
    const bad: [string, Parameters<typeof problemsOf>[0]][] = [
      ['no cursor', { ...ok, body: body({ messages: [], gap: false }) }],
      ['gap without gapChannels', { ...ok, body: body({ messages: [], cursor: 'AQE', gap: true }) }],
      ['gapChannels without a gap', { ...ok, body: body({ messages: [], cursor: 'AQE', gap: false, gapChannels: ['a'] }) }],
      ['a message without seq', { ...ok, body: body({ messages: [{ ch: 'a', data: 1 }], cursor: 'AQE', gap: false }) }],
      ['an unknown field', { ...ok, body: body({ messages: [], cursor: 'AQE', gap: false, extra: 1 }) }],
      ['no trailing newline', { ...ok, body: body({ messages: [], cursor: 'AQE', gap: false }, false) }],
      ['no Cache-Control', { ...ok, headers: new Headers({ 'content-type': 'application/json', uwebsockets: '20' }) }],
      ['an undocumented status', { ...ok, status: 418 }],
      ['an undocumented content type', { ...ok, headers: headers({ 'content-type': 'text/html' }) }],
      ['an unknown error code', { ...ok, status: 400, body: body({ error: { code: 'oops', message: 'x' } }) }],
      ['a code under the wrong status', { ...ok, status: 400, body: body({ error: { code: 'draining', message: 'x' } }) }],
      ['a 503 without Retry-After', { ...ok, status: 503, body: body({ error: { code: 'draining', message: 'x' }, retryMs: 900 }) }],
      ['a HEAD answer with a body', { ...ok, method: 'HEAD', url: `${base}/healthz`, body: body({ status: 'ok' }) }],
      ['a 405 whose Allow differs', { ...ok, method: 'PUT', status: 405, headers: headers({ allow: 'GET, POST' }), body: body({ error: { code: 'method_not_allowed', message: 'x' } }) }],
      ['an unknown path answered 200', { ...ok, url: `${base}/v2/nothing` }],
    ];
    for (const [what, answer] of bad) assert.notDeepEqual(problemsOf(answer), [], `the checker catches ${what}`);
    assert.deepEqual(problemsOf({ ...ok, status: 503, headers: headers({ 'retry-after': '1' }), body: body({ error: { code: 'draining', message: 'x' }, retryMs: 900 }) }), []);
    assert.deepEqual(problemsOf({ ...ok, method: 'PUT', status: 405, headers: headers({ allow: 'GET' }), body: body({ error: { code: 'method_not_allowed', message: 'x' } }) }), []);
  });
});

/** A GET with headers fetch() will not send (Upgrade): status, headers and body of the answer. */
function rawGet(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
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
