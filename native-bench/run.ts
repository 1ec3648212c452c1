/**
 * npm run bench [-- --quick] [--runs N] [--only park,inbox,inboxBatch,steady,fastpath,streams,instructions]
 *                [--targets holdfast,nchan]
 *
 * Runs every scenario against every target that is installed, in one run on this machine:
 * server pinned to core 0, load tools (and Redis) to core 1. Writes
 * native-bench/results/<date>.json, <date>.md (tables with ratios) and <date>.svg (delivery
 * latency percentiles), and prints the tables.
 *
 * Scenarios (see README, Performance):
 *   park     N polls parked on one channel: server RSS per parked poll; then one publish: fan-out
 *            time to first / p50 / p99 / last delivery and deliveries/s
 *   inbox    N channels with one poll each, one message to each through 16 keep-alive publisher
 *            connections: deliveries/s and publish→delivery p50 / p99 / max
 *   inboxBatch  the inbox, published as POST /v1/publish batches of 100 messages over 4
 *            connections (Holdfast only: Nchan has no batch publish)
 *   steady   C clients loop poll → re-poll with cursor on 40 channels (every 5th client follows
 *            2–4 in one poll) while a publisher sends one batch per round, all channels in
 *            lockstep: deliveries/s, latency, and that every delivery is on a channel the client
 *            follows, with the payload published there, once and in order (Holdfast only)
 *   fastpath polls/s when a message is already waiting, and publishes/s (native-bench/reqloop.c,
 *            50 keep-alive connections); raw uWS answers such a poll at once from memory
 */

import { execFileSync, spawn } from 'node:child_process';
import { cpus, loadavg, release } from 'node:os';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import calculateSlot from 'cluster-key-slot';
import { PIN, median, park, pinned, pub, rssKiB, waitCount, waitParked, freePort } from './lib.js';
import { type InstructionResults, instructionsStep } from './instructions.js';
import { TARGETS, type Running, type Target } from './targets.js';
import { renderMarkdown, renderSvg } from './report.js';
import { streamsStep } from './streams.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
/** Interleaved runs; each figure is their median. */
const RUNS = Number(argValue('--runs') ?? (quick ? 1 : 3));
const only = argValue('--only')?.split(',');
const targetFilter = argValue('--targets')?.split(',');
// 15,000 in a full run: Nchan's one worker drops connections ("worker_connections are not
// enough, reusing connections") from ~18,800 parked polls under the 20,000-files cap, so every
// server is compared at a size all of them hold. Holdfast alone at 19,500: npm run bench:park.
const N_PARK = Number(argValue('--park') ?? (quick ? 5000 : 15_000));
const N_INBOX = Number(argValue('--inbox') ?? (quick ? 5000 : 15_000));
const STEADY_CLIENTS = quick ? 200 : 1000;
// Channels that advance in lockstep (one batch publishes a round: every channel at the same
// seq, woken in one flush), so any state shared across channels shows up as a leak or a loss.
const STEADY_CHANNELS = 40;
/**
 * RSS is read this long after the warm-up and after the last poll parked, for every server:
 * Node's garbage from a parking burst is returned by V8's memory reducer ~8 s after it (measured
 * on Redis: 3,420 B/poll for 7 s, then 635 B/poll, steady). Reading it earlier measured GC
 * timing, not what a parked poll costs.
 */
const SETTLE_MS = 12_000;
const STEADY_MULTI_EVERY = 5;
// Messages/s over all channels (25 per channel). Memory sustains it here with 1,000 clients;
// on Redis the publisher falls behind (~500/s: each round waits for its batch, and the polls'
// history reads keep Redis busy), which the publishedPerSec figure shows.
const STEADY_RATE = 1000;
const STEADY_SECONDS = quick ? 3 : 10;
const FAST_SECONDS = quick ? 3 : 8;
const FAST_CONNECTIONS = 50;
const PUBLISHERS = 16;
/** The batch inbox: messages per POST /v1/publish, and connections sending them. */
const BATCH = 100;
const BATCH_PUBLISHERS = 4;
const tmp = join(tmpdir(), `hf-bench-${process.pid}`);
mkdirSync(tmp, { recursive: true });

function argValue(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i === -1 ? undefined : argv[i + 1];
}

const wanted = (scenario: string) => !only || only.includes(scenario);

/** The median of each number over the samples (the others from the first sample), and the loads. */
function medianRow(list: Record<string, unknown>[]): Record<string, unknown> {
  const ok = list.filter((x) => x.error === undefined);
  if (ok.length === 0) return list[0]!;
  const row: Record<string, unknown> = { ...ok[0] };
  for (const key of Object.keys(row)) {
    if (typeof row[key] === 'number' && key !== 'load') row[key] = median(ok.map((x) => x[key] as number));
  }
  row.load = list.map((x) => x.load);
  row.runs = ok.length;
  return row;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- Redis (for the Redis targets), on the load core ----
let redisUrl: string | undefined;
let stopRedis: (() => void) | undefined;
async function ensureRedis(): Promise<string> {
  if (redisUrl) return redisUrl;
  const port = await freePort();
  const [cmd, args] = pinned(1, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', '--maxclients', '50000']);
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('Ready to accept connections')) resolve();
    });
    proc.once('exit', () => reject(new Error('redis-server exited')));
  });
  proc.stdout!.resume();
  stopRedis = () => proc.kill('SIGKILL');
  return (redisUrl = `redis://127.0.0.1:${port}`);
}

/** "<index> <µs>" lines from a dump and its siblings (<file>.1, .2… when several park processes ran). */
function readPairs(file: string): Map<number, number> {
  const out = new Map<number, number>();
  for (let k = 0; ; k++) {
    const name = k === 0 ? file : `${file}.${k}`;
    if (!existsSync(name)) break;
    for (const line of readFileSync(name, 'utf8').split('\n')) {
      const [i, t] = line.split(' ');
      if (t) out.set(Number(i), Number(t));
    }
    rmSync(name);
  }
  return out;
}

function percentiles(xs: number[]): { p50: number; p99: number; max: number } {
  const s = xs.slice().sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN };
}

const rssOf = (r: Running) => r.pids.reduce((a, pid) => a + rssKiB(pid), 0);

// ---- scenarios ----

async function parkAndFanout(t: Target, r: Running) {
  // Warm-up, so the baseline includes JIT and first allocations.
  const warm = park(r.port, 500, { channel: 'warm', waitS: 3, path: t.pollPath });
  await warm.parked;
  await sleep(500);
  await pub(r.port, ['-n', '1', '-u', t.publishPath('warm', false), '-b', t.publishBody(false, '')]);
  await warm.done;
  await sleep(SETTLE_MS);
  const before = rssOf(r);
  const run = park(r.port, N_PARK, { channel: 'fan', waitS: 30, path: t.pollPath, dump: join(tmp, 'fan.txt') });
  await run.parked;
  const serverCount = t.parkedCount ? await waitCount(() => t.parkedCount!(r.port), N_PARK) : undefined;
  await sleep(SETTLE_MS); // hold: RSS once the runtime took back the parking burst's garbage
  const after = rssOf(r);
  const stillParked = t.parkedCount ? await t.parkedCount(r.port) : undefined;
  const parkResult = {
    polls: N_PARK,
    serverCount,
    stillParkedAfterHold: stillParked,
    rssBeforeKiB: before,
    rssAfterKiB: after,
    bytesPerPoll: Math.round(((after - before) * 1024) / N_PARK),
  };
  if (!t.supportsFanout) return { park: parkResult };
  const sent = await pub(r.port, ['-n', '1', '-c', '1', '-d', '1', '-u', t.publishPath('fan', false), '-b', t.publishBody(false, '')]);
  const results = await run.done;
  const answered = results.reduce((a, x) => a + x.answered, 0);
  const times = [...readPairs(join(tmp, 'fan.txt')).values()].map((x) => x - sent.start_us);
  const { p50, p99 } = percentiles(times);
  const first = Math.min(...times);
  const last = Math.max(...times);
  return {
    park: parkResult,
    fanout: { polls: N_PARK, answered, firstMs: first / 1000, p50Ms: p50 / 1000, p99Ms: p99 / 1000, lastMs: last / 1000, deliveriesPerSec: Math.round(answered / (last / 1e6)) },
  };
}

async function inbox(t: Target, r: Running, batch = 1) {
  const prefix = batch > 1 ? 'inboxb' : 'inbox';
  const run = park(r.port, N_INBOX, { prefix, waitS: 60, path: t.pollPath, dump: join(tmp, 'inbox.txt') });
  await run.parked;
  if (t.parkedCount) {
    const parked = await waitCount(() => t.parkedCount!(r.port), N_INBOX);
    if (parked < N_INBOX) throw new Error(`the server reports ${parked} of ${N_INBOX} polls parked`);
  }
  else await sleep(2000);
  // No HTTP pipelining: uWS v20.30 closes a connection that pipelines a request behind an
  // unanswered one, so Holdfast on Redis (whose answers wait for Redis) would be cut off. Every
  // server gets the same publisher: PUBLISHERS keep-alive connections, one request in flight each.
  // Batches (Holdfast's POST /v1/publish): BATCH_PUBLISHERS connections, BATCH messages per
  // request, message i to channel i (pub's lockstep mode checks every acknowledged seq).
  const sent = batch > 1
    ? await pub(r.port, ['-n', String(N_INBOX), '-L', `${prefix}%d`, '-K', String(N_INBOX), '-B', String(batch), '-c', String(BATCH_PUBLISHERS), '-d', '1', '-O', join(tmp, 'sent.txt')])
    : await pub(r.port, ['-n', String(N_INBOX), '-c', String(PUBLISHERS), '-d', '1', '-u', t.publishPath(prefix, true), '-b', t.publishBody(true, prefix), '-O', join(tmp, 'sent.txt')]);
  const results = await run.done;
  const answers = readPairs(join(tmp, 'inbox.txt'));
  const sends = readPairs(join(tmp, 'sent.txt'));
  const lat: number[] = [];
  let lastAnswer = 0;
  for (const [i, at] of answers) {
    const s = sends.get(i);
    if (s !== undefined) lat.push(at - s);
    lastAnswer = Math.max(lastAnswer, at);
  }
  const { p50, p99, max } = percentiles(lat);
  const answered = results.reduce((a, x) => a + x.answered, 0);
  return {
    polls: N_INBOX,
    published: sent.ok,
    answered,
    deliveriesPerSec: Math.round(answered / ((lastAnswer - sent.start_us) / 1e6)),
    p50Ms: p50 / 1000,
    p99Ms: p99 / 1000,
    maxMs: max / 1000,
  };
}

/**
 * `groups × perGroup` fresh channel names, each group in one Redis Cluster slot: Redis keeps
 * a never-published channel's epoch per slot (memory: one for the whole store), so channels of
 * one group start out identical but for their name, the case a key without the channel mixes up.
 * Slot mates are neighbours, so the clients that follow several channels follow slot mates.
 */
function slotMates(prefix: string, groups: number, perGroup: number): string[] {
  const names: string[] = [];
  for (let g = 0; g < groups; g++) {
    const first = `${prefix}${g}`;
    const slot = calculateSlot(first);
    names.push(first);
    for (let i = 0, found = 1; found < perGroup; i++) {
      const name = `${first}.${i}`;
      if (calculateSlot(name) === slot) {
        names.push(name);
        found++;
      }
    }
  }
  return names;
}

/** What steady (native-bench/steady.c) prints when it is done. */
interface SteadyResult {
  clients: number; channels: number; follows: number; complete: number; deliveries: number;
  lost: number; duplicates: number; reordered: number; cross_channel: number; gaps: number; errors: number;
  first_us: number; last_us: number; p50_us: number; p99_us: number; max_us: number;
}

async function steady(t: Target, r: Running) {
  const perChannel = Math.round((STEADY_RATE * STEADY_SECONDS) / STEADY_CHANNELS);
  const total = perChannel * STEADY_CHANNELS;
  // Fresh channel names per run (the publisher's plan numbers every channel from seq 1), four
  // to a Redis slot.
  const namesFile = join(tmp, 'steady-channels.txt');
  writeFileSync(namesFile, slotMates(`steady${Date.now().toString(36)}-`, STEADY_CHANNELS / 4, 4).join('\n') + '\n');
  const names = `@${namesFile}`;
  const [cmd, a] = pinned(1, new URL('./build/steady', import.meta.url).pathname, [
    '-p', String(r.port), '-n', String(STEADY_CLIENTS), '-c', names, '-K', String(STEADY_CHANNELS),
    '-M', String(STEADY_MULTI_EVERY), '-E', String(perChannel),
    // Bounds: a publisher slower than planned gets ample time; a client whose stream broke
    // (nothing delivered to anyone for 10 s) ends the run early instead of waiting it out.
    '-w', String(STEADY_SECONDS * 6 + 30), '-i', '10',
  ]);
  const proc = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', (d) => {
      err += d;
      if (err.includes('parked')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`steady exited (${code}) before parking: ${err}`)));
  });
  await waitParked([r.port], STEADY_CLIENTS);
  // One batch per round (all channels at the same seq); one request in flight keeps each
  // channel's messages in order, as pub -L requires.
  const sent = await pub(r.port, ['-n', String(total), '-L', names, '-K', String(STEADY_CHANNELS), '-B', String(STEADY_CHANNELS), '-c', '1', '-d', '1', '-R', String(STEADY_RATE)]);
  await exited;
  const s = JSON.parse(out) as SteadyResult;
  const result = {
    clients: STEADY_CLIENTS,
    channels: STEADY_CHANNELS,
    follows: s.follows,
    ratePerSec: STEADY_RATE,
    published: sent.ok,
    publishedPerSec: Math.round(sent.ok / ((sent.end_us - sent.start_us) / 1e6)),
    deliveries: s.deliveries,
    deliveriesPerSec: Math.round(s.deliveries / ((s.last_us - s.first_us) / 1e6)),
    p50Ms: s.p50_us / 1000,
    p99Ms: s.p99_us / 1000,
    maxMs: s.max_us / 1000,
    complete: s.complete,
    missing: s.lost,
    duplicates: s.duplicates,
    reordered: s.reordered,
    crossChannel: s.cross_channel,
    gaps: s.gaps,
    errors: s.errors,
    misnumbered: (sent as { misnumbered?: number }).misnumbered ?? 0,
  };
  const broken = { lost: s.lost, duplicates: s.duplicates, reordered: s.reordered, crossChannel: s.cross_channel, errors: s.errors, publishFailed: sent.failed, misnumbered: result.misnumbered };
  const violations = Object.entries(broken).filter(([, v]) => v > 0);
  if (violations.length > 0) {
    // A benchmark that delivers the wrong messages has no figures worth keeping: fail the step
    // (and the run's exit status) and say so where nobody can miss it.
    const what = violations.map(([k, v]) => `${k} ${v}`).join(', ');
    console.error(`\n${'!'.repeat(78)}\n!! steady: DELIVERY CHECK FAILED on ${t.name}: ${what}\n!! ${JSON.stringify(result)}\n${'!'.repeat(78)}\n`);
    process.exitCode = 1;
    throw new Error(`delivery check failed: ${what}`);
  }
  return result;
}

/** Runs native-bench/build/reqloop on the load core; resolves with its summary. */
function reqloop(port: number, args: string[]): Promise<{ requests: number; ok: number; non2xx: number; errors: number; per_sec: number; bytes_per_answer: number }> {
  return new Promise((resolve, reject) => {
    const [cmd, a] = pinned(1, new URL('./build/reqloop', import.meta.url).pathname, ['-p', String(port), ...args]);
    const p = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('exit', () => {
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`reqloop failed: ${out}`));
      }
    });
  });
}

/**
 * Polls whose message is already waiting, and publishes, each for FAST_SECONDS over
 * FAST_CONNECTIONS keep-alive connections (one request in flight each): Holdfast with a cursor
 * one message behind, Nchan with If-Modified-Since in the past, raw uWS answering at once from
 * memory (the most a server on this runtime can do per request).
 */
async function fastpath(t: Target, r: Running) {
  const base = `http://127.0.0.1:${r.port}`;
  let pollPath: string;
  const headers: string[] = [];
  if (t.name.startsWith('holdfast')) {
    for (let i = 0; i < 3; i++) await fetch(`${base}/v1/publish/fp`, { method: 'POST', body: '{"v":1}', headers: { 'content-type': 'application/json' } });
    const c = (await (await fetch(`${base}/v1/poll?ch=fp&cursor=earliest&max=1`)).json()) as { cursor: string };
    pollPath = `/v1/poll?ch=fp&cursor=${c.cursor}&max=1`;
  } else if (t.name.startsWith('nchan')) {
    for (let i = 0; i < 3; i++) await fetch(`${base}/pub/fp`, { method: 'POST', body: '{"v":1}' });
    pollPath = '/sub/fp';
    headers.push('-h', 'If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT');
  } else if (t.name === 'raw uWS') {
    for (let i = 0; i < 3; i++) await fetch(`${base}/v1/publish/fp`, { method: 'POST', body: '{"v":1}', headers: { 'content-type': 'application/json' } });
    pollPath = '/v1/poll?ch=fp&cursor=1';
  } else {
    return undefined;
  }
  const common = ['-c', String(FAST_CONNECTIONS), '-t', String(FAST_SECONDS), '-w', '1'];
  const polls = await reqloop(r.port, [...common, '-u', pollPath, ...headers]);
  const pubs = await reqloop(r.port, [...common, '-m', 'POST', '-u', t.publishPath('pp', false), '-b', '{"a":1}']);
  return {
    pollsPerSec: Math.round(polls.per_sec),
    pollErrors: polls.non2xx + polls.errors,
    answerBytes: Math.round(polls.bytes_per_answer),
    publishesPerSec: Math.round(pubs.per_sec),
    publishErrors: pubs.non2xx + pubs.errors,
  };
}

// ---- the run ----

const SCENARIOS: [string, (t: Target, r: Running) => Promise<unknown>][] = [
  ['park', parkAndFanout],
  ['inbox', (t, r) => inbox(t, r)],
  ['inboxBatch', (t, r) => inbox(t, r, BATCH)],
  ['steady', steady],
  ['fastpath', fastpath],
];

const results: Record<string, Record<string, unknown>> = {};
const skipped: Record<string, string> = {};
const started = Date.now();
console.log(`holdfast benchmark (${quick ? 'quick' : 'full'}): ${cpus().length} cores (${cpus()[0]?.model}), Linux ${release()}, Node ${process.version}`);
console.log(PIN ? 'pinning: servers on core 0 (taskset -c 0), load tools and Redis on core 1 (taskset -c 1)' : 'pinning: taskset not found, nothing pinned');

// Every target in every run, runs interleaved (the machine's noise then falls on all of them
// alike); each figure is the median over the runs, with the load average at each sample.
const samples: Record<string, Record<string, Record<string, unknown>[]>> = {};
const addSample = (scenario: string, target: string, value: Record<string, unknown>) => ((samples[scenario] ??= {})[target] ??= []).push(value);
for (let run = 1; run <= RUNS; run++) {
  for (const t of TARGETS) {
    if (targetFilter && !targetFilter.some((f) => t.name.includes(f))) continue;
    const missing = t.missing();
    if (missing) {
      if (run === 1) console.log(`skip ${t.name}: ${missing}`);
      skipped[t.name] = missing;
      continue;
    }
    for (const [scenario, fn] of SCENARIOS) {
      if (!wanted(scenario)) continue;
      if ((scenario === 'steady' || scenario === 'inboxBatch') && !t.name.startsWith('holdfast')) continue;
      if (scenario === 'fastpath' && !(t.name.startsWith('holdfast') || t.name.startsWith('nchan') || t.name === 'raw uWS')) continue;
      const redis = t.needsRedis ? await ensureRedis() : undefined;
      // Every server starts on an empty Redis: Nchan keeps channels there, and a later run that
      // polls the same names would find the earlier run's messages waiting.
      if (redis) execFileSync('redis-cli', ['-u', redis, 'FLUSHALL'], { stdio: 'ignore' });
      const running = await t.start(redis);
      const load = Number(loadavg()[0]!.toFixed(2));
      try {
        const t0 = Date.now();
        const value = await fn(t, running);
        if (value && typeof value === 'object' && 'park' in value) {
          for (const [k, v] of Object.entries(value)) addSample(k, t.name, { ...(v as Record<string, unknown>), load });
        } else if (value) addSample(scenario, t.name, { ...(value as Record<string, unknown>), load });
        console.log(`run ${run}/${RUNS} ${t.name} ${scenario} (${((Date.now() - t0) / 1000).toFixed(1)} s, load ${load}): ${JSON.stringify(value)}`);
      } catch (err) {
        console.log(`run ${run}/${RUNS} ${t.name} ${scenario} failed: ${(err as Error).message}`);
        addSample(scenario, t.name, { error: (err as Error).message, load });
      } finally {
        await running.stop();
      }
    }
  }
}
for (const [scenario, byTarget] of Object.entries(samples)) {
  for (const [target, list] of Object.entries(byTarget)) (results[scenario] ??= {})[target] = medianRow(list);
}

// SSE and WebSocket fan-out beside the long-poll rows (native-bench/streams.ts).
if (wanted('streams')) results.streams = (await streamsStep({ quick, targets: targetFilter, print: true })) as unknown as Record<string, unknown>;
// Instructions per delivery under callgrind: the figure the machine's noise does not move.
let instructions: InstructionResults | undefined;
if (wanted('instructions') && (!targetFilter || targetFilter.some((f) => 'holdfast (memory)'.includes(f)))) {
  const done = await instructionsStep(quick
    ? { polls: 1000, rounds: 1, warm: 3, only: ['fanout', 'inbox', 'fastpath'], targets: ['holdfast (memory)', 'raw uWS'] }
    : { polls: 2000, rounds: 3, warm: 6, only: ['fanout', 'inbox', 'batch', 'fastpath'], targets: ['holdfast (memory)', 'raw uWS'] });
  instructions = done?.results;
}
stopRedis?.();
rmSync(tmp, { recursive: true, force: true });

const date = new Date().toISOString().slice(0, 10);
const machine = { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version, pinned: PIN };
const report = { date: new Date().toISOString(), quick, runs: RUNS, machine, sizes: { park: N_PARK, inbox: N_INBOX, steadyClients: STEADY_CLIENTS, steadyRate: STEADY_RATE, steadySeconds: STEADY_SECONDS }, results, instructions, samples, skipped, seconds: Math.round((Date.now() - started) / 1000) };
const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
// A run narrowed by --only/--targets never overwrites the full run's files.
const stem = `${date}${quick ? '-quick' : ''}${only || targetFilter ? '-partial' : ''}`;
const md = renderMarkdown(report);
writeFileSync(new URL(`${stem}.json`, dir), JSON.stringify(report, null, 2));
writeFileSync(new URL(`${stem}.md`, dir), md);
writeFileSync(new URL(`${stem}.svg`, dir), renderSvg(report));
console.log(`\n${md}`);
console.log(`written: native-bench/results/${stem}.{json,md,svg} in ${report.seconds} s`);
