/**
 * Metrics as dashboards read them: the standard process_ and nodejs_ names, no nonsense values on
 * a first or back-to-back scrape, live delivery apart from catch-up reads, a Grafana
 * dashboard that names only exported metrics, and under `--procs 2` one scrape that covers
 * both workers.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { profiles } from '../helpers/profiles.js';
import { type RedisServer, freePort, startRedis, stopAllRedis } from '../helpers/redis.js';
import { type TestServer, http, poll, publish, startTestServer, until } from '../helpers/server.js';

/** `# TYPE` lines: metric family → type. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

/** Sample lines: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Every name a PromQL query may use for what the server exports (histograms: _bucket/_sum/_count). */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of families(text)) {
    names.add(name);
    if (type === 'histogram' || type === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
  }
  return names;
}

async function scrape(base: string): Promise<string> {
  const r = await http(`${base}/metrics`);
  assert.equal(r.status, 200);
  return (r.body as Buffer).toString('utf8');
}

/** A scrape on a new connection, so that under SO_REUSEPORT any worker may answer it. */
function freshGet(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    }).on('error', reject);
  });
}

describe('metrics', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  it('process and runtime metrics have the standard names, with no values from an empty histogram', async () => {
    // The first scrape of a fresh server, then two back to back (nothing sampled in between).
    const fresh = await startTestServer();
    try {
      for (const text of [await scrape(fresh.url), await scrape(fresh.url), await scrape(fresh.url)]) {
        const names = families(text);
        for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'process_max_fds', 'process_start_time_seconds',
          'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds', 'nodejs_version_info', 'nodejs_eventloop_lag_seconds',
          'nodejs_eventloop_lag_min_seconds', 'nodejs_eventloop_lag_mean_seconds', 'nodejs_eventloop_lag_p99_seconds']) {
          assert.ok(names.has(n), `${n} is exported`);
        }
        assert.deepEqual([...names.keys()].filter((n) => n.startsWith('holdfast_process_')), [], 'no double prefix');
        for (const [name, value] of samples(text)) {
          assert.ok(Number.isFinite(value), `${name} is ${value}`);
          if (name.startsWith('nodejs_eventloop_lag')) assert.ok(value >= 0 && value < 60, `${name} = ${value}`);
        }
      }
    } finally {
      await fresh.close();
    }
  });

  it('live delivery and catch-up reads go to separate histograms', async () => {
    const count = async (name: string) => samples(await scrape(s.url)).get(`${name}_count{transport="poll"}`)!;
    const live0 = await count('holdfast_delivery_latency_seconds');
    const catchup0 = await count('holdfast_catchup_age_seconds');

    // Catch-up: the message was stored before the poll asked for it.
    await publish(s.url, 'mx-catchup', 'old');
    const read = await poll(s.url, { ch: 'mx-catchup', cursor: 'earliest' });
    assert.equal(read.body.messages.length, 1);
    assert.equal(await count('holdfast_catchup_age_seconds'), catchup0 + 1);
    assert.equal(await count('holdfast_delivery_latency_seconds'), live0, 'a history read is not live delivery');

    // Live: the poll was waiting when the message arrived.
    const waiting = poll(s.url, { ch: 'mx-catchup', cursor: read.body.cursor, timeout: 10_000 });
    await until(() => s.server.context.hub.parkedCount === 1, 'parked');
    await publish(s.url, 'mx-catchup', 'new');
    assert.equal((await waiting).body.messages.length, 1);
    assert.equal(await count('holdfast_delivery_latency_seconds'), live0 + 1);
    assert.equal(await count('holdfast_catchup_age_seconds'), catchup0 + 1, 'a live delivery is not a catch-up read');
  });

  it('the Grafana dashboard queries only metrics the server exports, and shows every holdfast_ metric', async () => {
    await http(`${s.url}/nope`); // a labelled counter exports samples once it has one
    const text = await scrape(s.url);
    const exported = exportedNames(text);
    const dashboard = JSON.parse(readFileSync(new URL('../../src/assets/grafana-dashboard.json', import.meta.url), 'utf8'));
    const exprs: string[] = [];
    const ids = new Set<number>();
    for (const panel of dashboard.panels) {
      assert.ok(!ids.has(panel.id), `panel id ${panel.id} is unique`);
      ids.add(panel.id);
      for (const t of panel.targets ?? []) exprs.push(t.expr);
    }
    for (const v of dashboard.templating.list) if (v.definition) exprs.push(v.definition);
    assert.ok(exprs.length >= 10);
    const used = new Set(exprs.flatMap((e) => e.match(/\b(?:holdfast|process|nodejs)_[a-z0-9_]+\b/g) ?? []));
    for (const name of used) assert.ok(exported.has(name), `the dashboard uses ${name}, which the server does not export`);
    for (const name of families(text).keys()) {
      if (!name.startsWith('holdfast_')) continue;
      assert.ok([...used].some((u) => u === name || u.startsWith(`${name}_`)), `the dashboard shows ${name}`);
    }
  });
});

const hasRedis = profiles().some((p) => p.name === 'redis');

describe('metrics under --procs 2', { skip: !hasRedis && 'redis-server is not installed' }, () => {
  let redis: RedisServer;
  let child: ChildProcess;
  let base: string;
  const workers = new Set<number>();

  before(async () => {
    redis = await startRedis();
    const port = await freePort();
    child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', '--procs', '2'], {
      env: { ...process.env, REDIS_URL: redis.url, LP_REDIS_PREFIX: redis.uniquePrefix(), PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! });
    for await (const line of lines) {
      const entry = JSON.parse(line); // every line the supervisor and workers write is JSON
      if (entry.msg === 'holdfast ready') workers.add(entry.pid);
      if (workers.size === 2) break;
    }
    lines.on('line', (line) => JSON.parse(line));
    base = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    await stopAllRedis();
  });

  it('every scrape, whichever worker answers it, counts the polls parked in both', async () => {
    const ch = 'procs-metrics';
    const first = await poll(base, { ch, timeout: 1000 });
    const N = 40;
    const waiting = Array.from({ length: N }, () => poll(base, { ch, cursor: first.body.cursor, timeout: 30_000 }));
    // Each connection lands on either worker; the aggregate must reach N.
    await until(async () => samples((await freshGet(`${base}/metrics`)).text).get('holdfast_parked_polls') === N, `${N} parked across the workers`, 20_000);
    const perWorker = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const m = samples((await freshGet(`${base}/metrics`)).text);
      assert.equal(m.get('holdfast_parked_polls'), N, `scrape ${i} covers every worker`);
      assert.equal(m.get('holdfast_processes'), 2);
      assert.equal(m.get('holdfast_worker_restarts_total'), 0);
      for (const [name, value] of m) assert.ok(Number.isFinite(value), `${name} is ${value}`);
      // Channel info is per process: it shows that the polls really are split between the two.
      perWorker.add((JSON.parse((await freshGet(`${base}/v1/channels/${ch}`)).text) as { pollers: number }).pollers);
    }
    assert.ok([...perWorker].some((n) => n > 0 && n < N), `the polls are spread over both workers (per-process counts seen: ${[...perWorker]})`);
    await publish(base, ch, 'release');
    for (const r of await Promise.all(waiting)) assert.equal(r.status, 200);
  });

  it('a worker that dies is restarted and counted', async () => {
    const victim = [...workers][0]!;
    process.kill(victim, 'SIGKILL');
    await until(async () => {
      const r = await freshGet(`${base}/metrics`).catch(() => undefined);
      if (r?.status !== 200) return false;
      const m = samples(r.text);
      return m.get('holdfast_worker_restarts_total') === 1 && m.get('holdfast_processes') === 2;
    }, 'the worker restarted and answers scrapes again', 20_000);
  });
});
