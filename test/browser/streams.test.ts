/**
 * The demo page over each transport in a real browser (Debian's chromium driven by
 * playwright-core), on Redis so a restart keeps the history:
 * - pinned to WebSocket, SSE and long polls (`?transport=`), each shows its transport and every
 *   message once, in order;
 * - `auto` straight to the server takes WebSocket; behind a proxy that does not relay Upgrade
 *   it falls back to SSE, and behind one that also buffers streams, to long polls; in each
 *   case a server restart and an offline spell lose and double nothing.
 * Screenshots go to test-artifacts/.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { type Nginx, hasNginx, startNginx } from '../helpers/nginx.js';
import { profiles } from '../helpers/profiles.js';
import { type RedisServer, freePort, startRedis, stopAllRedis } from '../helpers/redis.js';
import { type TestServer, http, startTestServer } from '../helpers/server.js';
import { proxyConfig } from '../helpers/streams.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = (!existsSync(CHROMIUM) && 'chromium is not installed (apt-get install chromium)')
  || (!profiles().some((p) => p.name === 'redis') && 'redis-server is not installed')
  || (!hasNginx() && 'nginx is not installed (apt-get install nginx-light)');
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const OFFLINE_MS = 6000;

describe('demo page transports in a real browser', { skip }, () => {
  let redis: RedisServer;
  let server: TestServer;
  let port: number;
  let prefix: string;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const proxies: Nginx[] = [];
  let published = 0;

  const start = async () => {
    server = await startTestServer({ VIA: 'direct', PORT: String(port), REDIS_URL: redis.url, LP_REDIS_PREFIX: prefix, LP_DEMO: '1' });
  };
  /** Publishes the next chat line straight to the server (loopback: no key needed). */
  const say = async (text: string) => {
    const r = await http(`${server.url}/v1/publish/demo:chat`, { method: 'POST', json: { from: 'test', text } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    published = r.body.seq;
  };

  before(async () => {
    execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await startRedis();
    prefix = redis.uniquePrefix();
    port = await freePort();
    await start();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  });

  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    for (const p of proxies) await p.stop();
    await server?.close();
    await stopAllRedis();
  });

  async function open(base: string, query = ''): Promise<{ page: Page; context: BrowserContext }> {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${base}/demo/?name=t${contexts.length}${query}`);
    await page.waitForSelector('#status[data-state="connected"]', { timeout: 30_000 });
    return { page, context };
  }
  const transportOf = (page: Page) => page.getAttribute('#transport', 'data-transport');
  const shownSeqs = (page: Page) => page.$$eval('#log li.msg', (lis) => lis.map((li) => Number((li as HTMLElement).dataset.seq)));
  const seesSeq = (page: Page, seq: number) => page.waitForSelector(`#log li.msg[data-seq="${seq}"]`, { timeout: 30_000 });
  /** Every chat message so far, once each and in order (the page opened with cursor earliest). */
  const assertAll = async (page: Page, what: string) => {
    await seesSeq(page, published);
    assert.deepEqual(await shownSeqs(page), Array.from({ length: published }, (_, i) => i + 1), what);
  };

  it('pinned to each transport, the page says which, and shows every message once', async () => {
    for (const transport of ['websocket', 'sse', 'poll'] as const) {
      const { page, context } = await open(server.url, `&transport=${transport}`);
      assert.equal(await transportOf(page), transport);
      await say(`over ${transport} 1`);
      await say(`over ${transport} 2`);
      await assertAll(page, `over ${transport}`);
      await page.screenshot({ path: `${ARTIFACTS}streams-${transport}.png` });
      await context.close();
      contexts.splice(contexts.indexOf(context), 1);
    }
  });

  for (const [via, expected] of [['direct', 'websocket'], ['no-upgrade', 'sse'], ['buffering', 'poll']] as const) {
    it(`auto ${via === 'direct' ? 'straight to the server' : `behind a proxy (${via})`}: ${expected}; a restart and ${OFFLINE_MS / 1000} s offline lose and double nothing`, async () => {
      let base = server.url;
      if (via !== 'direct') {
        const proxy = await startNginx(port, proxyConfig(via));
        proxies.push(proxy);
        base = proxy.url;
      }
      await say(`before ${via}`);
      const { page, context } = await open(base);
      assert.equal(await transportOf(page), expected);
      assert.match((await page.textContent('#transport')) ?? '', /WebSocket|Server-Sent Events|long poll/);
      await assertAll(page, 'the conversation so far');

      // A restart: the page notices, reconnects on its transport, and gets what came meanwhile.
      await server.close();
      await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 30_000 });
      await start();
      await say(`after restart (${via})`);
      await assertAll(page, 'after the restart');
      await page.waitForSelector('#status[data-state="connected"]');
      assert.equal(await transportOf(page), expected, 'the same transport after the restart');

      // Offline for a while; messages go on.
      await context.setOffline(true);
      await page.waitForSelector('#status[data-state="offline"]');
      const offlineAt = Date.now();
      await say(`while offline 1 (${via})`);
      await say(`while offline 2 (${via})`);
      await new Promise((r) => setTimeout(r, Math.max(0, OFFLINE_MS - (Date.now() - offlineAt)))); // the scenario is "offline for a while"
      await context.setOffline(false);
      await assertAll(page, 'after the offline spell');
      await page.waitForSelector('#status[data-state="connected"]');
      assert.equal(await transportOf(page), expected, 'the same transport after the offline spell');
      await say(`live again (${via})`);
      await assertAll(page, 'live again');
      await page.screenshot({ path: `${ARTIFACTS}streams-auto-${via}.png` });
    });
  }
});
