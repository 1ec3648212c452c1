/**
 * The delivery ledger of a load run: what was published at each (channel, seq), and, per
 * client and channel it follows, which seqs it got. Every message of every answer is checked
 * against it; the counters are the run's verdict.
 *
 *   lost           a seq (1 … rounds) a client never got on a channel it follows
 *   silentSkips    a seq jump inside one client's stream that no gap reported (part of lost)
 *   duplicates     a seq a client got twice on one channel
 *   reordered      a seq below one the client already got on that channel
 *   crossChannel   a message on a channel the client did not ask for, or whose payload names
 *                  another channel or seq than its envelope
 *   wrongPayload   a message whose payload differs from what was published at (ch, seq)
 *   gaps           answers with gap:true (none are expected: history holds every message)
 *   errors         failed requests, non-200 answers, answers without a cursor
 */

import { isDeepStrictEqual } from 'node:util';

export interface Payload {
  /** The channel the publisher sent it to. */
  c: string;
  /** The seq the publisher expects it to get. */
  s: number;
  /** Send time, ms since the epoch (for latency). */
  t: number;
}

export interface AnswerMessage {
  ch: string;
  seq: number;
  data: unknown;
}

export interface PollAnswerBody {
  messages?: AnswerMessage[];
  cursor?: string;
  gap?: boolean;
  gapChannels?: string[];
}

export interface Counters {
  deliveries: number;
  lost: number;
  silentSkips: number;
  duplicates: number;
  reordered: number;
  crossChannel: number;
  wrongPayload: number;
  gaps: number;
  errors: number;
}

/** One channel as one client sees it. */
class Stream {
  last = 0;
  got = 0;
  readonly seen: Uint8Array;
  constructor(rounds: number) {
    this.seen = new Uint8Array(rounds + 1);
  }
}

export class ClientLedger {
  private readonly streams = new Map<string, Stream>();

  constructor(
    readonly id: number,
    readonly channels: readonly string[],
    private readonly ledger: Ledger,
  ) {
    for (const ch of channels) this.streams.set(ch, new Stream(ledger.rounds));
  }

  /** True once the client stands at the last seq on every channel it follows. */
  get complete(): boolean {
    for (const s of this.streams.values()) if (s.last < this.ledger.rounds) return false;
    return true;
  }

  /** Checks one 200 answer; returns its cursor (undefined when it has none: an error). */
  take(body: PollAnswerBody): string | undefined {
    const c = this.ledger.counters;
    if (body.gap) c.gaps++;
    const reported = new Set(body.gapChannels ?? []);
    for (const m of body.messages ?? []) this.check(m, reported);
    if (typeof body.cursor !== 'string' || body.cursor.length === 0) {
      this.ledger.error(`client ${this.id}: an answer without a cursor`);
      return undefined;
    }
    return body.cursor;
  }

  private check(m: AnswerMessage, gapReported: ReadonlySet<string>): void {
    const c = this.ledger.counters;
    const stream = this.streams.get(m.ch);
    const data = m.data as Partial<Payload> | null;
    if (!stream || typeof data !== 'object' || data === null || data.c !== m.ch || data.s !== m.seq) {
      c.crossChannel++;
      this.ledger.example('crossChannel', `client ${this.id} following ${JSON.stringify(this.channels)} got ${JSON.stringify(m)}`);
      return;
    }
    if (!Number.isInteger(m.seq) || m.seq < 1 || m.seq > this.ledger.rounds) {
      this.ledger.error(`client ${this.id}: seq ${m.seq} on ${m.ch} is outside the plan`);
      return;
    }
    if (!isDeepStrictEqual(m.data, this.ledger.published(m.ch, m.seq))) {
      c.wrongPayload++;
      this.ledger.example('wrongPayload', `client ${this.id} got ${JSON.stringify(m)}, published ${JSON.stringify(this.ledger.published(m.ch, m.seq))}`);
      return;
    }
    if (stream.seen[m.seq]) {
      c.duplicates++;
      this.ledger.example('duplicates', `client ${this.id} got ${m.ch} seq ${m.seq} again`);
      return;
    }
    stream.seen[m.seq] = 1;
    stream.got++;
    c.deliveries++;
    this.ledger.latency((Date.now() - (data.t ?? 0)));
    if (m.seq < stream.last) {
      c.reordered++;
      this.ledger.example('reordered', `client ${this.id} got ${m.ch} seq ${m.seq} after ${stream.last}`);
      return;
    }
    if (m.seq > stream.last + 1 && !gapReported.has(m.ch)) {
      c.silentSkips++;
      this.ledger.example('silentSkips', `client ${this.id} jumped on ${m.ch} from ${stream.last} to ${m.seq} with no gap`);
    }
    stream.last = m.seq;
  }

  /** Seqs this client never got, over every channel it follows. */
  missing(): number {
    let n = 0;
    for (const s of this.streams.values()) n += this.ledger.rounds - s.got;
    return n;
  }
}

export class Ledger {
  readonly counters: Counters = {
    deliveries: 0, lost: 0, silentSkips: 0, duplicates: 0, reordered: 0, crossChannel: 0, wrongPayload: 0, gaps: 0, errors: 0,
  };
  /** A few examples per counter, for the failure message. */
  readonly examples = new Map<string, string[]>();
  private readonly payloads = new Map<string, Payload[]>();
  private readonly latencies: number[] = [];

  /** `rounds`: every channel gets seqs 1 … rounds. */
  constructor(readonly rounds: number) {}

  /** Records what is about to be published at (ch, seq), before the request leaves. */
  publishing(ch: string, seq: number, payload: Payload): void {
    let list = this.payloads.get(ch);
    if (!list) this.payloads.set(ch, (list = []));
    list[seq] = payload;
  }

  published(ch: string, seq: number): Payload | undefined {
    return this.payloads.get(ch)?.[seq];
  }

  error(what: string): void {
    this.counters.errors++;
    this.example('errors', what);
  }

  example(counter: string, what: string): void {
    let list = this.examples.get(counter);
    if (!list) this.examples.set(counter, (list = []));
    if (list.length < 3) list.push(what);
  }

  latency(ms: number): void {
    this.latencies.push(ms);
  }

  /** Counts what the clients never got; call once, when the run is over. */
  settle(clients: readonly ClientLedger[]): Counters {
    this.counters.lost = clients.reduce((n, c) => n + c.missing(), 0);
    return this.counters;
  }

  percentile(q: number): number {
    if (this.latencies.length === 0) return NaN;
    const sorted = this.latencies.slice().sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
  }
}
