/**
 * Real Redis for tests: redis-server processes on free loopback ports, in a temporary
 * directory, killed when the test file ends. No mocks.
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const running = new Set<RedisServer>();
process.on('exit', () => {
  for (const r of running) r.kill();
});

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

let prefixes = 0;

export class RedisServer {
  private proc: ChildProcess | undefined;
  readonly dir: string;

  constructor(
    readonly port: number,
    private readonly extraArgs: string[] = [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `hf-redis-${port}-`));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** A key prefix no other test in this run uses. */
  uniquePrefix(): string {
    return `t${process.pid}x${++prefixes}:`;
  }

  /** Starts redis-server and resolves once it logs that it accepts connections. */
  async start(): Promise<void> {
    const proc = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--maxmemory-policy', 'noeviction', '--dir', this.dir, '--protected-mode', 'no', ...this.extraArgs,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    running.add(this);
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const onData = (d: Buffer) => {
        log += d.toString();
        if (log.includes('Ready to accept connections')) {
          proc.stdout!.off('data', onData);
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`redis-server on ${this.port} exited (${code}): ${log.slice(-500)}`)));
    });
    proc.stdout!.resume();
    proc.stderr!.resume();
  }

  /** Stops the server (SIGKILL: no shutdown save) and waits for the process to end. */
  async stop(): Promise<void> {
    const proc = this.proc;
    running.delete(this);
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  }

  kill(): void {
    this.proc?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-p', String(this.port), ...args]);
    return stdout.trim();
  }
}

/** Stops every server this process started (called from the profiles' after() hook). */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...running].map(async (r) => {
    await r.stop();
    r.kill();
  }));
}

export async function startRedis(): Promise<RedisServer> {
  const server = new RedisServer(await freePort());
  await server.start();
  return server;
}

export interface RedisCluster {
  nodes: string[];
  servers: RedisServer[];
  uniquePrefix(): string;
}

/** A 3-master Redis Cluster on loopback, created with redis-cli --cluster create. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const servers: RedisServer[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    servers.push(new RedisServer(port, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000']));
  }
  await Promise.all(servers.map((s) => s.start()));
  const nodes = servers.map((s) => `127.0.0.1:${s.port}`);
  await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes']);
  // Wait (bounded) until every node agrees the cluster is up.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const states = await Promise.all(servers.map((s) => s.cli('cluster', 'info')));
    if (states.every((s) => s.includes('cluster_state:ok'))) break;
    if (Date.now() > deadline) throw new Error(`cluster did not come up: ${states.join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { nodes, servers, uniquePrefix: () => servers[0]!.uniquePrefix() };
}
