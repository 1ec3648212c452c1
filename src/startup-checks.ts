/**
 * Start-up checks that only warn: the server runs, but the operator is told what will go
 * wrong and how to fix it, instead of finding out from polls that hang.
 *
 * - An `LP_*` variable that Holdfast does not know is a typo (`LP_HISTORY_SIZ=10`): it would
 *   be ignored silently, so name it and the known variable closest to it.
 * - Each parked poll holds a socket, so an open-file limit below LP_MAX_PARKED means the
 *   process runs out of descriptors before admission answers 503: new connections then fail
 *   with no answer at all, `/healthz` included, and nothing is logged.
 */

import { readFileSync, readdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { CONFIG_VARIABLES, type Config } from './config.js';

/**
 * Descriptors needed besides parked polls and those open at start-up: the listen socket,
 * Redis connections, publishers' and probes' connections.
 */
export const FD_HEADROOM = 32;

export interface UnknownVariable {
  variable: string;
  /** The known variable nearest by edit distance, when one is near enough to be the intent. */
  closest: string | undefined;
}

/** `LP_*` names in `env` that Holdfast does not read, each with its likeliest intent. */
export function unknownVariables(env: Record<string, string | undefined>, known: readonly string[] = CONFIG_VARIABLES): UnknownVariable[] {
  const out: UnknownVariable[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('LP_') || known.includes(name)) continue;
    let closest: string | undefined;
    let best = Infinity;
    for (const candidate of known) {
      const d = editDistance(name, candidate);
      if (d < best) [best, closest] = [d, candidate];
    }
    // Farther than a third of the name is not a typo of it.
    out.push({ variable: name, closest: best <= Math.max(2, Math.floor(name.length / 3)) ? closest : undefined });
  }
  return out;
}

/** Levenshtein distance (insert, delete, substitute: 1 each). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** The soft open-file limit (`ulimit -n`) from /proc/self/limits; undefined where there is none. */
export function openFileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined; // not Linux: no check
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m) return undefined;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** Descriptors this process has open now (Linux); 0 where that cannot be read. */
export function openFileCount(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

export interface FdShortfall {
  openFileLimit: number;
  maxParked: number;
  /** Descriptors open when the check ran. */
  openFiles: number;
  /** The limit that fits LP_MAX_PARKED polls, what is open, and the headroom. */
  needed: number;
  /** The LP_MAX_PARKED that fits the current limit. */
  fits: number;
}

export function fdShortfall(limit: number | undefined, maxParked: number, openFiles: number): FdShortfall | undefined {
  const reserved = openFiles + FD_HEADROOM;
  if (limit === undefined || limit >= maxParked + reserved) return undefined;
  return { openFileLimit: limit, maxParked, openFiles, needed: maxParked + reserved, fits: Math.max(1, limit - reserved) };
}

/** Runs every check and logs a warning per finding. Returns the findings (for tests). */
export function runStartupChecks(env: Record<string, string | undefined>, config: Pick<Config, 'maxParked'>, log: Logger, limit = openFileLimit(), openFiles = openFileCount()) {
  const unknown = unknownVariables(env);
  for (const u of unknown) {
    log.warn(
      u,
      u.closest
        ? `unknown variable ${u.variable} is ignored; did you mean ${u.closest}?`
        : `unknown variable ${u.variable} is ignored; no Holdfast variable is close to it (holdfast --help lists them)`,
    );
  }
  const fds = fdShortfall(limit, config.maxParked, openFiles);
  if (fds) {
    log.warn(
      fds,
      `the open-file limit is ${fds.openFileLimit}, below LP_MAX_PARKED=${fds.maxParked}: each parked poll holds a socket, ` +
        `so past about ${fds.fits} polls new connections fail with no answer (not the 503 that LP_MAX_PARKED gives). ` +
        `Raise the limit to at least ${fds.needed} (\`ulimit -n ${fds.needed}\` in the shell that starts holdfast, ` +
        `LimitNOFILE=${fds.needed} in its systemd unit, --ulimit nofile=${fds.needed}:${fds.needed} with docker run), ` +
        `or set LP_MAX_PARKED=${fds.fits}`,
    );
  }
  return { unknown, fds };
}
