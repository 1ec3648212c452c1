/**
 * A published message as every stage after the broker sees it. Its answer fragments (JSON
 * text and MessagePack bytes) are rendered at most once, on first use, and then shared by
 * every poll that carries the message: fan-out never re-encodes.
 */

import { pack } from 'msgpackr';
import { fingerprint } from './cursor.js';

/** A rendered answer kept on its last message. */
interface KeptAnswer {
  readonly key: number;
  readonly body: Buffer;
}

/** Answers kept per message: the few ranges clients ask for at once. */
const MAX_KEPT = 2;

export class Message {
  private jsonFrag: string | undefined;
  private msgpackFrag: Buffer | undefined;
  /**
   * Single-channel answers that end with this message (see answerFrom): the last one asked
   * for once (as first seq × 2 + format), and those asked for again, kept.
   */
  private askedOnce = -1;
  private kept: KeptAnswer[] | undefined = undefined;

  constructor(
    readonly ch: string,
    readonly seq: number,
    readonly epoch: string,
    /** Publish time, ms since the epoch: orders messages across channels, ages history. */
    readonly time: number,
    /** The value as compact JSON text. */
    readonly json: string,
    /** The JSON fragment, when a decode worker already rendered it. */
    jsonFragment?: string,
  ) {
    this.jsonFrag = jsonFragment;
  }

  /** Identifies this message under its seq (see cursor.ts: the lost-writes rule). */
  get fp(): number {
    return fingerprint(this.time);
  }

  /** `{"ch":…,"seq":…,"data":…}` */
  jsonFragment(): string {
    return (this.jsonFrag ??= `{"ch":${JSON.stringify(this.ch)},"seq":${this.seq},"data":${this.json}}`);
  }

  /**
   * The body of the single-channel answer carrying messages `first`…this one, in JSON or
   * MessagePack: the same bytes for every poll that gets it (no gap, and the cursor is this
   * message's own position): every client one message behind the head, every client catching
   * up from the same cursor. `render` makes it; it is kept from the second time it is asked
   * for, so a message answered once (an inbox) keeps nothing but a number. A kept body is also
   * what answer compression keys its compressed variants on (src/compress), so those are made
   * once too. It can only ever reach pollers of this message's channel.
   */
  answerFrom(first: number, format: 'json' | 'msgpack', render: () => Buffer): Buffer {
    const key = first * 2 + (format === 'json' ? 0 : 1);
    const kept = this.kept;
    if (kept) for (const k of kept) if (k.key === key) return k.body;
    const body = render();
    if (this.askedOnce === key) {
      if (kept && kept.length >= MAX_KEPT) kept.shift();
      (this.kept ??= []).push({ key, body });
    } else this.askedOnce = key;
    return body;
  }

  /** The same map, MessagePack-encoded. */
  msgpackFragment(): Buffer {
    return (this.msgpackFrag ??= pack({ ch: this.ch, seq: this.seq, data: JSON.parse(this.json) }));
  }
}
