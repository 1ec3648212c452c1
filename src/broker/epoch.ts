import { randomBytes } from 'node:crypto';

/** A new epoch token: 64 random bits, URL-safe (11 characters). */
export function newEpoch(): string {
  return randomBytes(8).toString('base64url');
}
