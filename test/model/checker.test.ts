/**
 * The model-based checker in `npm test`: on every broker profile, the fixed regression cases,
 * then a random search for HOLDFAST_MODEL_BUDGET_S seconds (default 25) per profile. A failure
 * prints the seed, the replay path, the shrunk command history and the run's transcript.
 * Longer searches: `npm run check:long -- --minutes N --profile all`.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomSeed, runScenario, search } from './check.js';
import { regressions } from './regressions.js';
import { type World, startWorld, wantedProfiles } from './world.js';

const budgetMs = Number(process.env.HOLDFAST_MODEL_BUDGET_S ?? 25) * 1000;
const shrinkMs = Number(process.env.HOLDFAST_MODEL_SHRINK_S ?? 60) * 1000;
const fixedSeed = process.env.HOLDFAST_MODEL_SEED;

for (const profile of wantedProfiles()) {
  describe(`model checker [${profile}]`, () => {
    let world: World;
    before(async () => {
      world = await startWorld(profile);
    });
    after(() => world?.close());

    for (const r of regressions.filter((x) => x.profiles.includes(profile))) {
      it(`regression: ${r.name}`, async () => {
        await runScenario(world, r.spec, r.commands());
      });
    }

    it(`random interleavings for ${budgetMs / 1000} s`, async (t) => {
      const seed = fixedSeed !== undefined ? Number(fixedSeed) : randomSeed();
      t.diagnostic(`seed ${seed} (HOLDFAST_MODEL_SEED=${seed} repeats this search)`);
      const result = await search({ world, budgetMs, shrinkMs, seed, maxCommands: 40 });
      t.diagnostic(`${result.runs} runs in ${result.elapsedMs} ms; exercised: ${result.exercised}`);
      if (!result.ok) assert.fail(result.report);
    });
  });
}
