#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * `holdfast` — runs the server.
 *
 * The shebang (and `npm start`) run Node with a 2 MiB young generation: measured with
 * `npm run bench:park`, the default 16 MiB semi-spaces add ~1 KiB of RSS per parked poll
 * while thousands of polls arrive, for no gain on this workload. Configuration comes from the environment (see --help);
 * a bad value exits with status 2 and a message naming the variable.
 */

import { availableParallelism } from 'node:os';
import { pino, type Logger } from 'pino';
import { ConfigError, configHelp, loadConfig, redisMode, type Config } from './config.js';
import { WORKER_ENV } from './metrics.js';
import { startServer } from './server.js';
import { runStartupChecks } from './startup-checks.js';

const USAGE = `holdfast — long-polling server (uWebSockets.js; in-memory broker, or Redis to scale out)

Usage: holdfast [--procs N|auto] [--help] [--version]

  --procs N|auto   run N processes on the same port (auto = one per core; needs Redis when N > 1)
  --help           this text
  --version        print the version

Under a process supervisor (systemd, Docker, Kubernetes), start the server itself:
node_modules/.bin/holdfast (or node --max-semi-space-size=2 node_modules/holdfast/dist/cli.js;
in a clone, npm start, which execs it). SIGTERM then reaches the server, which drains and exits 0.
npx holdfast is for a terminal: npm runs it through a shell, and a signal sent to npm's pid
stops npm and the shell but not the server.
Logs are JSON lines (pino) on stdout. Exit status: 0 after a drain, 1 on a fatal error,
2 for a bad variable or argument.

Configuration (environment variables):
${configHelp()}

API: GET /v1/poll, GET /v1/sse, GET /v1/ws (WebSocket), POST /v1/publish[/<channel>],
     GET|DELETE /v1/channels/<channel>, GET /poll, POST /push, DELETE /disconnect,
     GET /healthz /readyz /metrics, GET /v1/openapi.json (the API as an OpenAPI 3.1 document; see README).
`;

/** The worker slot when this process is one of `--procs N` (set by the supervisor). */
const workerSlot = process.env[WORKER_ENV];

/** Every line this process writes is a pino JSON line, from its first to its last. */
function logger(level: string, role: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...role } });
}

let log = logger('info', workerSlot !== undefined ? { worker: Number(workerSlot) } : {});

/** Logs a fatal start-up error and exits with `code` (2: bad configuration or arguments). */
function die(code: number, msg: string, fields: Record<string, unknown> = {}): never {
  // Written even with LOG_LEVEL=silent: an exit needs its reason.
  (log.isLevelEnabled('fatal') ? log : log.child({}, { level: 'fatal' })).fatal(fields, msg);
  process.exit(code);
}

function parseArgs(argv: string[]): { procs?: string; help: boolean; version: boolean } {
  const out: { procs?: string; help: boolean; version: boolean } = { help: false, version: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') out.help = true;
    else if (a === '--version' || a === '-v') out.version = true;
    else if (a === '--procs') out.procs = argv[++i];
    else if (a.startsWith('--procs=')) out.procs = a.slice('--procs='.length);
    else throw new ConfigError(`unknown argument ${JSON.stringify(a)}; see holdfast --help`);
  }
  if ('procs' in out && (out.procs === undefined || out.procs === '')) throw new ConfigError('--procs needs a value: a number or auto');
  return out;
}

async function main(): Promise<void> {
  let config: Config;
  try {
    const args = parseArgs(process.argv.slice(2));
    if (args.help) {
      process.stdout.write(USAGE);
      return;
    }
    if (args.version) {
      const { createRequire } = await import('node:module');
      process.stdout.write(`${createRequire(import.meta.url)('../package.json').version}\n`);
      return;
    }
    const env = args.procs !== undefined ? { ...process.env, LP_PROCS: args.procs } : process.env;
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // The message starts with the variable (`LP_MAX_PARKED="lots" is not valid: …`).
      const variable = /^([A-Z][A-Z0-9_]*)=/.exec(err.message)?.[1];
      die(2, err.message, variable ? { variable } : {});
    }
    throw err;
  }

  const procs = config.procs === 'auto' ? availableParallelism() : config.procs;
  if (workerSlot === undefined) {
    // Checked once, by the process the operator started (workers share its environment).
    log = logger(config.logLevel, procs > 1 ? { role: 'supervisor' } : {});
    runStartupChecks(process.env, config, log);
  } else {
    log = logger(config.logLevel, { worker: Number(workerSlot) });
  }
  if (procs > 1) {
    if (redisMode(config) === 'memory') {
      die(2, `--procs ${procs} needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES: the in-memory broker lives in one process, so several processes would not see each other's messages`, { variable: 'LP_PROCS' });
    }
    const { supervise } = await import('./supervisor.js');
    return supervise(procs, config, log);
  }

  const server = await startServer(config, { logger: log });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    // Exit 0 at the deadline even if the drain is not finished.
    setTimeout(() => process.exit(0), config.drainMs).unref();
    server.drain().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'drain failed');
        process.exit(0);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => die(1, err instanceof Error ? err.message : String(err), { err }));
