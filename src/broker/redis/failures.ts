/**
 * What a failed Redis command means, decided in one place:
 *
 *   timeout     Redis did not answer within LP_REDIS_COMMAND_TIMEOUT_MS: it may still run the
 *               command (a frozen Redis that resumes runs everything queued), so a write
 *               "may have been stored".                                   → 503 + Retry-After
 *   outage      the connection is down, the node is loading, read-only after a failover, the
 *               cluster is resharding or down, out of memory, misconfigured → 503 + Retry-After
 *   refused     the Redis user lacks a permission (ACL): the operator's to fix  → 503, logged
 *   bug         any other reply error: a script bug or a key of the wrong type. Retrying cannot
 *               help and 503 would hide it as an outage.                  → 500, logged
 */

import { BrokerUnavailableError } from '../../errors.js';

/** Reply errors that say Redis cannot serve now, not that the command is wrong. */
const OUTAGE_REPLY = /^(READONLY|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|BUSY|NOREPLICAS|OOM|MISCONF|NOAUTH|WRONGPASS)\b/;
/** Errors raised before the command left this process: it was certainly not run. */
const NOT_SENT = /Stream isn't writeable|enableOfflineQueue|Cluster isn't ready/;

/** The Redis user may not do this (ACL): the operator's to fix, not a bug in Holdfast. */
const NO_PERMISSION = /^NOPERM\b|can't publish to the channel|has no permissions/;

export type FailureKind = 'timeout' | 'outage' | 'refused' | 'bug';

export function failureKind(err: Error): FailureKind {
  if (err.message === 'Command timed out') return 'timeout';
  if (NO_PERMISSION.test(err.message)) return 'refused';
  if (err.name === 'ReplyError' && !OUTAGE_REPLY.test(err.message)) return 'bug';
  return 'outage';
}

/** A reply error that is a bug in Holdfast (or a key Holdfast did not write): 500, logged. */
export class RedisScriptError extends Error {
  constructor(
    /** The script (or command) that failed. */
    readonly script: string,
    /** The first key it was given: the channel or queue it was about. */
    readonly key: string,
    readonly redisError: string,
  ) {
    super(`Redis script ${script} failed on ${key}: ${redisError}`);
    this.name = 'RedisScriptError';
  }
}

/** The error a caller sees for a command that failed with `err`. */
export function commandFailure(err: Error, script: string, key: string, write: boolean, timeoutMs: number): Error {
  switch (failureKind(err)) {
    case 'bug':
      return new RedisScriptError(script, key, err.message);
    case 'timeout':
      return new BrokerUnavailableError(
        write
          ? `Redis did not answer within LP_REDIS_COMMAND_TIMEOUT_MS (${timeoutMs} ms); the message may have been stored: retry with the same Idempotency-Key`
          : `Redis did not answer within LP_REDIS_COMMAND_TIMEOUT_MS (${timeoutMs} ms); retry shortly`,
      );
    case 'refused':
      return new BrokerUnavailableError(`Redis refused the command for lack of permission: check the ACL of the Redis user (${err.message})`);
    case 'outage':
      if (write && !NOT_SENT.test(err.message)) {
        return new BrokerUnavailableError(`Redis failed mid-command (${err.message}); the message may have been stored: retry with the same Idempotency-Key`);
      }
      return new BrokerUnavailableError(`Redis is unavailable (${err.message}); retry shortly`);
  }
}
