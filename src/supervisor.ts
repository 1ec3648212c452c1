/**
 * `holdfast --procs N`: N server processes on one port (uWS listens with SO_REUSEPORT, so the
 * kernel spreads connections). The supervisor restarts a process that dies, with exponential
 * backoff; a crash loop (CRASH_LIMIT deaths within CRASH_WINDOW_MS) stops everything with a
 * message instead of spinning. SIGTERM/SIGINT are forwarded so each process drains.
 */

import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from './config.js';

const CRASH_LIMIT = 5;
const CRASH_WINDOW_MS = 30_000;
const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 5_000;

export async function supervise(procs: number, config: Config): Promise<void> {
  const entry = fileURLToPath(new URL('./cli.js', import.meta.url));
  const children = new Set<ChildProcess>();
  const deaths: number[] = [];
  let stopping = false;
  let backoff = BACKOFF_START_MS;

  const log = (msg: string) => process.stderr.write(`holdfast supervisor: ${msg}\n`);

  const spawn = (slot: number): void => {
    const child = fork(entry, [], {
      env: { ...process.env, LP_PROCS: '1', HOLDFAST_WORKER: String(slot) },
      execArgv: process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) ? process.execArgv : [...process.execArgv, '--max-semi-space-size=2'],
      stdio: 'inherit',
    });
    children.add(child);
    child.on('exit', (code, signal) => {
      children.delete(child);
      if (stopping) {
        if (children.size === 0) process.exit(0);
        return;
      }
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! < now - CRASH_WINDOW_MS) deaths.shift();
      if (deaths.length >= CRASH_LIMIT) {
        log(`process ${slot} died (${signal ?? `exit ${code}`}); ${deaths.length} deaths within ${CRASH_WINDOW_MS / 1000} s: a crash loop, stopping`);
        stopping = true;
        for (const c of children) c.kill('SIGTERM');
        process.exitCode = 1;
        if (children.size === 0) process.exit(1);
        return;
      }
      log(`process ${slot} died (${signal ?? `exit ${code}`}); restarting in ${backoff} ms`);
      setTimeout(() => spawn(slot), backoff);
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    });
    child.on('spawn', () => {
      // A process that stays up for a while resets the backoff.
      setTimeout(() => {
        if (children.has(child)) backoff = BACKOFF_START_MS;
      }, CRASH_WINDOW_MS).unref();
    });
  };

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining ${children.size} processes`);
    for (const c of children) c.kill(signal);
    setTimeout(() => process.exit(0), config.drainMs + 1000).unref();
    if (children.size === 0) process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  log(`starting ${procs} processes on ${config.host}:${config.port}`);
  for (let i = 0; i < procs; i++) spawn(i);
}
