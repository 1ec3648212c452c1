/** Channel and client-id names, and the prefix lists that classify them. */

import { HoldfastError } from './errors.js';

const NAME = /^[A-Za-z0-9_\-.:@]{1,200}$/;

export function isValidName(name: string): boolean {
  return NAME.test(name) && name !== '.' && name !== '..';
}

/** Returns `name` or throws 400 bad_channel naming what was wrong. */
export function checkChannel(name: string, what = 'channel'): string {
  if (!isValidName(name)) {
    throw new HoldfastError(
      'bad_channel',
      `${what} name ${JSON.stringify(name.length > 64 ? name.slice(0, 64) + '…' : name)} is invalid: ` +
        'use 1-200 characters of A-Z a-z 0-9 _ - . : @ (not "." or "..")',
    );
  }
  return name;
}

export function hasPrefix(name: string, prefixes: readonly string[]): boolean {
  for (const p of prefixes) if (name.startsWith(p)) return true;
  return false;
}

/**
 * A grant list from a token's `channels` claim: exact names, or `prefix*` patterns.
 * Compiled once per verified token (tokens are cached), so matching is a Set lookup plus a
 * scan of the (usually few) prefixes.
 */
export class Grants {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.endsWith('*')) this.prefixes.push(p.slice(0, -1));
      else this.exact.add(p);
    }
  }

  allows(name: string): boolean {
    return this.exact.has(name) || hasPrefix(name, this.prefixes);
  }
}
