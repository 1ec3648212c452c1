/**
 * The demo in a real browser (Debian's chromium driven by playwright-core): two pages chat,
 * the server restarts mid-session, a page goes offline for 10 s; at the end each page has
 * shown every chat message exactly once, in order. Screenshots go to test-artifacts/.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { profiles } from '../helpers/profiles.js';
import { type RedisServer, freePort, startRedis, stopAllRedis } from '../helpers/redis.js';
import { type TestServer, http, startTestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM)
  ? 'chromium is not installed (apt-get install chromium)'
  : !profiles().some((p) => p.name === 'redis') && 'redis-server is not installed';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;

describe('demo page in a real browser', { skip }, () => {
  let redis: RedisServer;
  let server: TestServer;
  let port: number;
  let prefix: string;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  const start = async () => {
    server = await startTestServer({ PORT: String(port), REDIS_URL: redis.url, LP_REDIS_PREFIX: prefix, LP_DEMO: '1' });
  };

  before(async () => {
    execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' }); // the page is served from dist/
    mkdirSync(ARTIFACTS, { recursive: true });
    redis = await startRedis();
    prefix = redis.uniquePrefix();
    port = await freePort();
    await start();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    await server?.close();
    await stopAllRedis();
  });

  async function open(name: string): Promise<Page> {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/demo/?name=${name}`);
    await page.waitForSelector('#status[data-state="connected"]');
    return page;
  }

  const say = async (page: Page, text: string) => {
    await page.fill('#text', text);
    await page.click('#send');
    await page.waitForFunction(() => (document.getElementById('text') as HTMLInputElement).value === '');
  };
  const sees = (page: Page, text: string) => page.waitForSelector(`#log li.msg:has-text("${text}")`, { timeout: 20_000 });
  const shownSeqs = (page: Page) => page.$$eval('#log li.msg', (lis) => lis.map((li) => Number((li as HTMLElement).dataset.seq)));

  it('two pages chat; a server restart and 10 s offline lose and double nothing', async () => {
    const alice = await open('alice');
    const bob = await open('bob');

    await say(alice, 'hello from alice');
    await sees(bob, 'hello from alice');
    await say(bob, 'hi alice');
    await sees(alice, 'hi alice');
    await alice.screenshot({ path: `${ARTIFACTS}demo-chat.png` });

    // Restart the server: the pages notice, reconnect, and pick up what was published meanwhile.
    await server.close();
    await Promise.all([alice, bob].map((p) => p.waitForSelector('#status[data-state="reconnecting"]')));
    await start();
    for (const text of ['after restart 1', 'after restart 2']) {
      const r = await http(`${server.url}/v1/publish/demo:chat`, { method: 'POST', json: { from: 'server', text } });
      assert.equal(r.status, 200);
    }
    await sees(alice, 'after restart 2');
    await sees(bob, 'after restart 2');
    assert.ok(Number(await bob.textContent('#reconnects')) >= 1);

    // Bob goes offline for 10 s; Alice keeps talking.
    const bobContext = contexts[1]!;
    await bobContext.setOffline(true);
    await bob.waitForSelector('#status[data-state="offline"]');
    await bob.screenshot({ path: `${ARTIFACTS}demo-offline.png` });
    const offlineAt = Date.now();
    await say(alice, 'while bob was away 1');
    await say(alice, 'while bob was away 2');
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - offlineAt)))); // the scenario is "offline for 10 s"
    await bobContext.setOffline(false);
    await sees(bob, 'while bob was away 2');
    await bob.waitForSelector('#status[data-state="connected"]');
    await bob.screenshot({ path: `${ARTIFACTS}demo-recovered.png` });

    const info = await http(`${server.url}/v1/channels/demo:chat`);
    const all = Array.from({ length: info.body.lastSeq }, (_, i) => i + 1);
    assert.equal(all.length, 6);
    assert.deepEqual(await shownSeqs(alice), all, 'alice saw every message once, in order');
    assert.deepEqual(await shownSeqs(bob), all, 'bob saw every message once, in order');
    const ticker = await alice.textContent('#ticker');
    assert.match(ticker ?? '', /^\d+(\.\d+)?$/, 'the conflated ticker shows a price');
  });
});
