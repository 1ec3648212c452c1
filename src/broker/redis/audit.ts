/**
 * The lost-writes audit: after Redis came back from something that can lose acknowledged
 * writes (a reconnect, a failover, a silence), check every publish this process acknowledged
 * within LP_REDIS_LOSS_WINDOW_S against the store (lua/audit.lua). Channels that lost one move
 * to a new epoch without renumbering, so every cursor from before reads as a gap.
 */

import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { hasPrefix } from '../../names.js';
import type { AckLog } from './ack-log.js';
import type { RedisCommands } from './commands.js';
import type { RedisKeys } from './keys.js';

/** Scripts in flight at once (each is one channel). */
const CONCURRENCY = 500;

export interface AuditResult {
  checked: number;
  /** Channels moved to a new epoch. */
  lost: string[];
  ms: number;
}

export async function auditAcks(
  acks: AckLog,
  commands: RedisCommands,
  keys: RedisKeys,
  config: Pick<Config, 'conflatePrefixes' | 'channelIdleS'>,
  publishCommand: 'PUBLISH' | 'SPUBLISH',
  why: string,
  log: Logger | undefined,
): Promise<AuditResult> {
  const started = Date.now();
  const entries = acks.entries();
  const lost: string[] = [];
  for (let i = 0; i < entries.length; i += CONCURRENCY) {
    await Promise.all(entries.slice(i, i + CONCURRENCY).map(async ([ch, ack]) => {
      const moved = await commands.run('hfAudit', [keys.meta(ch), keys.history(ch), keys.store(ch)], [
        ack.epoch,
        ack.seq,
        ack.time,
        hasPrefix(ch, config.conflatePrefixes) ? 1 : 0,
        ch,
        keys.notify(ch),
        publishCommand,
        config.channelIdleS,
      ], { write: true });
      if (moved === 1) lost.push(ch);
    }));
  }
  const result = { checked: entries.length, lost, ms: Date.now() - started };
  if (lost.length > 0) {
    log?.warn(
      { why, checked: result.checked, channels: lost.length, sample: lost.slice(0, 10), ms: result.ms },
      'redis lost acknowledged publishes: those channels moved to a new epoch, so every cursor from before reads as a gap',
    );
  } else if (entries.length > 0) {
    log?.info({ why, checked: result.checked, ms: result.ms }, 'redis kept every acknowledged publish (lost-writes audit)');
  }
  return result;
}
