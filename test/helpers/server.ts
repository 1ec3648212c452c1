/**
 * Test servers: a real Holdfast listening on 127.0.0.1 on a free port (port 0), driven over
 * real HTTP. The broker profile (memory, redis, cluster) comes from the profile helpers.
 */

import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { startServer, type HoldfastServer } from '../../src/server.js';
import { assertMatchesOpenApi } from './openapi.js';
import { forgetFrontKey, frontEnv, frontedByNginx, rememberFrontKey, startNginx, withFrontKey } from './nginx.js';

export interface TestServer {
  readonly url: string;
  readonly port: number;
  readonly server: HoldfastServer;
  readonly config: Config;
  close(): Promise<void>;
}

/** Environment every test server starts from; a profile adds its broker variables. */
export const BASE_ENV: Record<string, string> = {
  HOST: '127.0.0.1',
  PORT: '0',
  LOG_LEVEL: 'silent',
};

/** Starts a server; the caller closes it in its own after() hook. */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const { WAIT_READY, VIA, ...given } = env;
  // HOLDFAST_VIA=nginx: the server is reached through the tested nginx config (VIA=direct opts out).
  const fronted = frontedByNginx(VIA);
  const { vars, key } = fronted ? frontEnv(given) : { vars: given, key: undefined };
  const config = loadConfig({ ...BASE_ENV, ...vars });
  const server = await startServer(config, { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
  // WAIT_READY=0: a test that starts the server with its broker down on purpose.
  if (WAIT_READY !== '0') await server.broker.waitReady(10_000);
  const front = fronted ? await startNginx(server.port) : undefined;
  const url = front?.url ?? `http://127.0.0.1:${server.port}`;
  rememberFrontKey(url, key);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.drain();
    await front?.stop();
    forgetFrontKey(url);
  };
  return { url, port: front?.port ?? server.port, server, config, close };
}

export interface Answer<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/**
 * One HTTP request; the body is parsed as JSON when the answer says so. Every answer is checked
 * against the OpenAPI document (test/helpers/openapi.ts); `openapi: false` skips that for a
 * test that talks to something else on purpose.
 */
export async function http<T = any>(url: string, init: RequestInit & { json?: unknown; openapi?: false } = {}): Promise<Answer<T>> {
  const headers = new Headers(init.headers);
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
  }
  withFrontKey(url, headers);
  const res = await fetch(url, { ...init, headers, body });
  const type = res.headers.get('content-type') ?? '';
  const raw = Buffer.from(await res.arrayBuffer());
  if (init.openapi !== false) assertMatchesOpenApi({ method: init.method ?? 'GET', url, status: res.status, headers: res.headers, body: raw });
  let parsed: unknown = raw;
  if (type.startsWith('application/json')) parsed = JSON.parse(raw.toString('utf8'));
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export interface PollBody {
  messages: { ch: string; seq: number; data: unknown }[];
  cursor: string;
  gap: boolean;
  gapChannels?: string[];
  retryMs?: number;
}

/** Publishes one JSON value; asserts nothing (callers check). */
export function publish(base: string, ch: string, data: unknown, headers: Record<string, string> = {}) {
  return http<{ ch: string; seq: number; epoch: string }>(`${base}/v1/publish/${encodeURIComponent(ch)}`, {
    method: 'POST',
    json: data,
    headers,
  });
}

export function poll(base: string, params: { ch: string | string[]; cursor?: string; timeout?: number; max?: number }, init: RequestInit = {}) {
  const q = new URLSearchParams();
  for (const ch of Array.isArray(params.ch) ? params.ch : [params.ch]) q.append('ch', ch);
  if (params.cursor !== undefined) q.set('cursor', params.cursor);
  if (params.timeout !== undefined) q.set('timeout', String(params.timeout));
  if (params.max !== undefined) q.set('max', String(params.max));
  return http<PollBody>(`${base}/v1/poll?${q}`, init);
}

/** Waits until `predicate` holds, checking on each tick of the event loop (bounded). */
export async function until(predicate: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}
