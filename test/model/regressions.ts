/**
 * Fixed regression cases: command lists that made the checker fail on the code before the
 * issue 8 fix, kept as written (shrunk) so they replay the same way whatever the generators
 * become. The test runs them before the random search, on the profiles listed.
 */

import { BatchCmd, type Cmd, PollCmd, PublishCmd, PushCmd, SeedPollCmd } from './commands.js';
import type { RunSpec } from './run.js';
import type { ProfileName } from './world.js';

export interface Regression {
  readonly name: string;
  /** Where it failed first, and the seed that found it. */
  readonly found: string;
  readonly profiles: readonly ProfileName[];
  readonly spec: RunSpec;
  readonly commands: () => Cmd[];
}

const ALL: readonly ProfileName[] = ['memory', 'redis', 'two', 'cluster'];
const single = (ch: number) => ({ channels: [ch], format: 'json' as const, token: 'exact' as const, tokenInQuery: false });

export const regressions: readonly Regression[] = [
  {
    // Channels 0 and 6 share a Redis slot, so on every broker they read the same (store) epoch
    // and stand at seq 0: the shared-answer cache keyed on (epoch, seq, format, max) without
    // the channel gave c1 the answer rendered for c0 (a message of a channel it may not read).
    name: 'two single-channel polls at the same seq, woken by one batch, each get their own channel (cross-channel leak)',
    found: 'memory, seed 1094023764 (run 404); cluster, seed 848543324 (run 13); redis, seed 448589276 (run 87)',
    profiles: ALL,
    spec: { clients: [single(0), single(6)] },
    // Four rounds: after each batch both channels stand at the same seq again. On Redis the
    // two notifications may reach the hub in separate flushes; more rounds, more chances.
    commands: () =>
      [1, 2, 3, 4].flatMap((round) => [
        new PollCmd(0, 'cursor', undefined, 'long', 0),
        new PollCmd(1, 'cursor', undefined, 'long', 0),
        new BatchCmd({ format: 'json', server: round, items: [0, 6].map((ch) => ({ ch, shape: 'object' as const, content: round, idem: 'none' as const, pick: 0 })) }),
      ]),
  },
  {
    // Channel `q:<tag>x` beside seed clientId `<tag>x`: on Redis both used the notification
    // channel {q:<tag>x}:n, which was read as the seed queue's, so the poll was never woken.
    name: 'a poll on channel q:x is woken by a publish while seed client x waits, and x gets its push',
    found: 'redis, seed 1252756435 (run 1); two, seed 1060898181 (run 32)',
    profiles: ALL,
    spec: { clients: [single(3)] },
    commands: () => [
      new SeedPollCmd(0, true, 0),
      new PollCmd(0, 'cursor', undefined, 'long', 0),
      new PublishCmd({ ch: 3, kind: 'json', shape: 'object', content: 'to q:x', idem: 'none', pick: 0, server: 1 }),
      new PushCmd(0, 'to x', 1),
    ],
  },
  {
    // hc.2z9ee and hc.iwjc4 share the cursor's 48-bit name hash; a cursor keyed on the hash
    // alone gave both channels one position, so the poll after it repeated seq 1 of one of
    // them under a false gap. Found while checking the lead's audit list.
    name: 'two channels of one poll whose names share the cursor hash keep their own positions',
    found: 'memory, seed 1777089351 (run 27)',
    profiles: ALL,
    spec: { clients: [{ channels: [8, 9], format: 'json', token: 'exact', tokenInQuery: false }] },
    commands: () => [
      new PollCmd(0, 'cursor', undefined, 'long', 0),
      new BatchCmd({ format: 'json', server: 0, items: [8, 9].map((ch) => ({ ch, shape: 'object' as const, content: 'twin', idem: 'none' as const, pick: 0 })) }),
      new PollCmd(0, 'cursor', undefined, 'long', 1),
      new PublishCmd({ ch: 8, kind: 'json', shape: 'object', content: 'after', idem: 'none', pick: 0, server: 0 }),
    ],
  },
];
