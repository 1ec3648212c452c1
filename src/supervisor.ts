/**
 * `holdfast --procs N`: N server processes on one port (uWS listens with SO_REUSEPORT, so the
 * kernel spreads connections). The supervisor restarts a process that dies, with exponential
 * backoff; a crash loop (CRASH_LIMIT deaths within CRASH_WINDOW_MS) stops everything with a
 * message instead of spinning. SIGTERM/SIGINT are forwarded so each process drains.
 *
 * It also joins the workers' metrics: a scrape lands on one worker, which asks here; the
 * supervisor collects every worker's metrics over IPC, adds its own, and answers with the
 * aggregate (see src/metrics.ts).
 */

import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Config } from './config.js';
import { type ScrapeMessage, WORKER_ENV, isScrapeMessage } from './metrics.js';

const CRASH_LIMIT = 5;
const CRASH_WINDOW_MS = 30_000;
const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 5_000;
/** A worker that has not sent its metrics by then is left out of that scrape. */
const COLLECT_TIMEOUT_MS = 1000;

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export async function supervise(procs: number, config: Config, log: Logger): Promise<void> {
  const entry = fileURLToPath(new URL('./cli.js', import.meta.url));
  const children = new Set<ChildProcess>();
  const deaths: number[] = [];
  let stopping = false;
  let backoff = BACKOFF_START_MS;
  const own = new Registry();
  const restarts = new Counter({ name: 'holdfast_worker_restarts_total', help: 'Worker processes the supervisor restarted after they died (--procs).', registers: [own] });
  const scrapes = new ScrapeAggregator(children, own);

  const spawn = (slot: number): void => {
    const child = fork(entry, [], {
      env: { ...process.env, LP_PROCS: '1', [WORKER_ENV]: String(slot) },
      execArgv: process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) ? process.execArgv : [...process.execArgv, '--max-semi-space-size=2'],
      stdio: 'inherit',
    });
    children.add(child);
    child.on('message', (m: unknown) => {
      if (isScrapeMessage(m)) scrapes.onMessage(child, m);
    });
    child.on('exit', (code, signal) => {
      children.delete(child);
      scrapes.forget(child);
      if (stopping) {
        if (children.size === 0) process.exit(); // exitCode: 1 after a crash loop, else 0
        return;
      }
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! < now - CRASH_WINDOW_MS) deaths.shift();
      const how = signal ?? `exit ${code}`;
      if (deaths.length >= CRASH_LIMIT) {
        log.fatal({ worker: slot, exit: how, deaths: deaths.length, windowS: CRASH_WINDOW_MS / 1000 }, 'worker died; a crash loop: stopping');
        stopping = true;
        for (const c of children) c.kill('SIGTERM');
        process.exitCode = 1;
        if (children.size === 0) process.exit(1);
        return;
      }
      log.error({ worker: slot, exit: how, restartInMs: backoff }, 'worker died; restarting');
      restarts.inc();
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
    log.info({ signal, workers: children.size }, 'draining');
    for (const c of children) c.kill(signal);
    setTimeout(() => process.exit(0), config.drainMs + 1000).unref();
    if (children.size === 0) process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  log.info({ workers: procs, host: config.host, port: config.port }, 'supervisor starting workers');
  for (let i = 0; i < procs; i++) spawn(i);
}

/** Answers a worker's scrape with the aggregate of every worker's metrics and the supervisor's. */
class ScrapeAggregator {
  private nextId = 0;
  private readonly rounds = new Map<number, { parts: MetricsJson[]; waiting: Set<ChildProcess>; done(): void }>();

  constructor(
    private readonly children: Set<ChildProcess>,
    private readonly own: Registry,
  ) {}

  onMessage(from: ChildProcess, m: ScrapeMessage): void {
    if (m.holdfast === 'scrape') void this.scrape(from, m.id);
    else if (m.holdfast === 'collected') {
      const round = this.rounds.get(m.id);
      if (!round || !round.waiting.delete(from)) return;
      round.parts.push(m.metrics);
      if (round.waiting.size === 0) round.done();
    }
  }

  /** A worker that exited will not answer: stop waiting for it. */
  forget(child: ChildProcess): void {
    for (const round of this.rounds.values()) if (round.waiting.delete(child) && round.waiting.size === 0) round.done();
  }

  private async scrape(asker: ChildProcess, askerId: number): Promise<void> {
    const id = this.nextId++;
    const parts: MetricsJson[] = [await this.own.getMetricsAsJSON()];
    const waiting = new Set([...this.children].filter((c) => c.connected));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, COLLECT_TIMEOUT_MS);
      this.rounds.set(id, { parts, waiting, done: () => { clearTimeout(timer); resolve(); } });
      for (const c of waiting) reply(c, { holdfast: 'collect', id });
      if (waiting.size === 0) resolve();
    });
    this.rounds.delete(id);
    try {
      const text = await AggregatorRegistry.aggregate(parts).metrics();
      reply(asker, { holdfast: 'scraped', id: askerId, text });
    } catch (err) {
      reply(asker, { holdfast: 'scraped', id: askerId, error: err instanceof Error ? err.message : String(err) });
    }
  }
}

function reply(child: ChildProcess, message: ScrapeMessage): void {
  if (child.connected) child.send(message);
}
