/**
 * The demo in a real browser (Debian's chromium driven by playwright-core): two pages chat,
 * the server restarts mid-session, a page goes offline for 10 s; at the end each page has
 * shown every chat message exactly once, in order. On its own: a new tab shows the
 * conversation so far, a refused publish shows the server's own reason, and the console
 * stays free of errors. Screenshots go to test-artifacts/.
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
const noChromium = !existsSync(CHROMIUM) && 'chromium is not installed (apt-get install chromium)';
const skip = noChromium || (!profiles().some((p) => p.name === 'redis') && 'redis-server is not installed');
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let built = false;
/** The page is served from dist/: build once per file. */
function build(): void {
  if (built) return;
  execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
  built = true;
}

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
    build();
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

describe('demo page on its own (memory broker)', { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  before(async () => {
    build();
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer({ LP_DEMO: '1' });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  });

  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    await server?.close();
  });

  /** A page in a fresh context (a new tab of a new visitor), with its console errors collected. */
  async function open(name: string, headers: Record<string, string> = {}): Promise<{ page: Page; errors: string[] }> {
    const context = await browser.newContext({ extraHTTPHeaders: headers });
    contexts.push(context);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    await page.goto(`${server.url}/demo/?name=${name}`);
    await page.waitForSelector('#status[data-state="connected"]');
    return { page, errors };
  }

  const shownTexts = (page: Page) => page.$$eval('#log li.msg', (lis) => lis.map((li) => li.textContent));

  it('a new tab shows the conversation so far, and the console stays clean', async () => {
    for (const text of ['first', 'second']) {
      assert.equal((await http(`${server.url}/v1/publish/demo:chat`, { method: 'POST', json: { from: 'earlier', text } })).status, 200);
    }
    const { page, errors } = await open('carol');
    await page.waitForSelector('#log li.msg:has-text("second")');
    assert.deepEqual(await shownTexts(page), ['earlierfirst', 'earliersecond']);
    await page.fill('#text', 'hello from carol');
    await page.click('#send');
    await page.waitForSelector('#log li.msg:has-text("hello from carol")');
    assert.equal(await page.getAttribute('link[rel="icon"]', 'href'), 'favicon.svg');
    const icon = await page.evaluate(async () => (await fetch('/demo/favicon.svg')).headers.get('content-type'));
    assert.equal(icon, 'image/svg+xml');
    await page.screenshot({ path: `${ARTIFACTS}demo-new-tab.png` });
    assert.deepEqual(errors, [], 'no console errors, failed requests or page errors');
  });

  it("a refused publish shows the server's own reason (publishing through a proxy)", async () => {
    // Every request of this visitor carries a proxy header, as behind nginx: polls work,
    // keyless publishing is refused with 403.
    const { page, errors } = await open('dave', { 'x-forwarded-for': '203.0.113.7' });
    await page.fill('#text', 'through a proxy');
    await page.click('#send');
    const refusal = await page.waitForSelector('#log li.refused');
    const text = (await refusal.textContent()) ?? '';
    assert.match(text, /^not sent: 403 forbidden: /);
    assert.match(text, /LP_PUBLISH_KEY/, "the server's message says what to do");
    assert.doesNotMatch(text, /not reachable/);
    assert.equal(await page.inputValue('#text'), 'through a proxy', 'the text stays for another try');
    await page.screenshot({ path: `${ARTIFACTS}demo-refused.png` });
    // Chromium reports the 403 itself as a failed resource load; nothing else may appear.
    assert.deepEqual(errors.filter((e) => !/status of 403/.test(e)), []);
  });
});
