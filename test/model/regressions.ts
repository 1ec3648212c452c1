/**
 * Fixed regression cases: command lists that once made the checker fail, kept as written
 * (shrunk) so they replay the same way whatever the generators become. The test runs them
 * before the random search, on the profiles listed.
 */

import type { Cmd } from './commands.js';
import type { RunSpec } from './run.js';
import type { ProfileName } from './world.js';

export interface Regression {
  readonly name: string;
  /** Where it failed, and the seed that found it. */
  readonly found: string;
  readonly profiles: readonly ProfileName[];
  readonly spec: RunSpec;
  readonly commands: () => Cmd[];
}

export const regressions: readonly Regression[] = [];
