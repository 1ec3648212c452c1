/**
 * A real nginx for tests (Debian nginx-light; .ci/run installs it): started on a free loopback
 * port with `-p <tmpdir> -c <conf>` and `daemon off;`, in front of a Holdfast test server,
 * loading the README's recommended configuration (test/proxy/nginx-holdfast.conf) unchanged
 * except for its two addresses. Stopped by its owner; killed when the test process exits.
 *
 * HOLDFAST_VIA=nginx puts one in front of every server startTestServer() starts, so the
 * contract suite runs through the tested configuration (see startTestServer).
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort } from './redis.js';

export const NGINX = '/usr/sbin/nginx';
/** The README's "Behind a proxy" snippet, as a file. */
export const RECOMMENDED_CONF = new URL('../proxy/nginx-holdfast.conf', import.meta.url);

/** The two lines the harness rewrites; each must appear exactly once in the snippet. */
const UPSTREAM_LINE = 'server 127.0.0.1:3000;';
const LISTEN_LINE = 'listen 80;';

export function hasNginx(): boolean {
  if (!existsSync(NGINX)) return false;
  try {
    execFileSync(NGINX, ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGTERM');
});

export interface Nginx {
  readonly url: string;
  readonly port: number;
  /** nginx's error log so far (for assertion messages). */
  errorLog(): string;
  stop(): Promise<void>;
}

/** The recommended snippet pointed at `upstreamPort` and listening on 127.0.0.1:`port`. */
export function snippetFor(upstreamPort: number, port: number, snippet = readFileSync(RECOMMENDED_CONF, 'utf8')): string {
  for (const line of [UPSTREAM_LINE, LISTEN_LINE]) {
    if (snippet.split(line).length !== 2) throw new Error(`${RECOMMENDED_CONF.pathname} must contain "${line}" exactly once`);
  }
  return snippet.replace(UPSTREAM_LINE, `server 127.0.0.1:${upstreamPort};`).replace(LISTEN_LINE, `listen 127.0.0.1:${port};`);
}

/**
 * Starts nginx in front of a Holdfast on `upstreamPort` (with `snippet` instead of the
 * recommended configuration, when given); resolves once it accepts connections.
 */
export async function startNginx(upstreamPort: number, snippet?: string): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'hf-nginx-'));
  // Run as root, nginx's worker drops to an unprivileged user: it must reach its temp folders.
  chmodSync(dir, 0o755);
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub), { mode: 0o777 });
  const port = await freePort();
  writeFileSync(join(dir, 'holdfast.conf'), snippetFor(upstreamPort, port, snippet));
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'worker_processes 1;',
      'daemon off;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'worker_rlimit_nofile 20000;',
      'worker_shutdown_timeout 2s;',
      'events { worker_connections 9000; }',
      'http {',
      '  access_log off;',
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      `  include ${dir}/holdfast.conf;`,
      '}',
      '',
    ].join('\n'),
  );
  const proc = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(proc);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(proc, 'exit');
  const errorLog = () => {
    try {
      return stderr + readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      return stderr;
    }
  };
  // Ready when the port accepts a connection (nginx binds before it forks its worker).
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      running.delete(proc);
      throw new Error(`nginx did not start: ${errorLog().slice(-800)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    errorLog,
    stop: () =>
      (stopped ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGQUIT'); // graceful: in-flight answers are relayed first
          const fast = setTimeout(() => proc.kill('SIGTERM'), 3000);
          await exited;
          clearTimeout(fast);
        }
        running.delete(proc);
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

// ---- HOLDFAST_VIA=nginx: the contract suite through the tested configuration ----

/** Front URL → the publish key the harness gave its server (see withFrontKey). */
const frontKeys = new Map<string, string>();

/**
 * Whether startTestServer puts nginx in front: HOLDFAST_VIA=nginx, unless the test asks for a
 * direct connection (VIA=direct: it tests the keyless loopback rule, or raw uWS behaviour).
 */
export function frontedByNginx(via: string | undefined): boolean {
  if (via === 'direct' || process.env.HOLDFAST_VIA !== 'nginx') return false;
  if (!hasNginx()) throw new Error('HOLDFAST_VIA=nginx but nginx is not installed (apt-get install nginx-light)');
  return true;
}

/**
 * Keyless publishing is loopback-only and never through a proxy, so a server that a test
 * starts without LP_PUBLISH_KEY gets one when fronted, and the helpers' publisher requests
 * through the front carry it (as a publisher behind a proxy must).
 */
export function frontEnv(vars: Record<string, string>): { vars: Record<string, string>; key: string | undefined } {
  if (vars.LP_PUBLISH_KEY !== undefined) return { vars, key: undefined };
  const key = `front-${randomBytes(12).toString('hex')}`;
  return { vars: { ...vars, LP_PUBLISH_KEY: key }, key };
}

export function rememberFrontKey(url: string, key: string | undefined): void {
  if (key !== undefined) frontKeys.set(url, key);
}

export function forgetFrontKey(url: string): void {
  frontKeys.delete(url);
}

const PUBLISHER_PATHS = /^\/(v1\/publish|v1\/channels\/|push$|disconnect$)/;

/** Adds the front's publish key to a publisher request through it that has no Authorization. */
export function withFrontKey(url: string, headers: Headers): void {
  if (frontKeys.size === 0 || headers.has('authorization')) return;
  const u = new URL(url);
  const key = frontKeys.get(u.origin);
  if (key !== undefined && PUBLISHER_PATHS.test(u.pathname)) headers.set('authorization', `Bearer ${key}`);
}
