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

  /** The same map, MessagePack-encoded. */
  msgpackFragment(): Buffer {
    return (this.msgpackFrag ??= pack({ ch: this.ch, seq: this.seq, data: JSON.parse(this.json) }));
  }
}
