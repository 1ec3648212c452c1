/**
 * The names one run uses, chosen to collide (issue 8): a prefix family (`a`, `a:b`, `a:bc`),
 * a channel `q:x` beside a seed clientId `x`, a clientId equal to a channel name, and channels
 * that share `a`'s Redis slot, so that on Redis too they read the same store epoch and stand
 * at the same seq until published, and two names with the same cursor hash. Every other name
 * carries the run's tag, so runs on one server never meet.
 */

import calculateSlot from 'cluster-key-slot';
import { CONFLATE_PREFIX, PUBLIC_PREFIX } from './world.js';

export interface RunNames {
  readonly tag: string;
  /** Channel universe; clients and commands pick by index (mod length). */
  readonly channels: readonly string[];
  /** Indices of the channels that share one Redis slot (and so one store epoch). */
  readonly slotGroup: readonly number[];
  readonly seedIds: readonly string[];
}

let runs = 0;
const pidTag = process.pid.toString(36);

/** Names that hash to the slot of `like`, tried as `<base><i>` in order. */
function slotMates(base: string, like: string, count: number): string[] {
  const slot = calculateSlot(like);
  const out: string[] = [];
  for (let i = 0; out.length < count && i < 1_000_000; i++) {
    const name = `${base}${i}`;
    if (calculateSlot(name) === slot) out.push(name);
  }
  return out;
}

/**
 * Two names whose 48-bit cursor hash (src/cursor.ts `channelHash`) is the same, found by a
 * search over 2^25 names: a poll on both must keep their positions apart. They cannot carry a
 * run's tag, so every run deletes them first (a fresh epoch, nothing retained).
 */
export const HASH_TWINS = ['hc.2z9ee', 'hc.iwjc4'] as const;

/** The universe by short name (the run's tag and prefixes left out), index for index. */
export const SHORT_NAMES = ['a', 'a:b', 'a:bc', 'q:x', 'px:t', 'pub:p', 's1', 's2', 'hc1', 'hc2'] as const;
export const SHORT_SEED_IDS = ['x', 'a'] as const;

export function runNames(): RunNames {
  const tag = `m${pidTag}${(++runs).toString(36)}.`;
  const a = `${tag}a`;
  const [s1, s2] = slotMates(`${tag}s`, a, 2) as [string, string];
  const channels = [
    a, // 0
    `${tag}a:b`, // 1: a's name is its prefix
    `${tag}a:bc`, // 2: and a:b's
    `q:${tag}x`, // 3: beside seed clientId `${tag}x`
    `${CONFLATE_PREFIX}${tag}t`, // 4: conflated
    `${PUBLIC_PREFIX}${tag}p`, // 5: public (no token needed)
    s1, // 6: same slot as a
    s2, // 7: same slot as a
    ...HASH_TWINS, // 8, 9: same cursor hash
  ];
  return { tag, channels, slotGroup: [0, 6, 7], seedIds: [`${tag}x`, a] };
}
