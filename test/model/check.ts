/**
 * The search: fast-check generates a run (clients) and a command list, drives the world with
 * it and checks every answer. A failure is then shrunk (bounded in time) from its seed and
 * path, and reported with the seed, the replay path, the shrunk command history and the
 * transcript of the failing run (every request and answer, in order).
 *
 *   phase 1: runs until the time budget ends or one fails (no shrinking: a shared machine
 *            should not spend its budget shrinking a case that is then re-run anyway);
 *   phase 2: replays that case (seed + path) and shrinks it for at most `shrinkMs`.
 * A case whose failure depends on timing may not fail again in phase 2: then the unshrunk
 * case is reported.
 */

import fc from 'fast-check';
import { type Cmd, commandArbs, runSpecArb } from './commands.js';
import { mintToken } from './driver.js';
import { finish } from './finish.js';
import { Violation, showTally, tally } from './model.js';
import { Run, type RunSpec } from './run.js';
import { installSeedChecks } from './seeds.js';
import type { World } from './world.js';

/** Runs one command list on `world` from a fresh run; throws with the run's transcript on failure. */
export async function runScenario(world: World, spec: RunSpec, cmds: Iterable<Cmd>): Promise<void> {
  const run = await Run.create(world, spec, (grants) => mintToken(world.jwtSecret, grants));
  installSeedChecks(run);
  try {
    await fc.asyncModelRun(() => ({ model: run, real: run }), cmds);
    await finish(run);
  } catch (err) {
    const kind = err instanceof Violation ? 'CONTRACT VIOLATION' : 'ERROR (a failed request, or a bug in the checker)';
    const message = err instanceof Error ? err.message : String(err);
    const cause = (err as { cause?: Error } | undefined)?.cause?.message;
    const wrapped = new Violation(`${kind} [${world.profile}]: ${message}${cause ? ` (${cause})` : ''}\n--- transcript of the failing run ---\n${run.transcript()}`);
    if (!(err instanceof Violation) && err instanceof Error) wrapped.stack = `${wrapped.message}\n${err.stack}`;
    throw wrapped;
  } finally {
    await run.dispose();
  }
}

export interface SearchOptions {
  readonly world: World;
  readonly budgetMs: number;
  readonly shrinkMs: number;
  readonly seed: number;
  readonly maxCommands: number;
  /** Replays one case (from a report) instead of searching. */
  readonly path?: string | undefined;
  readonly replayPath?: string | undefined;
}

export interface SearchResult {
  readonly ok: boolean;
  readonly runs: number;
  readonly seed: number;
  readonly elapsedMs: number;
  /** What the runs exercised (counts of answers, gaps, refusals, …). */
  readonly exercised: string;
  readonly report?: string;
}

/**
 * fast-check's time limit abandons the run in progress (it races it against a timer), so each
 * run is tracked and a search waits for the abandoned one before it returns: the next search
 * must not start while polls of an old run are still on the server.
 */
interface Tracker {
  runs: number;
  current: Promise<void> | undefined;
}

function modelProperty(world: World, maxCommands: number, replayPath: string | undefined, tracker: Tracker) {
  return fc.asyncProperty(runSpecArb, fc.commands(commandArbs, { maxCommands, replayPath }), async (spec, cmds) => {
    tracker.runs++;
    const run = runScenario(world, spec, cmds);
    tracker.current = run;
    await run;
  });
}

/** Waits for a run fast-check abandoned at its time limit; a failure there is still a failure. */
async function abandoned(tracker: Tracker): Promise<string | undefined> {
  try {
    await tracker.current;
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

export async function search(o: SearchOptions): Promise<SearchResult> {
  const t0 = Date.now();
  tally.clear();
  const counter: Tracker = { runs: 0, current: undefined };
  const property = modelProperty(o.world, o.maxCommands, o.replayPath, counter);
  const first = await fc.check(property, {
    seed: o.seed,
    path: o.path,
    numRuns: o.path ? 1 : 100_000_000,
    endOnFailure: true,
    plugins: [fc.interruptAfterTimeLimit(o.budgetMs)],
  });
  const late = await abandoned(counter);
  const runs = counter.runs;
  const exercised = showTally();
  if (!first.failed || first.counterexample === null) {
    if (late === undefined) return { ok: true, runs, seed: o.seed, elapsedMs: Date.now() - t0, exercised };
    const report = `model checker FAILED on profile "${o.world.profile}" in the run cut short by the time limit (seed ${o.seed}; not replayable by path, not shrunk)\n${late}`;
    return { ok: false, runs, seed: o.seed, elapsedMs: Date.now() - t0, exercised, report };
  }

  let best = first as fc.RunDetails<[RunSpec, Iterable<Cmd>]>;
  let note = 'not shrunk';
  if (o.shrinkMs > 0 && !o.replayPath) {
    const shrinking: Tracker = { runs: 0, current: undefined };
    const second = await fc.check(modelProperty(o.world, o.maxCommands, undefined, shrinking), {
      seed: o.seed,
      path: first.counterexamplePath,
      plugins: [fc.interruptAfterTimeLimit(o.shrinkMs)],
    });
    await abandoned(shrinking);
    if (second.failed && second.counterexample !== null) {
      best = second as fc.RunDetails<[RunSpec, Iterable<Cmd>]>;
      note = `shrunk ${second.numShrinks} times${second.interrupted ? ` (stopped after ${o.shrinkMs} ms)` : ''}`;
    } else {
      note = 'not shrunk: the case did not fail again when replayed (timing-dependent)';
    }
  }
  return { ok: false, runs, seed: o.seed, elapsedMs: Date.now() - t0, exercised, report: report(o, best, runs, note) };
}

function report(o: SearchOptions, d: fc.RunDetails<[RunSpec, Iterable<Cmd>]>, runs: number, note: string): string {
  const [spec, cmds] = d.counterexample!;
  const history = String(cmds);
  const replayPath = /replayPath="([^"]*)"/.exec(history)?.[1];
  const steps = history.replace(/\s*\/\*replayPath=.*\*\//, '').split(/,(?=[a-zA-Z]+\()/);
  const replay = [`npm run check:long -- --profile ${o.world.profile} --seed ${o.seed} --path '${d.counterexamplePath}'`, replayPath ? ` --replay-path '${replayPath}'` : ''].join('');
  const error = d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance);
  return [
    `model checker FAILED on profile "${o.world.profile}" at run ${runs} (seed ${o.seed}, path ${d.counterexamplePath}; ${note})`,
    `replay: ${replay}`,
    `clients: ${JSON.stringify(spec.clients)}`,
    'command history:',
    ...steps.map((s, i) => `  ${String(i + 1).padStart(2)}. ${s}`),
    error,
  ].join('\n');
}

export function randomSeed(): number {
  return (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
}
