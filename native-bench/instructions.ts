/**
 * Instructions per delivery: a figure that does not move with this machine's noise. Each
 * server runs under valgrind's callgrind, which counts the user-space instructions the server
 * process executes (kernel work — syscalls, TCP — is not counted, the same for every server).
 * For each scenario: park N polls (load tools outside valgrind, on the other core), zero the
 * counters, publish, wait for every answer, dump the counters, and divide by the deliveries.
 * The load processes keep their sockets until the dump, so closes are not counted.
 *
 *   node --import tsx native-bench/instructions.ts [--polls 2000] [--rounds 3] [--warm 6]
 *        [--targets a,b] [--only fanout,inbox,batch,fastpath] [--keep DIR]
 *   (also the last step of npm run bench)
 *
 *   fanout  one publish answers N polls parked on one channel
 *   inbox   N channels with one poll each, one publish per channel (16 publisher connections)
 *   batch   the inbox, published as POST /v1/publish batches of 100 (Holdfast only)
 *   fastpath  polls whose message already waits (a cursor one behind), 16 connections for 20 s:
 *           instructions per answer (raw uWS answers such a poll at once from memory)
 *
 * Warm-up rounds (same size) run first, so the JIT has optimised the hot paths; the median
 * of the measured rounds is reported. `--keep DIR` keeps each measured dump for
 * callgrind_annotate (native functions by name; JIT-compiled JavaScript shows as addresses —
 * profile that with node --cpu-prof).
 */

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { median, park, pinned, pub, serverRunner, waitCount } from './lib.js';
import { TARGETS, type Running, type Target } from './targets.js';

const BATCH = 100;

/** What a step measures. */
export interface InstructionOptions {
  polls: number;
  rounds: number;
  warm: number;
  only: string[];
  targets: string[];
  /** Keep each measured dump here (for callgrind_annotate). */
  keep?: string | undefined;
}

export type InstructionResults = Record<string, Record<string, { perDelivery: number; mainPerDelivery: number; rounds: Count[]; deliveries: number; idlePerSecond: number }>>;

let dir = '';
let keep: string | undefined;

// vgdb (behind callgrind_control) names its files after LOGNAME and HOST, so both ends need
// the same values; Holdfast is started with HOST=127.0.0.1 (its listen address) anyway.
process.env.LOGNAME ??= 'bench';
process.env.HOST = '127.0.0.1';

function callgrindControl(command: string, pid: number): void {
  const out = execFileSync('callgrind_control', [command, String(pid)], { encoding: 'utf8' });
  if (!out.includes('OK')) throw new Error(`callgrind_control ${command} ${pid}: ${out}`);
}

/** Zeroes the server's counters. */
function zero(pid: number): void {
  callgrindControl('-z', pid);
}

interface Count {
  /** Every thread of the process: the event loop, and V8's compiler and GC helpers. */
  all: number;
  /** The main thread alone: the event loop, where requests are served. */
  main: number;
}

/** Dumps the counters (since the last zero), one file per thread, and adds them up. */
async function dump(pid: number, label: string): Promise<Count> {
  const before = new Set(readdirSync(dir));
  callgrindControl('-d', pid);
  // The process writes the dumps on its own time: wait until every new file is complete (it
  // ends with its totals) and no more appear.
  const deadline = Date.now() + 60_000;
  let totals = new Map<string, number>();
  for (let stable = 0; stable < 3;) {
    if (Date.now() > deadline) throw new Error('callgrind wrote no complete dump');
    await new Promise((r) => setTimeout(r, 200));
    const files = readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.`) && !before.has(f));
    const next = new Map<string, number>();
    for (const f of files) {
      const m = /^totals:\s+(\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
      if (m) next.set(f, Number(m[1]));
    }
    stable = next.size > 0 && next.size === files.length && next.size === totals.size ? stable + 1 : 0;
    totals = next;
  }
  let all = 0;
  let main = 0;
  for (const [f, n] of totals) {
    all += n;
    if (f.endsWith('-01')) main = n;
    if (keep) renameSync(join(dir, f), join(keep, `${label}.${f.split('-').pop()}.callgrind`));
    else rmSync(join(dir, f));
  }
  return { all, main };
}

let round = 0;
/** Idle instructions per second of the server now measured (timers: the wheel, sweeps, metrics). */
let idlePerSecond = 0;
let zeroedAt = 0;

/** Lets the server finish what the last scrape started, then zeroes its counters. */
async function quietZero(pid: number): Promise<void> {
  await new Promise((r) => setTimeout(r, 2000));
  zero(pid);
  zeroedAt = Date.now();
}

/**
 * Dumps and subtracts the idle work of the window: timer-driven work (Holdfast's wheel tick and
 * channel sweep, the event-loop monitor) runs per second of wall time, and valgrind stretches
 * the window ~50×, so uncorrected it would be counted as per-delivery work.
 */
async function measured(pid: number, label: string): Promise<Count> {
  const seconds = (Date.now() - zeroedAt) / 1000;
  const c = await dump(pid, label);
  const idle = Math.round(idlePerSecond * seconds);
  return { all: Math.max(0, c.all - idle), main: Math.max(0, c.main - idle) };
}

/** The server's instructions per second while nothing happens. */
async function idleRate(pid: number): Promise<number> {
  await quietZero(pid);
  await new Promise((r) => setTimeout(r, 5000));
  const seconds = (Date.now() - zeroedAt) / 1000;
  const c = await dump(pid, 'idle');
  return c.all / seconds;
}

/** One fan-out: N polls on one channel, one publish. */
async function fanout(t: Target, r: Running, n: number, label?: string) {
  const ch = `fan${round++}`;
  const run = park(r.port, n, { channel: ch, waitS: 600, rate: 2000, path: t.pollPath, hold: true });
  await run.parked;
  const parked = await waitCount(() => t.parkedCount!(r.port), n, 300_000);
  if (parked < n) throw new Error(`${t.name}: ${parked} of ${n} parked`);
  await quietZero(r.pids[0]!);
  await pub(r.port, ['-n', '1', '-c', '1', '-d', '1', '-u', t.publishPath(ch, false), '-b', t.publishBody(false, '')]);
  const answered = (await run.done).reduce((a, x) => a + x.answered, 0);
  const ir = label ? await measured(r.pids[0]!, label) : { all: 0, main: 0 };
  await run.release();
  return { deliveries: answered, instructions: ir };
}

/** One inbox round: N channels, one poll and one publish each; `batch` messages per request. */
async function inbox(t: Target, r: Running, n: number, label?: string, batch = 1) {
  const prefix = `in${round++}x`;
  const run = park(r.port, n, { prefix, waitS: 600, rate: 2000, path: t.pollPath, hold: true });
  await run.parked;
  const parked = await waitCount(() => t.parkedCount!(r.port), n, 300_000);
  if (parked < n) throw new Error(`${t.name}: ${parked} of ${n} parked`);
  const names = join(dir, 'names.txt');
  if (batch > 1) writeFileSync(names, Array.from({ length: n }, (_, i) => `${prefix}${i}`).join('\n') + '\n');
  await quietZero(r.pids[0]!);
  const args = batch > 1
    ? ['-n', String(n), '-L', `@${names}`, '-K', String(n), '-B', String(batch), '-c', '4', '-d', '1']
    : ['-n', String(n), '-c', '16', '-d', '1', '-u', t.publishPath(prefix, true), '-b', t.publishBody(true, prefix)];
  const sent = await pub(r.port, args);
  if (sent.failed > 0 || sent.ok < n) throw new Error(`${t.name}: ${sent.ok} of ${n} published`);
  const answered = (await run.done).reduce((a, x) => a + x.answered, 0);
  const ir = label ? await measured(r.pids[0]!, label) : { all: 0, main: 0 };
  await run.release();
  return { deliveries: answered, instructions: ir };
}

/** Runs native-bench/build/reqloop on the load core; resolves with its summary. */
function reqloop(port: number, args: string[]): Promise<{ ok: number; non2xx: number; errors: number }> {
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

/** Polls whose message waits (one message behind), for a while: instructions per answer. */
async function fastpath(t: Target, r: Running, _n: number, label?: string) {
  const base = `http://127.0.0.1:${r.port}`;
  const ch = 'fp';
  if (!fastPaths.has(r.port)) {
    for (let i = 0; i < 3; i++) await fetch(`${base}/v1/publish/${ch}`, { method: 'POST', body: '{"v":1}', headers: { 'content-type': 'application/json' } });
    const path = t.name.startsWith('holdfast')
      ? `/v1/poll?ch=${ch}&cursor=${((await (await fetch(`${base}/v1/poll?ch=${ch}&cursor=earliest&max=1`)).json()) as { cursor: string }).cursor}&max=1`
      : `/v1/poll?ch=${ch}&cursor=1`;
    fastPaths.set(r.port, path);
  }
  if (label) await quietZero(r.pids[0]!);
  const m = await reqloop(r.port, ['-c', '16', '-t', label ? '20' : '10', '-w', '0', '-u', fastPaths.get(r.port)!]);
  if (m.non2xx + m.errors > 0) throw new Error(`${t.name} fastpath: ${m.non2xx} non-2xx, ${m.errors} errors`);
  // Answers still in flight when reqloop stopped are counted by the server but not by reqloop:
  // at most one per connection, against thousands answered.
  const ir = label ? await measured(r.pids[0]!, label) : { all: 0, main: 0 };
  return { deliveries: m.ok, instructions: ir };
}
const fastPaths = new Map<number, string>();

const SCENARIOS: Record<string, (t: Target, r: Running, n: number, label?: string) => Promise<{ deliveries: number; instructions: Count }>> = {
  fanout,
  inbox: (t, r, n, label) => inbox(t, r, n, label),
  batch: (t, r, n, label) => inbox(t, r, n, label, BATCH),
  fastpath,
};

/**
 * Runs the scenarios on each target under callgrind and returns instructions per delivery
 * (median of the measured rounds). Skipped (undefined) when valgrind is not installed.
 */
export async function instructionsStep(opts: InstructionOptions): Promise<{ results: InstructionResults; table: string } | undefined> {
  if (!existsSync('/usr/bin/valgrind')) {
    console.log('instructions: valgrind is not installed (apt-get install valgrind): skipped');
    return undefined;
  }
  dir = mkdtempSync(join(tmpdir(), 'hf-instr-'));
  keep = opts.keep;
  if (keep) mkdirSync(keep, { recursive: true });
  const saved = { ...serverRunner };
  serverRunner.wrap = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${dir}/cg.%p`, '--dump-instr=no', '--separate-threads=yes', '--compress-strings=no', '--compress-pos=no'];
  serverRunner.slow = 20;
  const results: InstructionResults = {};
  console.log(`instructions per delivery (callgrind): ${opts.polls} polls, ${opts.warm} warm-up + ${opts.rounds} measured rounds; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  try {
    for (const name of opts.targets) {
      const t = TARGETS.find((x) => x.name === name);
      if (!t) throw new Error(`no target ${name}: ${TARGETS.map((x) => x.name).join(', ')}`);
      if (t.needsRedis) throw new Error(`${name} needs Redis: not supported here`);
      for (const scenario of opts.only) {
        if (scenario === 'batch' && !t.name.startsWith('holdfast')) continue;
        const r = await t.start(undefined);
        try {
          for (let i = 0; i < opts.warm; i++) await SCENARIOS[scenario]!(t, r, opts.polls);
          idlePerSecond = await idleRate(r.pids[0]!);
          const per: Count[] = [];
          for (let i = 0; i < opts.rounds; i++) {
            const label = `${t.name.replace(/\W+/g, '-')}-${scenario}-${i}`;
            const m = await SCENARIOS[scenario]!(t, r, opts.polls, label);
            if (scenario !== 'fastpath' && m.deliveries !== opts.polls) throw new Error(`${t.name} ${scenario}: ${m.deliveries} of ${opts.polls} answered`);
            per.push({ all: Math.round(m.instructions.all / m.deliveries), main: Math.round(m.instructions.main / m.deliveries) });
          }
          const row = { perDelivery: median(per.map((p) => p.all)), mainPerDelivery: median(per.map((p) => p.main)), rounds: per, deliveries: scenario === 'fastpath' ? 0 : opts.polls, idlePerSecond: Math.round(idlePerSecond) };
          (results[scenario] ??= {})[t.name] = row;
          console.log(`${t.name} ${scenario}: ${row.perDelivery.toLocaleString('en')} instructions per delivery, ${row.mainPerDelivery.toLocaleString('en')} on the main thread (rounds ${per.map((p) => `${p.all}/${p.main}`).join(', ')}; idle ${row.idlePerSecond.toLocaleString('en')}/s subtracted)`);
        } finally {
          await r.stop();
        }
      }
    }
  } finally {
    Object.assign(serverRunner, saved);
    rmSync(dir, { recursive: true, force: true });
  }
  return { results, table: instructionTable(results, opts.targets) };
}

/** Markdown: instructions per delivery per scenario and target, with ratios to the last target. */
export function instructionTable(results: InstructionResults, targetNames: string[]): string {
  const ref = targetNames.at(-1)!;
  const lines = ['| scenario | ' + targetNames.join(' | ') + ' | ' + targetNames.slice(0, -1).map((n) => `${n} / ${ref}`).join(' | ') + ' |'];
  lines.push('|---|' + targetNames.map(() => '---').join('|') + '|' + targetNames.slice(0, -1).map(() => '---').join('|') + '|');
  for (const [key, what] of [['perDelivery', 'all threads'], ['mainPerDelivery', 'main thread']] as const) {
    for (const [scenario, rows] of Object.entries(results)) {
      const base = rows[ref]?.[key];
      const cells = targetNames.map((n) => (rows[n] ? rows[n]![key].toLocaleString('en') : '–'));
      const ratios = targetNames.slice(0, -1).map((n) => (rows[n] && base ? `${(rows[n]![key] / base).toFixed(2)}×` : '–'));
      lines.push(`| ${scenario} (${what}) | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i === -1 ? undefined : argv[i + 1];
  };
  const opts: InstructionOptions = {
    polls: Number(arg('--polls') ?? 2000),
    rounds: Number(arg('--rounds') ?? 3),
    warm: Number(arg('--warm') ?? 6),
    only: arg('--only')?.split(',') ?? ['fanout', 'inbox', 'batch', 'fastpath'],
    targets: arg('--targets')?.split(',') ?? ['holdfast (memory)', 'raw uWS'],
    keep: arg('--keep'),
  };
  const done = await instructionsStep(opts);
  if (done) {
    console.log('\n' + done.table);
    const out = new URL(`./results/instructions-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url);
    writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), ...opts, load: loadavg(), results: done.results }, null, 2));
    console.log(`written: native-bench/results/${out.pathname.split('/').pop()}`);
  }
}
