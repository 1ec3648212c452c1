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
import { ConfigError, configHelp, loadConfig, type Config } from './config.js';
import { startServer } from './server.js';

const USAGE = `holdfast — long-polling server (uWebSockets.js; in-memory broker, or Redis to scale out)

Usage: holdfast [--procs N|auto] [--help] [--version]

  --procs N|auto   run N processes on the same port (auto = one per core; needs Redis when N > 1)
  --help           this text
  --version        print the version

Configuration (environment variables):
${configHelp()}

API: GET /v1/poll, POST /v1/publish[/<channel>], GET|DELETE /v1/channels/<channel>,
     GET /poll, POST /push, DELETE /disconnect, GET /healthz /readyz /metrics (see README).
`;

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
      process.stderr.write(`holdfast: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  const procs = config.procs === 'auto' ? availableParallelism() : config.procs;
  if (procs > 1) {
    if (!config.redisUrl && config.redisClusterNodes.length === 0) {
      process.stderr.write(`holdfast: --procs ${procs} needs REDIS_URL or REDIS_CLUSTER_NODES: the in-memory broker lives in one process, so several processes would not see each other's messages\n`);
      process.exit(2);
    }
    const { supervise } = await import('./supervisor.js');
    return supervise(procs, config);
  }

  const server = await startServer(config);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.context.log.info({ signal }, 'draining');
    // Exit 0 at the deadline even if the drain is not finished.
    setTimeout(() => process.exit(0), config.drainMs).unref();
    server.drain().then(
      () => process.exit(0),
      (err) => {
        server.context.log.error({ err }, 'drain failed');
        process.exit(0);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`holdfast: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
