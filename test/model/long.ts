/**
 * The checker for as long as asked, or one case replayed:
 *
 *   npm run check:long -- --minutes 30 [--profile memory|redis|two|cluster|all]
 *   npm run check:long -- --profile redis --seed 123 --path '45:2:1' [--replay-path 'AB:C']
 *
 * Options: --max-commands N (default 60), --history N (LP_HISTORY_SIZE, default 12),
 * --ttl S (LP_HISTORY_TTL_S, default 3600; a few seconds makes TTL gaps happen),
 * --chunk S (seconds per seed, default 60), --shrink S (seconds to shrink a failure, default 120). The time is shared by the profiles; each gets
 * fresh seeds one chunk at a time. Prints every seed it used, each failure in full, and a
 * summary; exits 1 when anything failed.
 */

import { parseArgs } from 'node:util';
import { randomSeed, search } from './check.js';
import { tally } from './model.js';
import { ALL_PROFILES, DEFAULT_WORLD, type ProfileName, hasRedisServer, startWorld, wantedProfiles } from './world.js';

const USAGE = 'usage: npm run check:long -- --minutes N [--profile memory|redis|two|cluster|all] [--seed S --path P [--replay-path R]] [--max-commands N] [--history N] [--ttl S] [--chunk S] [--shrink S]';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    profile: { type: 'string', default: 'all' },
    seed: { type: 'string' },
    path: { type: 'string' },
    'replay-path': { type: 'string' },
    'max-commands': { type: 'string', default: '60' },
    history: { type: 'string', default: String(DEFAULT_WORLD.historySize) },
    ttl: { type: 'string', default: String(DEFAULT_WORLD.ttlS) },
    chunk: { type: 'string', default: '60' },
    shrink: { type: 'string', default: '120' },
    help: { type: 'boolean' },
  },
});

function positive(name: string, raw: string | undefined): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number, got ${JSON.stringify(raw)}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const replaying = values.path !== undefined;
if (replaying && values.seed === undefined) {
  console.error(`--path needs the --seed it came with\n${USAGE}`);
  process.exit(2);
}
const minutes = replaying ? 0 : positive('minutes', values.minutes);
let profiles: ProfileName[];
if (values.profile === 'all') profiles = wantedProfiles();
else if ((ALL_PROFILES as readonly string[]).includes(values.profile!)) profiles = [values.profile as ProfileName];
else {
  console.error(`--profile must be one of ${ALL_PROFILES.join(', ')}, all\n${USAGE}`);
  process.exit(2);
}
if (profiles.some((p) => p !== 'memory') && !hasRedisServer()) {
  console.error(`profile ${values.profile} needs redis-server on PATH`);
  process.exit(2);
}
const maxCommands = positive('max-commands', values['max-commands']);
const worldOptions = { historySize: positive('history', values.history), ttlS: positive('ttl', values.ttl) };
const chunkMs = positive('chunk', values.chunk) * 1000;
const shrinkMs = Number(values.shrink) * 1000;

interface Summary {
  profile: ProfileName;
  runs: number;
  seeds: number[];
  failures: string[];
}

const totals = new Map<string, number>();
const summaries: Summary[] = [];
const perProfileMs = (minutes * 60_000) / profiles.length;
const t0 = Date.now();

for (const profile of profiles) {
  const world = await startWorld(profile, worldOptions);
  const summary: Summary = { profile, runs: 0, seeds: [], failures: [] };
  summaries.push(summary);
  const deadline = Date.now() + perProfileMs;
  try {
    do {
      const seed = values.seed !== undefined ? Number(values.seed) : randomSeed();
      const left = Math.max(1000, deadline - Date.now());
      const budgetMs = replaying ? 600_000 : values.seed !== undefined ? left : Math.min(chunkMs, left);
      const result = await search({ world, budgetMs, shrinkMs, seed, maxCommands, path: values.path, replayPath: values['replay-path'] });
      summary.runs += result.runs;
      summary.seeds.push(seed);
      for (const [k, v] of tally) totals.set(k, (totals.get(k) ?? 0) + v);
      console.log(`[${profile}] seed ${seed}: ${result.runs} runs in ${(result.elapsedMs / 1000).toFixed(1)} s — ${result.ok ? 'ok' : 'FAILED'}`);
      if (!result.ok) {
        summary.failures.push(`seed ${seed}`);
        console.log(result.report);
      }
    } while (!replaying && values.seed === undefined && Date.now() < deadline - 1000);
  } finally {
    await world.close();
  }
}

console.log(`\nsummary after ${((Date.now() - t0) / 60_000).toFixed(1)} min (history ${worldOptions.historySize}, ttl ${worldOptions.ttlS} s, up to ${maxCommands} commands per run):`);
for (const s of summaries) {
  console.log(`  ${s.profile.padEnd(8)} ${String(s.runs).padStart(7)} runs, ${s.failures.length === 0 ? 'no failures' : `FAILED: ${s.failures.join(', ')}`}; seeds ${s.seeds.join(' ')}`);
}
console.log(`  exercised: ${[...totals].sort((a, b) => a[0].localeCompare(b[0])).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
process.exit(summaries.some((s) => s.failures.length > 0) ? 1 : 0);
