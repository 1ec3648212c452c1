/**
 * Redis key and notification-channel names. Internal keys live in their own namespace: the
 * letter after the prefix says what a key belongs to (c: a channel, q: a seed client queue,
 * s: a slot's store epoch), and the name follows inside braces. Names never contain braces,
 * so no channel name or clientId can reach another kind's keys (`q:foo` the channel and `foo`
 * the clientId are strangers), and the braces are the Cluster hash tag: a channel's keys and
 * its notification channel share one slot, so one Lua script can touch them all.
 *
 *   <prefix>c{<ch>}:m      meta hash: e (epoch), s (last seq), g (epoch counter),
 *                          t (time of the message at s), b (time of the newest trimmed message)
 *   <prefix>c{<ch>}:h      history list of "<ms>|<json>", bounded, with TTL
 *   <prefix>c{<ch>}:i:<k>  idempotency record "<seq>|<epoch>", with TTL
 *   <prefix>c{<ch>}:n      notification channel (PUBLISH, or SPUBLISH on Cluster)
 *   <prefix>s{<tag>}       the store epoch of one slot (<tag> is a short string in that slot)
 *   <prefix>q{<id>}:l      seed client queue;  <prefix>q{<id>}:n  its notifications
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
  private readonly channelPrefix: string;
  private readonly queuePrefix: string;

  constructor(private readonly prefix: string) {
    this.channelPrefix = `${prefix}c{`;
    this.queuePrefix = `${prefix}q{`;
  }

  meta(ch: string): string {
    return `${this.channelPrefix}${ch}}:m`;
  }
  history(ch: string): string {
    return `${this.channelPrefix}${ch}}:h`;
  }
  idempotency(ch: string, key: string): string {
    return `${this.channelPrefix}${ch}}:i:${key}`;
  }
  notify(ch: string): string {
    return `${this.channelPrefix}${ch}}:n`;
  }
  store(ch: string): string {
    return `${this.prefix}s{${tagForSlot(calculateSlot(ch))}}`;
  }
  queue(id: string): string {
    return `${this.queuePrefix}${id}}:l`;
  }
  queueNotify(id: string): string {
    return `${this.queuePrefix}${id}}:n`;
  }

  /** What a notification channel is about: a channel, or a seed queue. */
  parseNotify(name: string): { kind: 'channel' | 'queue'; name: string } | undefined {
    if (!name.endsWith('}:n')) return undefined;
    if (name.startsWith(this.channelPrefix)) return { kind: 'channel', name: name.slice(this.channelPrefix.length, -3) };
    if (name.startsWith(this.queuePrefix)) return { kind: 'queue', name: name.slice(this.queuePrefix.length, -3) };
    return undefined;
  }
}
