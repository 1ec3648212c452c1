/**
 * Redis key and notification-channel names. Every key of a channel carries the channel name
 * as its hash tag, so a channel's keys and its notification channel share one Cluster slot and
 * one Lua script can touch them all:
 *
 *   <prefix>{<ch>}:m      meta hash: e (epoch), s (last seq), g (epoch counter)
 *   <prefix>{<ch>}:h      history list of "<ms>|<json>", bounded, with TTL
 *   <prefix>{<ch>}:i:<k>  idempotency record "<seq>|<epoch>", with TTL
 *   <prefix>{<ch>}:n      notification channel (PUBLISH, or SPUBLISH on Cluster)
 *   <prefix>{<tag>}:s     the store epoch of one slot (<tag> is a short string in that slot)
 *   <prefix>{q:<id>}:q    seed client queue; <prefix>{q:<id>}:n its notifications
 */

import calculateSlot from 'cluster-key-slot';

const SLOTS = 16384;
let slotTags: string[] | undefined;

/** For each Cluster slot, a short hash tag that lands in it (built once, ~160K CRC16s). */
function tagForSlot(slot: number): string {
  if (!slotTags) {
    const tags = new Array<string>(SLOTS);
    let filled = 0;
    for (let i = 0; filled < SLOTS; i++) {
      const tag = i.toString(36);
      const s = calculateSlot(tag);
      if (tags[s] === undefined) {
        tags[s] = tag;
        filled++;
      }
    }
    slotTags = tags;
  }
  return slotTags[slot]!;
}

export class RedisKeys {
  constructor(private readonly prefix: string) {}

  meta(ch: string): string {
    return `${this.prefix}{${ch}}:m`;
  }
  history(ch: string): string {
    return `${this.prefix}{${ch}}:h`;
  }
  idempotency(ch: string, key: string): string {
    return `${this.prefix}{${ch}}:i:${key}`;
  }
  notify(ch: string): string {
    return `${this.prefix}{${ch}}:n`;
  }
  store(ch: string): string {
    return `${this.prefix}{${tagForSlot(calculateSlot(ch))}}:s`;
  }
  queue(id: string): string {
    return `${this.prefix}{q:${id}}:q`;
  }
  queueNotify(id: string): string {
    return `${this.prefix}{q:${id}}:n`;
  }

  /** What a notification channel is about: a channel, or a seed queue. */
  parseNotify(name: string): { kind: 'channel' | 'queue'; name: string } | undefined {
    if (!name.startsWith(this.prefix) || !name.endsWith('}:n')) return undefined;
    const inner = name.slice(this.prefix.length + 1, -3);
    return inner.startsWith('q:') ? { kind: 'queue', name: inner.slice(2) } : { kind: 'channel', name: inner };
  }
}
