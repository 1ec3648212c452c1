/**
 * The servers a benchmark run compares: Holdfast (memory, Redis), Nchan (memory, Redis), the
 * classic Express + ioredis design, and a raw uWebSockets.js server as the ceiling. Each says
 * how to start it and which paths its long-poll and publish use; a peer whose software is
 * missing is skipped with the install command.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT, freePort, metric, nodeServer, pinned, startHoldfast } from './lib.js';

export interface Running {
  port: number;
  pids: number[];
  stop(): Promise<void>;
}

export interface Target {
  name: string;
  /** Why it cannot run here (and how to fix that), or undefined. */
  missing(): string | undefined;
  start(redisUrl: string | undefined): Promise<Running>;
  needsRedis: boolean;
  /** printf format with one %s (the channel or client name) for a long-poll GET. */
  pollPath: string;
  /** pub -u format: %d is the message index when the channel is per message. */
  publishPath(channel: string, perIndex: boolean): string;
  /** pub -b format (%d index, %lld send time µs). */
  publishBody(perIndex: boolean, prefix: string): string;
  supportsFanout: boolean;
  /** The server's own parked count, when it exposes one. */
  parkedCount?(port: number): Promise<number>;
}

const BODY = '{"i":%d,"t":%lld}';

function holdfast(name: string, redis: boolean, cli?: string): Target {
  return {
    name,
    needsRedis: redis,
    missing: () => (existsSync(cli ?? `${ROOT}dist/cli.js`) ? undefined : 'not built: npm run build'),
    start: (redisUrl) => startHoldfast({ LP_POLL_TIMEOUT_MS: '120000', ...(redis ? { REDIS_URL: redisUrl!, LP_REDIS_PREFIX: `b${Date.now()}:` } : {}) }, 1, [], cli),
    pollPath: '/v1/poll?ch=%s&timeout=120000',
    publishPath: (ch, perIndex) => `/v1/publish/${ch}${perIndex ? '%d' : ''}`,
    publishBody: () => BODY,
    supportsFanout: true,
    parkedCount: (port) => metric(port, 'holdfast_parked_polls'),
  };
}

async function startNode(script: string, env: Record<string, string>): Promise<Running> {
  const port = await freePort();
  const [cmd, args] = nodeServer(['--max-semi-space-size=2', script]);
  const proc = spawn(cmd, args, { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
  return waitListening(proc, port);
}

async function waitListening(proc: ChildProcess, port: number): Promise<Running> {
  const pids: number[] = [];
  for await (const line of createInterface({ input: proc.stdout! })) {
    try {
      const e = JSON.parse(line);
      if (e.msg === 'holdfast listening') pids.push(e.pid);
    } catch { /* other output */ }
    if (pids.length) break;
  }
  proc.stdout!.resume();
  return { port, pids, stop: () => stopProc(proc) };
}

async function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 8000);
  await exited;
  clearTimeout(timer);
}

function nchan(name: string, redis: boolean): Target {
  return {
    name,
    needsRedis: redis,
    missing: () =>
      existsSync('/usr/sbin/nginx') && existsSync('/usr/lib/nginx/modules/ngx_nchan_module.so')
        ? undefined
        : 'Nchan is not installed: apt-get install nginx-light libnginx-mod-nchan',
    start: async (redisUrl) => {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'hf-nchan-'));
      mkdirSync(join(dir, 'body'));
      const conf = readFileSync(new URL('./peers/nchan.conf.template', import.meta.url), 'utf8')
        .replaceAll('__DIR__', dir)
        .replaceAll('__PORT__', String(port))
        .replaceAll('__REDIS__', redis ? `upstream redis_server { nchan_redis_server ${redisUrl}; }` : '')
        .replaceAll('__USE_REDIS__', redis ? 'nchan_redis_pass redis_server;' : '');
      writeFileSync(join(dir, 'nginx.conf'), conf);
      const [cmd, args] = pinned(0, '/usr/sbin/nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);
      const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      // Ready when it answers; the worker is the child of the master.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${port}/pub/ready`, { method: 'POST', body: 'x' }).then((r) => r.status < 500, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8').slice(-400)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const master = Number(readFileSync(join(dir, 'nginx.pid'), 'utf8'));
      const workers = execFileSync('pgrep', ['-P', String(master)]).toString().trim().split('\n').map(Number);
      return { port, pids: [master, ...workers], stop: () => stopProc(proc) };
    },
    pollPath: '/sub/%s',
    publishPath: (ch, perIndex) => `/pub/${ch}${perIndex ? '%d' : ''}`,
    publishBody: () => BODY,
    supportsFanout: true,
  };
}

const expressSeed: Target = {
  name: 'express+ioredis',
  needsRedis: true,
  missing: () => (existsSync(`${ROOT}node_modules/express`) ? undefined : 'express is not installed: npm ci (it is a dev dependency)'),
  start: (redisUrl) => startNode(new URL('./peers/express-seed.mjs', import.meta.url).pathname, { REDIS_URL: redisUrl! }),
  pollPath: '/poll?clientId=%s&timeout=120000',
  publishPath: () => '/push',
  publishBody: (_perIndex, prefix) => `{"clientId":"${prefix}%d","message":{"t":%lld}}`,
  supportsFanout: false,
};

const rawUws: Target = {
  name: 'raw uWS',
  needsRedis: false,
  missing: () => undefined,
  start: () => startNode(new URL('./peers/raw-uws.mjs', import.meta.url).pathname, {}),
  pollPath: '/v1/poll?ch=%s',
  publishPath: (ch, perIndex) => `/v1/publish/${ch}${perIndex ? '%d' : ''}`,
  publishBody: () => BODY,
  supportsFanout: true,
  parkedCount: async (port) => Number(await (await fetch(`http://127.0.0.1:${port}/parked`)).text()),
};

// BENCH_HOLDFAST_B=<path to another build's cli.js>: that build runs beside this one, as
// "holdfast B (…)", in the same interleaved runs (an A/B experiment).
const B = process.env.BENCH_HOLDFAST_B;

export const TARGETS: Target[] = [
  holdfast('holdfast (memory)', false),
  holdfast('holdfast (redis)', true),
  ...(B ? [holdfast('holdfast B (memory)', false, B), holdfast('holdfast B (redis)', true, B)] : []),
  nchan('nchan (memory)', false),
  nchan('nchan (redis)', true),
  expressSeed,
  rawUws,
];
