/**
 * A published message as every stage after the broker sees it. Its answer fragments (JSON
 * text and MessagePack bytes) are rendered at most once, on first use, and then shared by
 * every poll that carries the message: fan-out never re-encodes.
 */

import { pack } from 'msgpackr';
import { fingerprint } from './cursor.js';

export class Message {
  private jsonFrag: string | undefined;
  private msgpackFrag: Buffer | undefined;
  /** Bodies of the single-channel answer made of this message alone (see singleAnswer). */
  private singleUses = 0;
  private singleJson: Buffer | undefined = undefined;
  private singleMsgpack: Buffer | undefined = undefined;

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
   * The body of a single-channel answer that carries this message alone, in JSON or
   * MessagePack: the same bytes for every poll that gets it (no gap, and the cursor is this
   * message's own position), e.g. every client one message behind the head. `render` makes it;
   * it is kept from the second time it is asked for, so a message answered once (an inbox)
   * keeps nothing extra. It can only ever reach pollers of this message's channel.
   */
  singleAnswer(format: 'json' | 'msgpack', render: () => Buffer): Buffer {
    const kept = format === 'json' ? this.singleJson : this.singleMsgpack;
    if (kept) return kept;
    const body = render();
    if (++this.singleUses > 1) {
      if (format === 'json') this.singleJson = body;
      else this.singleMsgpack = body;
    }
    return body;
  }

  /** The same map, MessagePack-encoded. */
  msgpackFragment(): Buffer {
    return (this.msgpackFrag ??= pack({ ch: this.ch, seq: this.seq, data: JSON.parse(this.json) }));
  }
}
