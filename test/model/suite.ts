/**
 * The checker as `npm test` runs it, one test file per broker profile (each file has its own
 * --test-timeout): the fixed regression cases first, then a random search for
 * HOLDFAST_MODEL_BUDGET_S seconds (default 25), a failure shrunk for at most
 * HOLDFAST_MODEL_SHRINK_S (default 60). A failure prints the seed, the replay path, the
 * shrunk command history and the transcript of the failing run. HOLDFAST_MODEL_SEED repeats a
 * search; `npm run check:long -- --minutes N` searches longer.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomSeed, runScenario, search } from './check.js';
import { HASH_TWINS } from './names.js';
import { regressions } from './regressions.js';
import { type ProfileName, type World, startWorld, wantedProfiles } from './world.js';

const budgetMs = Number(process.env.HOLDFAST_MODEL_BUDGET_S ?? 25) * 1000;
const shrinkMs = Number(process.env.HOLDFAST_MODEL_SHRINK_S ?? 60) * 1000;
const fixedSeed = process.env.HOLDFAST_MODEL_SEED;

/** Whether the twins still collide under the cursor's hash (true), or why not. */
async function hashTwinsCollide(): Promise<true | string> {
  const cursor = (await import('../../src/cursor.js').catch(() => undefined)) as { channelHash?: (name: string) => number } | undefined;
  if (typeof cursor?.channelHash !== 'function') return 'src/cursor.ts has no channelHash';
  const [a, b] = HASH_TWINS.map((n) => cursor.channelHash!(n));
  return a === b ? true : `hashes ${a} and ${b}`;
}

export function checkerSuite(profile: ProfileName): void {
  const skip = !wantedProfiles().includes(profile) && (profile === 'memory' ? 'not in HOLDFAST_PROFILES' : 'redis-server is not installed, or not in HOLDFAST_PROFILES');
  describe(`model checker [${profile}]`, { skip }, () => {
    let world: World | undefined;
    before(async () => {
      world = await startWorld(profile);
    });
    after(() => world?.close());

    for (const r of regressions.filter((x) => x.profiles.includes(profile))) {
      it(`regression: ${r.name}`, async () => {
        await runScenario(world!, r.spec, r.commands());
      });
    }

    it(`random interleavings for ${budgetMs / 1000} s`, async (t) => {
      const twins = await hashTwinsCollide();
      if (twins !== true) t.diagnostic(`warning: the hash twins ${HASH_TWINS.join(', ')} no longer share a cursor hash (${twins}); find a new pair`);
      const seed = fixedSeed !== undefined ? Number(fixedSeed) : randomSeed();
      t.diagnostic(`seed ${seed} (HOLDFAST_MODEL_SEED=${seed} repeats this search)`);
      const result = await search({ world: world!, budgetMs, shrinkMs, seed, maxCommands: 40 });
      t.diagnostic(`${result.runs} runs in ${result.elapsedMs} ms; exercised: ${result.exercised}`);
      if (!result.ok) assert.fail(result.report);
    });
  });
}
