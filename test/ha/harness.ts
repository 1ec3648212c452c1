/**
 * Shared pieces of the HA scenarios: a Holdfast on any Redis mode (Sentinel included, with
 * its logs captured), publishers that retry 503s with their Idempotency-Key as the contract
 * tells them to, followers that follow cursors and record everything, and the ledger check
 * that says whether anything acknowledged went missing without a gap.
 */

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { decodeCursor } from '../../src/cursor.js';
import { BASE_ENV, type PollBody, type TestServer, http, poll } from '../helpers/server.js';

export interface HaServer extends TestServer {
  /** Every log line so far, parsed. */
  readonly logs: Record<string, any>[];
}

/** A server whose broker the configuration chooses (as the CLI's would be), logs captured. */
export async function startHaServer(env: Record<string, string>, waitReady = true): Promise<HaServer> {
  const config: Config = loadConfig({ ...BASE_ENV, LOG_LEVEL: 'debug', ...env });
  const logs: Record<string, any>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const server = await startServer(config, { logger });
  assert.equal(server.broker.kind === 'memory', false, `the configuration chose the ${server.broker.kind} broker`);
  if (waitReady) await server.broker.waitReady(20_000);
  const url = `http://127.0.0.1:${server.port}`;
  let closed = false;
  return {
    url,
    port: server.port,
    server,
    config,
    logs,
    close: async () => {
      if (closed) return;
      closed = true;
      await server.drain();
    },
  };
}

export interface Ack {
  ch: string;
  value: string;
  seq: number;
  epoch: string;
  /** When the attempt that was acknowledged was sent, and when its answer came (ms). */
  sentAt: number;
  ackedAt: number;
}

/** Publishes `value` until it is acknowledged: a 503 is retried with the same Idempotency-Key. */
export async function publishAcked(urls: () => string, ch: string, value: string, deadline: number, stats: { retries: number }): Promise<Ack | undefined> {
  for (;;) {
    const sentAt = Date.now();
    try {
      const r = await http(`${urls()}/v1/publish/${encodeURIComponent(ch)}`, {
        method: 'POST',
        json: value,
        headers: { 'idempotency-key': value },
        signal: AbortSignal.timeout(15_000),
      });
      if (r.status === 200) return { ch, value, seq: r.body.seq, epoch: r.body.epoch, sentAt, ackedAt: Date.now() };
      assert.equal(r.status, 503, `publish ${value}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.ok(r.headers.get('retry-after'), '503 carries Retry-After');
    } catch (err) {
      if ((err as Error).name === 'AssertionError') throw err;
      // The server may be gone for a moment in some scenarios: retry like a client would.
    }
    stats.retries++;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
  }
}

export interface Delivery {
  ch: string;
  seq: number;
  value: string;
}

/** A client that follows cursors on `channels` and records what it gets, gaps included. */
export class Follower {
  readonly delivered: Delivery[] = [];
  readonly gaps = new Map<string, number>();
  cursor: string | undefined;
  polls = 0;
  errors = 0;
  /** Every answer, briefly, for post-mortems: [ms, status, gap, messages, first seq, last seq]. */
  readonly trace: [number, number, boolean, number, number, number, string][] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly urls: () => string,
    readonly channels: string[],
  ) {}

  /** Takes a cursor ("from now"), then follows it until stop(). */
  async start(): Promise<void> {
    for (;;) {
      const r = await poll(this.urls(), { ch: this.channels, timeout: 1000 }).catch(() => undefined);
      if (r?.status === 200) {
        this.cursor = r.body.cursor;
        break;
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    this.loop = this.run();
  }

  /** Goes on following from where it stopped (after drainUntil or stop). */
  resume(): void {
    this.stopped = false;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let r: { status: number; body: PollBody } | undefined;
      try {
        r = await poll(this.urls(), { ch: this.channels, cursor: this.cursor, timeout: 2000, max: 200 }, { signal: AbortSignal.timeout(20_000) });
      } catch {
        r = undefined;
      }
      this.polls++;
      const ms = r?.body?.messages ?? [];
      this.trace.push([Date.now(), r?.status ?? 0, r?.body?.gap === true, ms.length, ms[0]?.seq ?? -1, ms[ms.length - 1]?.seq ?? -1, r?.body?.cursor ? positionsText(r.body.cursor, this.channels) : '']);
      if (!r || r.status !== 200) {
        this.errors++;
        await new Promise((res) => setTimeout(res, 50 + Math.random() * 100));
        continue;
      }
      if (r.body.gap) for (const ch of r.body.gapChannels ?? []) this.gaps.set(ch, (this.gaps.get(ch) ?? 0) + 1);
      for (const m of r.body.messages) this.delivered.push({ ch: m.ch, seq: m.seq, value: m.data as string });
      this.cursor = r.body.cursor;
    }
  }

  /** Follows until it has delivered every value in `values` (or the deadline), then stops. */
  async drainUntil(values: Set<string>, limitMs: number): Promise<void> {
    const deadline = Date.now() + limitMs;
    while (Date.now() < deadline) {
      const seen = new Set(this.delivered.map((d) => d.value));
      if ([...values].every((v) => seen.has(v))) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    await this.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** The last answers, one per line, times relative to `since`: for a failing assertion's message. */
  describe(since: number, last = 30): string {
    return this.trace.slice(-last).map((t) => `  ${t[0] - since}ms ${t[1]} gap=${t[2]} n=${t[3]} seqs ${t[4]}..${t[5]} cursor ${t[6]}`).join('\n');
  }
}

/**
 * The ledger check. Per follower and channel:
 * - between gaps the seqs it got are consecutive (nothing skipped silently), and
 * - every acknowledged value was delivered to it, unless it got a gap on that channel
 *   (`allowGaps`; with synchronous durability nothing acknowledged may be lost at all).
 * Returns the acknowledged values some follower got no message for (covered by a gap).
 */
export function checkLedger(acks: Ack[], followers: Follower[], allowGaps: boolean): { missingWithGap: number; gapped: number } {
  let missingWithGap = 0;
  let gapped = 0;
  for (const f of followers) {
    const got = new Set(f.delivered.map((d) => `${d.ch}\u0000${d.value}`));
    for (const ch of f.channels) {
      const gaps = f.gaps.get(ch) ?? 0;
      if (gaps > 0) gapped++;
      const seqs = f.delivered.filter((d) => d.ch === ch).map((d) => d.seq);
      // Within one numbering a follower sees seq n+1 after n; a gap may restart the run.
      let breaks = 0;
      for (let i = 1; i < seqs.length; i++) if (seqs[i] !== seqs[i - 1]! + 1) breaks++;
      assert.ok(breaks <= gaps, `follower of ${f.channels.join(',')}: ${ch} skipped seqs ${breaks} times with only ${gaps} gaps: ${seqs.join(' ')}`);
      for (const a of acks.filter((x) => x.ch === ch)) {
        if (got.has(`${ch}\u0000${a.value}`)) continue;
        assert.ok(allowGaps && gaps > 0, `acknowledged ${a.value} (${ch} seq ${a.seq}) never reached a follower, which got ${gaps} gaps on ${ch}`);
        missingWithGap++;
      }
    }
  }
  return { missingWithGap, gapped };
}

/** "epoch:seq" per channel of a cursor, for traces. */
export function positionsText(cursor: string, channels: string[]): string {
  return decodeCursor(cursor).positionsFor(channels).map((p) => (p ? `${p.epoch.slice(-4)}:${p.seq}` : '-')).join(',');
}
