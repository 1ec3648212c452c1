/**
 * RSS per parked poll: one Holdfast process (memory broker), N polls parked by native load
 * processes, RSS read from /proc before and after, and the server's own count checked.
 *
 *   npm run bench:park -- [N …]        (default 10000 19500)
 */

import { writeFileSync } from 'node:fs';
import { metric, park, rssKiB, startHoldfast, waitParked } from './lib.js';

/** Read RSS after the runtime returned the parking burst's garbage (see run.ts, SETTLE_MS). */
const SETTLE_MS = 12_000;
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const results = [];
for (const n of sizes.length ? sizes : [10_000, 19_500]) {
  const server = await startHoldfast({ LP_POLL_TIMEOUT_MS: '120000' });
  try {
    // Warm the server so the baseline includes the JIT and the first allocations.
    const warm = park(server.port, 500, { channel: 'warm', waitS: 1 });
    await warm.parked;
    await waitParked([server.port], 500);
    await fetch(`http://127.0.0.1:${server.port}/v1/publish/warm`, { method: 'POST', body: '1', headers: { 'content-type': 'application/json' } });
    await warm.done;
    global.gc?.();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const before = rssKiB(server.pids[0]!);
    const run = park(server.port, n, { channel: 'bench', waitS: 60 });
    await run.parked;
    const held = await waitParked([server.port], n);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = rssKiB(server.pids[0]!);
    const stillParked = await metric(server.port, 'holdfast_parked_polls');
    const perPoll = ((after - before) * 1024) / n;
    const row = { polls: n, serverCount: held, stillParkedAfterHold: stillParked, rssBeforeKiB: before, rssAfterKiB: after, bytesPerPoll: Math.round(perPoll) };
    console.log(JSON.stringify(row));
    results.push(row);
    await fetch(`http://127.0.0.1:${server.port}/v1/publish/bench`, { method: 'POST', body: '"bye"', headers: { 'content-type': 'application/json' } });
    const answers = await run.done;
    console.log(`  answered after publish: ${answers.reduce((a, r) => a + r.answered, 0)}/${n}, early: ${answers.reduce((a, r) => a + r.early, 0)}`);
  } finally {
    await server.stop();
  }
}
writeFileSync(new URL(`./results/park-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url), JSON.stringify(results, null, 2));
