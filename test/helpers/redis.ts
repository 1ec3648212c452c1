/**
 * Real Redis for tests: redis-server processes on free loopback ports, in a temporary
 * directory, killed when the test file ends. No mocks. Besides single servers and a 3-master
 * Cluster: replicas, Sentinels (Debian's redis-server runs as one with --sentinel), a Cluster
 * with a replica per master, and SIGSTOP/SIGCONT for a Redis that stops answering.
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  /** Everything the process wrote to stdout (its log), for assertions and post-mortems. */
  log = '';

  constructor(
    readonly port: number,
    private readonly extraArgs: string[] = [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `hf-redis-${port}-`));
  }

  /** `host:port` as Sentinel and Cluster name it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** The process runs (started, not exited). */
  get alive(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The command line; a Sentinel overrides it. */
  protected args(): string[] {
    return [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--maxmemory-policy', 'noeviction', '--dir', this.dir, '--protected-mode', 'no', ...this.extraArgs,
    ];
  }

  /** The log line that says the process serves. */
  protected readyMarker = 'Ready to accept connections';

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** A key prefix no other test in this run uses. */
  uniquePrefix(): string {
    return `t${process.pid}x${++prefixes}:`;
  }

  /** Starts redis-server and resolves once it logs that it accepts connections. */
  async start(): Promise<void> {
    const proc = spawn('redis-server', this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    running.add(this);
    const from = this.log.length;
    proc.stdout!.on('data', (d: Buffer) => {
      this.log += d.toString();
    });
    proc.stderr!.resume();
    await new Promise<void>((resolve, reject) => {
      const onData = () => {
        if (this.log.indexOf(this.readyMarker, from) !== -1) {
          proc.stdout!.off('data', onData);
          proc.off('exit', onExit);
          resolve();
        }
      };
      const onExit = (code: number | null) => reject(new Error(`redis-server on ${this.port} exited (${code}): ${this.log.slice(-500)}`));
      proc.stdout!.on('data', onData);
      proc.once('exit', onExit);
    });
  }

  /** Waits (bounded) until the log shows `text` (after what it showed when called, with `fresh`). */
  async waitForLog(text: string | RegExp, limitMs = 20_000): Promise<void> {
    const deadline = Date.now() + limitMs;
    const found = () => (typeof text === 'string' ? this.log.includes(text) : text.test(this.log));
    while (!found()) {
      if (Date.now() > deadline) throw new Error(`redis ${this.port} never logged ${text}: ${this.log.slice(-800)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGSTOP: the process keeps its sockets open and answers nothing. */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  /** Stops the server (SIGKILL: no shutdown save) and waits for the process to end. */
  async stop(): Promise<void> {
    const proc = this.proc;
    running.delete(this);
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await exited;
  }

  kill(): void {
    this.proc?.kill('SIGCONT');
    this.proc?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Extra redis-cli arguments this server needs (a password, TLS). */
  cliArgs: string[] = [];

  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-p', String(this.port), ...this.cliArgs, ...args]);
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

export interface ClusterOptions {
  /** Replicas per master (default 0). */
  replicas?: number;
  /** cluster-node-timeout in ms (default 2000): how soon a dead master fails over. */
  nodeTimeoutMs?: number;
}

/** A 3-master Redis Cluster on loopback (with `replicas` per master), created with redis-cli --cluster create. */
export async function startRedisCluster(options: ClusterOptions = {}): Promise<RedisCluster> {
  const replicas = options.replicas ?? 0;
  const servers = await Promise.all(Array.from({ length: 3 * (1 + replicas) }, () => startClusterNode(options.nodeTimeoutMs ?? 2000)));
  const nodes = servers.map((s) => s.address);
  await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', String(replicas), '--cluster-yes']);
  // Wait (bounded) until every node agrees the cluster is up and every replica is in sync.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const states = await Promise.all(servers.map((s) => s.cli('cluster', 'info')));
    const roles = await Promise.all(servers.map((s) => s.cli('info', 'replication')));
    const replicasUp = roles.filter((r) => r.includes('role:slave') && r.includes('master_link_status:up')).length;
    if (states.every((s) => s.includes('cluster_state:ok')) && replicasUp === 3 * replicas) break;
    if (Date.now() > deadline) throw new Error(`cluster did not come up: ${states.join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { nodes, servers, uniquePrefix: () => servers[0]!.uniquePrefix() };
}

/** A port whose cluster bus port (+10000) is free too. */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10_000 > 65_535) continue;
    const bus = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      bus.once('error', () => resolve(false));
      bus.listen(port + 10_000, '127.0.0.1', () => resolve(true));
    });
    if (free) await new Promise((resolve) => bus.close(resolve));
    if (free) return port;
  }
}

/** A cluster-enabled redis-server, started; a port taken meanwhile by another process is retried. */
async function startClusterNode(nodeTimeoutMs: number): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    const port = await freeClusterPort();
    const server = new RedisServer(port, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', String(nodeTimeoutMs)]);
    try {
      await server.start();
      return server;
    } catch (err) {
      server.kill();
      if (attempt >= 5 || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

/** Per server of a cluster: its role and, for a master, the slot ranges it serves (from CLUSTER NODES). */
export async function clusterLayout(via: RedisServer): Promise<{ address: string; id: string; master: boolean; failed: boolean; slots: [number, number][]; masterId: string }[]> {
  const text = await via.cli('cluster', 'nodes');
  return text.split('\n').filter(Boolean).map((line) => {
    const parts = line.split(' ');
    const slots: [number, number][] = [];
    for (const r of parts.slice(8)) {
      if (r.startsWith('[')) continue; // a slot being migrated
      const [a, b] = r.split('-').map(Number);
      slots.push([a!, b ?? a!]);
    }
    return {
      address: parts[1]!.split('@')[0]!,
      id: parts[0]!,
      master: parts[2]!.includes('master'),
      failed: parts[2]!.includes('fail'),
      slots,
      masterId: parts[3]!,
    };
  });
}

/** A replica of `primary` (replicaof), started and in sync. */
export async function startReplica(primary: RedisServer, extraArgs: string[] = []): Promise<RedisServer> {
  const replica = new RedisServer(await freePort(), ['--replicaof', '127.0.0.1', String(primary.port), ...extraArgs]);
  await replica.start();
  await replica.waitForLog('MASTER <-> REPLICA sync: Finished with success');
  // …and the primary counts it (WAIT only counts replicas it has put online).
  const deadline = Date.now() + 10_000;
  while (!(await primary.cli('info', 'replication')).includes(`port=${replica.port},state=online`)) {
    if (Date.now() > deadline) throw new Error(`the primary on ${primary.port} never put replica ${replica.port} online`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return replica;
}

/** A Sentinel (redis-server --sentinel) monitoring `primary` under `name`. */
export class SentinelServer extends RedisServer {
  protected override readyMarker = '+monitor master';

  constructor(
    port: number,
    private readonly name: string,
    private readonly primary: RedisServer,
    private readonly quorum: number,
    private readonly downAfterMs: number,
    /** More sentinel.conf lines (auth, TLS). */
    private readonly extraConf: string[] = [],
  ) {
    super(port);
  }

  protected override args(): string[] {
    // A Sentinel rewrites its config file, so it gets one of its own.
    const conf = join(this.dir, 'sentinel.conf');
    writeFileSync(conf, [
      `port ${this.port}`,
      'bind 127.0.0.1',
      'protected-mode no',
      `dir ${this.dir}`,
      `sentinel monitor ${this.name} 127.0.0.1 ${this.primary.port} ${this.quorum}`,
      `sentinel down-after-milliseconds ${this.name} ${this.downAfterMs}`,
      `sentinel failover-timeout ${this.name} 10000`,
      `sentinel parallel-syncs ${this.name} 1`,
      ...this.extraConf,
      '',
    ].join('\n'));
    return [conf, '--sentinel'];
  }

  /** The primary's address as this Sentinel names it now. */
  async primaryAddress(): Promise<string> {
    const reply = await this.cli('sentinel', 'get-master-addr-by-name', this.name);
    return reply.split('\n').join(':');
  }
}

export interface SentinelSet {
  name: string;
  primary: RedisServer;
  replica: RedisServer;
  sentinels: SentinelServer[];
  /** REDIS_SENTINELS and REDIS_SENTINEL_NAME for a Holdfast that follows this set. */
  env(): Record<string, string>;
}

/**
 * A primary, one replica and three Sentinels (quorum 2) that fail the primary over
 * `downAfterMs` after it stops answering.
 */
export interface SentinelSetOptions {
  downAfterMs?: number;
  primaryArgs?: string[];
  /** requirepass of the primary and the replica (and the sentinels' auth-pass for them). */
  password?: string;
  /** requirepass of the sentinels themselves. */
  sentinelPassword?: string;
  /** Every process speaks TLS only (replication and sentinel links included), with these files. */
  tls?: TlsFiles;
}

export async function startSentinelSet(options: SentinelSetOptions = {}): Promise<SentinelSet> {
  const name = `hf${process.pid}x${++prefixes}`;
  const tls = options.tls;
  const tlsArgs = (port: number) => (tls ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-replication', 'yes', '--tls-auth-clients', 'no'] : []);
  const authArgs = options.password ? ['--requirepass', options.password, '--masterauth', options.password] : [];
  const cliArgs = [...(tls ? ['--tls', '--cacert', tls.ca] : []), ...(options.password ? ['-a', options.password, '--no-auth-warning'] : [])];
  // No 5 s wait before a full sync: a replica that (re)joins is in sync at once.
  const args = ['--repl-diskless-sync-delay', '0', ...authArgs, ...(options.primaryArgs ?? [])];
  const primaryPort = await freePort();
  const primary = new RedisServer(primaryPort, [...args, ...tlsArgs(primaryPort)]);
  primary.cliArgs = cliArgs;
  await primary.start();
  const replicaPort = await freePort();
  const replica = new RedisServer(replicaPort, ['--replicaof', '127.0.0.1', String(primary.port), ...args, ...tlsArgs(replicaPort)]);
  replica.cliArgs = cliArgs;
  await replica.start();
  await replica.waitForLog('MASTER <-> REPLICA sync: Finished with success');
  const sentinels: SentinelServer[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = [
      ...(options.password ? [`sentinel auth-pass ${name} ${options.password}`] : []),
      ...(options.sentinelPassword ? [`requirepass ${options.sentinelPassword}`, `sentinel sentinel-pass ${options.sentinelPassword}`] : []),
      ...(tls ? ['port 0', `tls-port ${port}`, `tls-cert-file ${tls.cert}`, `tls-key-file ${tls.key}`, `tls-ca-cert-file ${tls.ca}`, 'tls-replication yes', 'tls-auth-clients no'] : []),
    ];
    const sentinel = new SentinelServer(port, name, primary, 2, options.downAfterMs ?? 1000, conf);
    sentinel.cliArgs = [...(tls ? ['--tls', '--cacert', tls.ca] : []), ...(options.sentinelPassword ? ['-a', options.sentinelPassword, '--no-auth-warning'] : [])];
    sentinels.push(sentinel);
  }
  await Promise.all(sentinels.map((s) => s.start()));
  // Every Sentinel must know the replica and the other Sentinels before a failover can work.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const views = await Promise.all(sentinels.map((s) => s.cli('sentinel', 'master', name)));
    const ready = views.every((v) => /num-slaves\n1\b/.test(v) && /num-other-sentinels\n2\b/.test(v));
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`sentinels did not discover each other: ${views.join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    primary,
    replica,
    sentinels,
    env: () => ({ REDIS_SENTINELS: sentinels.map((s) => s.address).join(','), REDIS_SENTINEL_NAME: name }),
  };
}

export interface TlsFiles {
  /** The CA that signed the server certificate (PEM file). */
  ca: string;
  cert: string;
  key: string;
}

/** A throwaway CA and a server certificate for 127.0.0.1, made with openssl. */
export async function makeTlsFiles(): Promise<TlsFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'hf-tls-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const f = (name: string) => join(dir, name);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=holdfast test CA']);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('ext.cnf')]);
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}
