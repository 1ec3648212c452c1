/**
 * Load-level isolation: 400 long-poll clients on 40 channels (every 5th follows 2–4 channels in
 * one poll) while 4,000 messages go out at 1,000/s, round-robin over the channels in lockstep
 * (one batch, two half batches, or 40 single publishes per round). On every broker profile,
 * with and without subscriber tokens, every client must get every message of every channel it
 * follows exactly once, in order, with the payload published at that (channel, seq), and
 * nothing from any other channel. The channels come four to a Redis slot, so on Redis too they
 * start in the same epoch at the same seq.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eachProfile } from '../helpers/profiles.js';
import { type TestServer, startTestServer } from '../helpers/server.js';
import { type LockstepResult, runLockstepInWorker, slotMates } from './lockstep.js';

const CLIENTS = 400;
const CHANNELS = 40;
const RATE = 1000;
const MESSAGES = 4000;
const SECRET = 'isolation-test-secret-0123456789';

let runs = 0;

function summary(name: string, r: LockstepResult): string {
  const c = r.counters;
  return `${name}: ${r.clients} clients (${r.follows} channel follows), ${r.published} messages in ${r.publishSeconds.toFixed(1)} s ` +
    `(${r.publishRate}/s), ${c.deliveries} deliveries (${r.deliveryRate}/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms), ` +
    `complete ${r.complete}/${r.clients}; lost ${c.lost} (silent skips ${c.silentSkips}), duplicates ${c.duplicates}, ` +
    `reordered ${c.reordered}, cross-channel ${c.crossChannel}, wrong payload ${c.wrongPayload}, gaps ${c.gaps}, ` +
    `errors ${c.errors}, misnumbered ${r.misnumbered}; ${(r.wallMs / 1000).toFixed(1)} s`;
}

eachProfile((profile, env) => {
  for (const tokens of [false, true]) {
    const variant = tokens ? 'with tokens' : 'without tokens';
    describe(`load isolation [${profile.name}] ${variant}`, () => {
      let s: TestServer;
      before(async () => {
        // Direct, never through a test proxy: this measures the delivery core, and its clients
        // and publisher speak plain HTTP to the server (no proxy keys).
        s = await startTestServer({ ...env(), ...(tokens ? { LP_JWT_SECRET: SECRET } : {}), VIA: 'direct' });
      });
      after(() => s?.close());

      it(`${CLIENTS} clients on ${CHANNELS} lockstep channels at ${RATE}/s: no loss, duplicate, reorder or cross-channel delivery`, async (t) => {
        const result = await runLockstepInWorker({
          base: s.url,
          clients: CLIENTS,
          channels: slotMates(`iso${process.pid}r${++runs}-`, CHANNELS / 4, 4),
          rounds: MESSAGES / CHANNELS,
          ratePerSec: RATE,
          multiEvery: 5,
          // Each client's token grants exactly the channels it follows.
          tokenSecret: tokens ? SECRET : undefined,
          settleMs: 15_000,
          parkMs: 20_000,
        });
        const line = summary(`${profile.name} ${variant}`, result);
        t.diagnostic(line);
        const c = result.counters;
        const examples = Object.entries(result.examples).map(([k, v]) => `\n  ${k}: ${v.join('\n    ')}`).join('');
        const verdict = { ...c, misnumbered: result.misnumbered, incomplete: result.clients - result.complete };
        const expected = { ...verdict, lost: 0, silentSkips: 0, duplicates: 0, reordered: 0, crossChannel: 0, wrongPayload: 0, gaps: 0, errors: 0, misnumbered: 0, incomplete: 0 };
        assert.deepEqual(verdict, expected, `${line}${examples}`);
        // Every follow got every message: nothing can pass by being absent from the count.
        assert.equal(c.deliveries, result.follows * (MESSAGES / CHANNELS), line);
        assert.ok(result.caughtUpInTime, `clients did not catch up within 15 s of the last publish: ${line}`);
      });
    });
  }
});
