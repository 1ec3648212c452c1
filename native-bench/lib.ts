/** Shared pieces of the benchmark orchestrators: servers, load processes, RSS, metrics. */

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import net from 'node:net';

export const ROOT = new URL('../', import.meta.url).pathname;
export const PARK = new URL('./build/park', import.meta.url).pathname;
export const PUB = new URL('./build/pub', import.meta.url).pathname;
/** Server on core 0, load on core 1 (when taskset exists and there are 2+ cores). */
export const PIN = existsSync('/usr/bin/taskset');

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export function pinned(core: number, cmd: string, args: string[]): [string, string[]] {
  return PIN ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
}

/**
 * How server processes (Holdfast and the Node peers) are started: `wrap` is a command that
 * runs before node (e.g. valgrind for instruction counts), `slow` stretches start-up waits.
 */
export const serverRunner = { wrap: [] as string[], slow: 1 };

/** `node <args>` pinned to core 0, inside serverRunner.wrap when one is set. */
export function nodeServer(args: string[]): [string, string[]] {
  const [w, ...wargs] = serverRunner.wrap;
  return w ? pinned(0, w, [...wargs, process.execPath, ...args]) : pinned(0, process.execPath, args);
}

export interface Server {
  proc: ChildProcess;
  port: number;
  pids: number[];
  stop(): Promise<void>;
}

/** Starts `node dist/cli.js` (build first) pinned to core 0; resolves when `procs` processes listen. */
export async function startHoldfast(env: Record<string, string>, procs = 1, extraArgs: string[] = [], cliPath?: string): Promise<Server> {
  const port = Number(env.PORT) || (await freePort());
  // The same Node flags as the holdfast bin (src/cli.ts shebang); BENCH_NODE_FLAGS overrides.
  const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '--max-semi-space-size=2').split(' ').filter(Boolean);
  // BENCH_HOLDFAST: another build of the CLI (an A/B experiment), instead of dist/cli.js.
  const cli = cliPath ?? process.env.BENCH_HOLDFAST ?? `${ROOT}dist/cli.js`;
  const [cmd, args] = nodeServer([...nodeFlags, cli, ...extraArgs]);
  const proc = spawn(cmd, args, {
    env: { ...process.env, LOG_LEVEL: 'info', HOST: '127.0.0.1', LP_MAX_PARKED: '1000000', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pids: number[] = [];
  for await (const line of createInterface({ input: proc.stdout! })) {
    try {
      const e = JSON.parse(line);
      if (e.msg === 'holdfast listening') pids.push(e.pid);
    } catch { /* not a log line */ }
    if (pids.length === procs) break;
  }
  proc.stdout!.resume();
  // Listening is not ready: on Redis the broker connects after the listen socket opens.
  const deadline = Date.now() + 15_000 * serverRunner.slow;
  while ((await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0)) !== 200) {
    if (Date.now() > deadline) throw new Error('holdfast did not become ready (is Redis up?)');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc, port, pids,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ').pop()) : NaN;
}

export interface ParkResult {
  requested: number; connected: number; parked: number; early: number; answered: number; errors: number;
  /** -F: bytes read (headers included); -G: when the burst of requests was written. */
  bytes: number; sent_us: number;
  first_us: number; p50_us: number; p99_us: number; last_us: number;
}

export interface ParkRun {
  /** Resolves when every load process has written all its requests. */
  parked: Promise<void>;
  /** Resolves with each process's summary once answers are in (or its wait ran out). */
  done: Promise<ParkResult[]>;
  /** With `hold`: lets the load processes close their sockets and exit. */
  release(): Promise<void>;
}

/**
 * Runs enough park processes (≤ 19,000 sockets each: the 20,000-file cap) for `n` polls.
 * `hold`: the processes keep their sockets open after reporting, until release() (so a
 * measurement of the server can end before it sees the connections close).
 */
export function park(port: number, n: number, opts: { channel?: string; prefix?: string; waitS?: number; rate?: number; seed?: boolean; path?: string; dump?: string; hold?: boolean; headers?: string[]; full?: boolean; gate?: boolean } = {}): ParkRun {
  const perProc = 19_000;
  const procs: Promise<ParkResult>[] = [];
  const parkedSignals: Promise<void>[] = [];
  const children: ChildProcess[] = [];
  const exits: Promise<unknown>[] = [];
  for (let offset = 0; offset < n; offset += perProc) {
    const count = Math.min(perProc, n - offset);
    const args = ['-p', String(port), '-n', String(count), '-w', String(opts.waitS ?? 10), '-r', String(opts.rate ?? 10_000), '-s', '16'];
    if (opts.prefix) args.push('-C', opts.prefix, '-o', String(offset));
    else args.push('-c', opts.channel ?? 'bench');
    if (opts.seed) args.push('-S');
    if (opts.path) args.push('-u', opts.path);
    if (opts.dump) args.push('-O', procs.length === 0 ? opts.dump : `${opts.dump}.${procs.length}`);
    if (opts.hold) args.push('-x');
    for (const h of opts.headers ?? []) args.push('-h', h);
    if (opts.full) args.push('-F');
    if (opts.gate) args.push('-G');
    const [cmd, a] = pinned(1, PARK, args);
    const p = spawn(cmd, a, { stdio: [opts.hold ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    children.push(p);
    const exited = new Promise<number | null>((resolve) => p.once('exit', resolve));
    exits.push(exited);
    parkedSignals.push(new Promise((resolve) => {
      let err = '';
      p.stderr!.on('data', (d) => {
        err += d;
        if (err.includes('parked')) resolve();
      });
      void exited.then(() => resolve());
    }));
    // The summary is one line on stdout, written before a holding process waits.
    procs.push(new Promise<ParkResult>((resolve, reject) => {
      let out = '';
      p.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(JSON.parse(out) as ParkResult);
      });
      void exited.then((code) => reject(new Error(`park exited ${code} with ${JSON.stringify(out.slice(0, 200))}`)));
    }));
  }
  const done = Promise.all(procs);
  done.catch(() => undefined); // a load process that fails early is reported when awaited
  return {
    parked: Promise.all(parkedSignals).then(() => undefined),
    done,
    release: async () => {
      for (const c of children) c.stdin?.end();
      await Promise.all(exits);
    },
  };
}

/** Waits (bounded) until `count()` reaches `n`; returns the last count. */
export async function waitCount(count: () => Promise<number>, n: number, limitMs = 60_000): Promise<number> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const c = await count();
    if (c >= n || Date.now() > deadline) return c;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits (bounded) until the servers report `n` parked polls in total. */
export async function waitParked(ports: number[], n: number, limitMs = 60_000): Promise<number> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    let total = 0;
    for (const p of ports) total += await metric(p, 'holdfast_parked_polls');
    if (total >= n || Date.now() > deadline) return total;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs native-bench/build/pub on the load core; resolves with its summary. */
export function pub(port: number, args: string[]): Promise<{ sent: number; ok: number; failed: number; start_us: number; end_us: number }> {
  return new Promise((resolve, reject) => {
    const [cmd, a] = pinned(1, PUB, ['-p', String(port), ...args]);
    const p = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('exit', () => {
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`pub failed: ${out}`));
      }
    });
  });
}
