/**
 * npm run bench:streams [-- --quick] [--runs N] [--only ws,sse] [--targets holdfast,nchan,raw]
 *
 * Streaming fan-out beside long-poll: N subscribers (19,500; the open-file cap is 20,000 per
 * process) follow one channel over WebSocket or SSE on Holdfast (memory broker), Nchan (its own
 * `nchan_subscriber websocket eventsource`, memory store) and a raw uWebSockets.js server
 * (peers/raw-uws-streams.mjs: a JavaScript loop over a Set, and uWS's C++ topic publish for
 * WebSockets). Server on core 0, load (native-bench/wsub, two processes) on core 1.
 *
 * Per target, transport and run: RSS per open stream (server RSS with N idle subscribers minus
 * after a warm-up, over N); then R messages, one at a time: publish → last subscriber got it,
 * deliveries/s = subscribers reached / that time (the median over the rounds). Each figure is
 * the median of the runs, and the runs interleave the targets so a noisy spell on this shared
 * machine hits them alike. Then a resume check on Holdfast: subscribers cut their connection at
 * random and come back from their cursor (WebSocket: the frame's cursor; SSE: Last-Event-ID);
 * every one must see every message once.
 *
 * Writes native-bench/results/streams-<date>.json and .md and prints the table. `npm run bench`
 * runs the same step (streamsStep) and adds its rows to its report.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { cpus, release } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { PIN, ROOT, freePort, median, nodeServer, pinned, rssKiB, startHoldfast } from './lib.js';
import { TARGETS } from './targets.js';

const WSUB = new URL('./build/wsub', import.meta.url).pathname;
/** wsub keeps receive times for this many rounds; a run ends it by closing its stdin (-x). */
const ROUNDS_MAX = 64;
/** Sockets per load process: two processes for 19,500, well under the 20,000-file cap. */
const PER_PROCESS = 9750;

type Transport = 'ws' | 'sse';

interface Peer {
  name: string;
  transports: Transport[];
  start(): Promise<{ port: number; pids: number[]; stop(): Promise<void> }>;
  path: Record<Transport, string>;
  /** The WebSocket frame that subscribes, when the URL alone does not. */
  op?: string;
  publish(port: number, ch: string, body: string): Promise<number>;
}

const post = async (url: string, body: string, headers: Record<string, string> = {}) => (await fetch(url, { method: 'POST', body, headers })).status;

const PEERS: Peer[] = [
  {
    name: 'holdfast (memory)',
    transports: ['ws', 'sse'],
    start: () => startHoldfast({}),
    path: { ws: '/v1/ws', sse: '/v1/sse?ch=%s' },
    op: '{"op":"subscribe","ch":["%s"]}',
    publish: (port, ch, body) => post(`http://127.0.0.1:${port}/v1/publish/${ch}`, body, { 'content-type': 'application/json' }),
  },
  {
    name: 'nchan (memory)',
    transports: ['ws', 'sse'],
    start: () => {
      const nchan = TARGETS.find((t) => t.name === 'nchan (memory)')!;
      const missing = nchan.missing();
      if (missing) throw new Error(missing);
      return nchan.start(undefined);
    },
    path: { ws: '/stream/%s', sse: '/stream/%s' },
    publish: (port, ch, body) => post(`http://127.0.0.1:${port}/pub/${ch}`, body),
  },
  {
    name: 'raw uWS',
    transports: ['ws', 'sse'],
    start: () => startPeer({}),
    path: { ws: '/ws?ch=%s', sse: '/sse?ch=%s' },
    publish: (port, ch, body) => post(`http://127.0.0.1:${port}/pub/${ch}`, body),
  },
  {
    name: 'raw uWS (C++ topic publish)',
    transports: ['ws'],
    start: () => startPeer({ RAW_FANOUT: 'topic' }),
    path: { ws: '/ws?ch=%s', sse: '' },
    publish: (port, ch, body) => post(`http://127.0.0.1:${port}/pub/${ch}`, body),
  },
];

async function startPeer(env: Record<string, string>): Promise<{ port: number; pids: number[]; stop(): Promise<void> }> {
  const port = await freePort();
  const [cmd, args] = nodeServer(['--max-semi-space-size=2', new URL('./peers/raw-uws-streams.mjs', import.meta.url).pathname]);
  const proc = spawn(cmd, args, { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT });
  const pids: number[] = [];
  for await (const line of createInterface({ input: proc.stdout! })) {
    try {
      const e = JSON.parse(line);
      if (e.msg === 'holdfast listening') pids.push(e.pid);
    } catch { /* other output */ }
    if (pids.length) break;
  }
  proc.stdout!.resume();
  return { port, pids, stop: () => stop(proc) };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 8000);
  await exited;
  clearTimeout(timer);
}

interface WsubRound { received: number; first_us: number; p50_us: number; p99_us: number; last_us: number }
interface WsubResult { subscribers: number; open: number; errors: number; closed: number; reconnects: number; doubled: number; skipped: number; complete: number; rounds: WsubRound[] }

/** One wsub process: resolves `open` when its subscribers are open, `got(r)` per round, `done` with its summary. */
function wsub(port: number, args: string[]) {
  const [cmd, a] = pinned(1, WSUB, ['-p', String(port), ...args]);
  const p = spawn(cmd, a, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const rounds = new Set<number>();
  let isOpen = false;
  let openCount = 0;
  const waiters: (() => void)[] = [];
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => {
    err += d;
    for (const m of String(d).matchAll(/^(open|got) (\d+)$/gm)) {
      if (m[1] === 'open') {
        isOpen = true;
        openCount = Number(m[2]);
      } else rounds.add(Number(m[2]));
    }
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => p.once('exit', resolve));
  const until = (check: () => boolean, ms: number) =>
    new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(check()), ms);
      const again = () => {
        if (check()) {
          clearTimeout(t);
          resolve(true);
        } else waiters.push(again);
      };
      again();
      void exited.then(() => {
        clearTimeout(t);
        resolve(check());
      });
    });
  return {
    open: (ms = 120_000) => until(() => isOpen, ms),
    openCount: () => openCount,
    got: (r: number, ms = 15_000) => until(() => rounds.has(r), ms),
    /** Ends a tool started with -x: it prints its summary and exits. */
    end: () => p.stdin!.end(),
    done: exited.then((code) => {
      try {
        return JSON.parse(out) as WsubResult;
      } catch {
        throw new Error(`wsub exited ${code}: ${out.slice(0, 200)} ${err.slice(-300)}`);
      }
    }),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

interface Measurement {
  subscribers: number;
  open: number;
  errors: number;
  rssPerStreamBytes: number;
  deliveriesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  lastMs: number;
  rounds: { received: number; lastMs: number; deliveriesPerSec: number }[];
}

/** A server of one peer with its subscribers open, ready for rounds. */
interface Live {
  peer: Peer;
  server: { port: number; pids: number[]; stop(): Promise<void> };
  ch: string;
  procs: ReturnType<typeof wsub>[];
  rssPerStreamBytes: number;
  sent: number[];
}

/** Starts a peer's server, warms it up, opens `n` subscribers and measures RSS per stream. */
async function prepare(peer: Peer, transport: Transport, n: number, waitS: number): Promise<Live> {
  const server = await peer.start();
  try {
    const base = ['-m', transport, '-u', peer.path[transport], ...(transport === 'ws' && peer.op ? ['-S', peer.op] : [])];
    // Warm-up, so the baseline includes JIT and first allocations.
    const warm = wsub(server.port, [...base, '-n', '500', '-c', 'warm', '-R', '1', '-w', '20']);
    await warm.open();
    await sleep(300);
    await peer.publish(server.port, 'warm', '{"r":0}');
    await warm.done;
    await sleep(1000);
    const rss = () => server.pids.reduce((a, pid) => a + rssKiB(pid), 0);
    const before = rss();
    const ch = `fan${Date.now().toString(36)}`;
    const procs = [];
    for (let at = 0; at < n; at += PER_PROCESS) {
      procs.push(wsub(server.port, [...base, '-n', String(Math.min(PER_PROCESS, n - at)), '-c', ch, '-R', String(ROUNDS_MAX), '-w', String(waitS), '-x']));
    }
    for (const p of procs) await p.open();
    await sleep(2000); // settle
    const total = procs.reduce((a, p) => a + p.openCount(), 0);
    return { peer, server, ch, procs, rssPerStreamBytes: Math.round(((rss() - before) * 1024) / Math.max(1, total)), sent: [] };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

/** One round on one server: publish message `r`, wait until every subscriber has it. */
async function round(live: Live, r: number): Promise<void> {
  live.sent.push(nowUs());
  const status = await live.peer.publish(live.server.port, live.ch, `{"r":${r}}`);
  if (status >= 300) throw new Error(`${live.peer.name}: publish answered ${status}`);
  for (const p of live.procs) await p.got(r);
}

/** Ends the load on a server and reads its rounds. */
async function finish(live: Live, n: number): Promise<Measurement> {
  try {
    for (const p of live.procs) p.end();
    const results = await Promise.all(live.procs.map((p) => p.done));
    const per = live.sent.map((t0, r) => {
      const rows = results.map((x) => x.rounds[r]!).filter((x) => x && x.received > 0);
      const received = rows.reduce((a, x) => a + x.received, 0);
      const last = Math.max(...rows.map((x) => x.last_us)) - t0;
      return { received, lastMs: last / 1000, deliveriesPerSec: Math.round(received / (last / 1e6)), p50Ms: (median(rows.map((x) => x.p50_us)) - t0) / 1000, p99Ms: (Math.max(...rows.map((x) => x.p99_us)) - t0) / 1000 };
    });
    return {
      subscribers: n,
      open: results.reduce((a, x) => a + x.open, 0),
      errors: results.reduce((a, x) => a + x.errors, 0),
      rssPerStreamBytes: live.rssPerStreamBytes,
      deliveriesPerSec: median(per.map((x) => x.deliveriesPerSec)),
      p50Ms: median(per.map((x) => x.p50Ms)),
      p99Ms: median(per.map((x) => x.p99Ms)),
      lastMs: median(per.map((x) => x.lastMs)),
      rounds: per.map(({ received, lastMs, deliveriesPerSec }) => ({ received, lastMs, deliveriesPerSec })),
    };
  } finally {
    await live.server.stop();
  }
}

export interface ResumeCheck {
  transport: Transport;
  subscribers: number;
  messages: number;
  reconnects: number;
  complete: number;
  doubled: number;
  skipped: number;
  errors: number;
}

/** Holdfast: subscribers cut their streams at random and resume from their cursor while messages flow. */
async function resumeCheck(transport: Transport, n: number, messages: number, ratePerSec: number): Promise<ResumeCheck> {
  const server = await startHoldfast({});
  try {
    const ch = `resume${Date.now().toString(36)}`;
    const path = transport === 'ws' ? '/v1/ws' : `/v1/sse?ch=%s`;
    const tool = wsub(server.port, ['-m', transport, '-u', path, ...(transport === 'ws' ? ['-S', '{"op":"subscribe","ch":["%s"]}'] : []), '-n', String(n), '-c', ch, '-k', '15', '-E', String(messages), '-w', String(Math.ceil(messages / ratePerSec) + 60)]);
    await tool.open();
    await sleep(500);
    const t0 = Date.now();
    for (let i = 1; i <= messages; i++) {
      await post(`http://127.0.0.1:${server.port}/v1/publish/${ch}`, `{"i":${i}}`, { 'content-type': 'application/json' });
      const ahead = t0 + (i * 1000) / ratePerSec - Date.now();
      if (ahead > 0) await sleep(ahead);
    }
    const r = await tool.done;
    return { transport, subscribers: n, messages, reconnects: r.reconnects, complete: r.complete, doubled: r.doubled, skipped: r.skipped, errors: r.errors };
  } finally {
    await server.stop();
  }
}

export interface StreamsReport {
  subscribers: number;
  rounds: number;
  runs: number;
  /** "<server> <transport>" → medians over every round of every run, with each run's median. */
  rows: Record<string, Measurement & { server: string; transport: Transport; runs: number[]; vsHoldfast?: number; error?: string }>;
  resume: ResumeCheck[];
  markdown: string;
}

/**
 * The streaming step. Per run and transport, every peer's server is up with its subscribers at
 * once (RSS measured on each as its own subscribers open), and the rounds go to them in turn, in
 * a rotating order: each comparison is between rounds seconds apart, so a noisy spell on this
 * shared machine hits every peer alike. Then the resume check.
 */
export async function streamsStep(options: { quick?: boolean; runs?: number; only?: Transport[]; targets?: string[]; print?: boolean; log?: (line: string) => void } = {}): Promise<StreamsReport> {
  const log = options.log ?? console.log;
  const n = options.quick ? 5000 : 19_500;
  const rounds = options.quick ? 3 : 7;
  const runs = options.runs ?? (options.quick ? 1 : 3);
  const byKey = new Map<string, Measurement[]>();
  /** Per key, Holdfast's deliveries/s over the peer's, round by round (paired). */
  const ratios = new Map<string, number[]>();
  const failed = new Map<string, string>();
  for (let run = 1; run <= runs; run++) {
    for (const transport of ['ws', 'sse'] as const) {
      if (options.only && !options.only.includes(transport)) continue;
      const peers = PEERS.filter((p) => p.transports.includes(transport) && (!options.targets || options.targets.some((t) => p.name.includes(t))));
      const live: Live[] = [];
      try {
        for (const peer of peers) {
          const key = `${peer.name} ${transport}`;
          if (failed.has(key)) continue;
          try {
            live.push(await prepare(peer, transport, n, 120 + rounds * peers.length * 20));
          } catch (err) {
            failed.set(key, (err as Error).message);
            log(`streams ${key} failed: ${(err as Error).message}`);
          }
        }
        for (let r = 0; r < rounds; r++) {
          for (let k = 0; k < live.length; k++) {
            await round(live[(r + k) % live.length]!, r);
            await sleep(200);
          }
        }
      } finally {
        const measured = await Promise.all(live.map((l) => finish(l, n).catch((err: Error) => err)));
        const holdfast = measured[live.findIndex((l) => l.peer.name.startsWith('holdfast'))];
        live.forEach((l, i) => {
          const key = `${l.peer.name} ${transport}`;
          const m = measured[i]!;
          if (m instanceof Error) {
            failed.set(key, m.message);
            return;
          }
          (byKey.get(key) ?? byKey.set(key, []).get(key)!).push(m);
          if (holdfast && !(holdfast instanceof Error)) {
            const paired = m.rounds.map((x, r) => holdfast.rounds[r]!.deliveriesPerSec / x.deliveriesPerSec);
            ratios.set(key, [...(ratios.get(key) ?? []), ...paired]);
          }
          log(`streams run ${run}/${runs} ${key}: ${m.open}/${n} open, ${m.rssPerStreamBytes} B/stream, ${m.deliveriesPerSec.toLocaleString('en')} deliveries/s (last ${m.lastMs.toFixed(1)} ms), rounds ${m.rounds.map((x) => x.deliveriesPerSec).join(' ')}`);
        });
      }
    }
  }
  const rows: StreamsReport['rows'] = {};
  for (const [key, ms] of byKey) {
    const [server, transport] = [key.slice(0, key.lastIndexOf(' ')), key.slice(key.lastIndexOf(' ') + 1) as Transport];
    const all = ms.flatMap((m) => m.rounds);
    rows[key] = {
      server, transport, runs: ms.map((m) => m.deliveriesPerSec),
      subscribers: n, open: Math.min(...ms.map((m) => m.open)), errors: Math.max(...ms.map((m) => m.errors)),
      rssPerStreamBytes: median(ms.map((m) => m.rssPerStreamBytes)),
      deliveriesPerSec: median(all.map((x) => x.deliveriesPerSec)),
      p50Ms: median(ms.map((m) => m.p50Ms)), p99Ms: median(ms.map((m) => m.p99Ms)), lastMs: median(all.map((x) => x.lastMs)),
      rounds: all,
      vsHoldfast: ratios.has(key) ? median(ratios.get(key)!) : undefined,
    };
  }
  for (const [key, error] of failed) if (!rows[key]) rows[key] = { server: key, transport: key.endsWith('sse') ? 'sse' : 'ws', runs: [], subscribers: n, open: 0, errors: 0, rssPerStreamBytes: NaN, deliveriesPerSec: NaN, p50Ms: NaN, p99Ms: NaN, lastMs: NaN, rounds: [], error };
  const resume: ResumeCheck[] = [];
  if (!options.targets || options.targets.some((t) => 'holdfast'.includes(t))) {
    for (const transport of ['ws', 'sse'] as const) {
      if (options.only && !options.only.includes(transport)) continue;
      const r = await resumeCheck(transport, options.quick ? 500 : 2000, options.quick ? 100 : 300, 100);
      resume.push(r);
      log(`streams resume check ${transport}: ${JSON.stringify(r)}`);
    }
  }
  const report = { subscribers: n, rounds, runs, rows, resume, markdown: '' };
  report.markdown = renderStreams(report);
  if (options.print) log(`\n${report.markdown}`);
  return report;
}

const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? (Number.isInteger(v) ? v.toLocaleString('en') : v.toFixed(digits)) : '–');

export function renderStreams(r: Omit<StreamsReport, 'markdown'>): string {
  const out: string[] = [];
  out.push(`### Streams: one message to ${r.subscribers.toLocaleString('en')} subscribers of one channel (medians over ${r.runs} run${r.runs > 1 ? 's' : ''} × ${r.rounds} messages)`, '');
  out.push('| server | transport | open | RSS / stream | deliveries/s | p50 ms | p99 ms | last ms | Holdfast vs this | runs (deliveries/s) |');
  out.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const row of Object.values(r.rows)) {
    if (row.error) {
      out.push(`| ${row.server} | ${row.transport} | error: ${row.error.slice(0, 120)} |`);
      continue;
    }
    const ratio = row.vsHoldfast !== undefined ? `${row.vsHoldfast.toFixed(2)}×` : '–';
    const transport = row.transport === 'ws' ? 'WebSocket' : 'SSE';
    out.push(`| ${row.server} | ${transport} | ${row.open.toLocaleString('en')} | ${fmt(row.rssPerStreamBytes)} B | ${fmt(row.deliveriesPerSec)} | ${fmt(row.p50Ms)} | ${fmt(row.p99Ms)} | ${fmt(row.lastMs)} | ${ratio} | ${row.runs.map((x) => x.toLocaleString('en')).join(', ')} |`);
  }
  out.push('', 'Holdfast vs this: the median, over every round, of Holdfast\'s deliveries/s over this server\'s in the same run and transport (rounds alternate between the servers, seconds apart); above 1× means Holdfast is faster. RSS / stream: server RSS with every subscriber open and idle, minus after a warm-up, over the subscribers.');
  if (r.resume.length) {
    out.push('', '| resume check (Holdfast) | subscribers | messages | reconnects | complete | doubled | skipped |', '|---|---|---|---|---|---|---|');
    for (const c of r.resume) out.push(`| ${c.transport === 'ws' ? 'WebSocket' : 'SSE'} | ${c.subscribers} | ${c.messages} | ${c.reconnects} | ${c.complete} | ${c.doubled} | ${c.skipped} |`);
  }
  return out.join('\n') + '\n';
}

// ---- npm run bench:streams ----

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i === -1 ? undefined : argv[i + 1];
  };
  const quick = argv.includes('--quick');
  const started = Date.now();
  console.log(`holdfast streams benchmark (${quick ? 'quick' : 'full'}): ${cpus().length} cores (${cpus()[0]?.model}), Linux ${release()}, Node ${process.version}; ${PIN ? 'servers on core 0, load on core 1' : 'not pinned'}`);
  const report = await streamsStep({ quick, runs: arg('--runs') ? Number(arg('--runs')) : undefined, only: arg('--only')?.split(',') as Transport[] | undefined, targets: arg('--targets')?.split(',') });
  const date = new Date().toISOString().slice(0, 10);
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const stem = `streams-${date}${quick ? '-quick' : ''}${arg('--only') || arg('--targets') ? '-partial' : ''}`;
  const machine = { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version, pinned: PIN };
  const { markdown, ...data } = report;
  writeFileSync(new URL(`${stem}.json`, dir), JSON.stringify({ date: new Date().toISOString(), quick, machine, ...data, seconds: Math.round((Date.now() - started) / 1000) }, null, 2));
  writeFileSync(new URL(`${stem}.md`, dir), markdown);
  console.log(`\n${markdown}`);
  console.log(`written: native-bench/results/${stem}.{json,md} in ${Math.round((Date.now() - started) / 1000)} s`);
  const broken = report.resume.filter((c) => c.doubled > 0 || c.skipped > 0 || c.complete < c.subscribers);
  if (broken.length) {
    console.error(`!! resume check failed: ${JSON.stringify(broken)}`);
    process.exitCode = 1;
  }
}
