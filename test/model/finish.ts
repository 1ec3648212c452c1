/**
 * The end of a run, where "every acknowledged message reaches every client that follows the
 * channel" is checked: outstanding polls end (aborted; that loses nothing on /v1/poll), one
 * marker message goes to every followed channel (so no catch-up poll can park), every open
 * stream must deliver up to each head by itself, and then each client polls with its cursor
 * until it stands at the head of every channel. Every answer on
 * the way is checked like any other: a skipped seq without gap fails there. Seed queues are
 * drained up to a sentinel push.
 */

import * as driver from './driver.js';
import { violation } from './model.js';
import { type Client, type Run, WAKE_LIMIT_MS, untilDeadline } from './run.js';
import { drainSeeds } from './seeds.js';

/** Enough polls to walk any history of LP_HISTORY_SIZE with max ≥ 1 plus a gap. */
const CATCH_UP_POLLS = 40;

function atHead(run: Run, c: Client): boolean {
  return c.channels.every((name, i) => {
    const p = c.pos[i];
    const ch = run.channel(name);
    return p !== undefined && p.k === 'exact' && p.e === ch.epoch && p.s === ch.head();
  });
}

async function catchUp(run: Run, c: Client, serverPick: number): Promise<void> {
  for (let i = 0; !atHead(run, c); i++) {
    if (i >= CATCH_UP_POLLS) violation(`catch-up: ${c.label} is not at the head after ${i} polls with its cursor`);
    const p = run.startV1(c, 'cursor', undefined, true, serverPick + i);
    await untilDeadline(p.pending.reply.catch(() => undefined), Date.now() + WAKE_LIMIT_MS);
    if (!p.pending.done) {
      violation(`catch-up: ${p.view.label} with a cursor behind the head (marker published) did not answer within ${WAKE_LIMIT_MS} ms`);
    }
    await run.processAnswers();
  }
}

export async function finish(run: Run): Promise<void> {
  await run.settle('before the end of the run');
  for (const c of run.clients) run.abortV1(c);
  for (const p of run.seedPolls) p.pending.abort();
  run.seedPolls.clear();
  await run.quiesce('after the final aborts');
  await run.processAnswers(); // answers that arrived just before their abort

  const followed = [...new Set(run.clients.filter((c) => c.cursor !== undefined).flatMap((c) => c.channels))];
  for (const name of followed) {
    const ch = run.channel(name);
    const rec = run.newPublish(ch, 'object', 'marker', run.nextOrder());
    const reply = await driver.publishOne(run.serverAt(0).server.url, name, 'json', rec.value);
    run.expectStatus(`marker ${name}`, reply, 200);
    const r = reply.body as { seq: number; epoch: string };
    ch.acceptPublish(rec, r.seq, r.epoch, `marker ${name}`);
  }
  // Streams deliver the markers (and everything before them) by themselves; then they close
  // and any client still short of a head catches up with polls from its cursor.
  run.log(`markers on ${followed.length} channels; ${run.streams.size} streams deliver to them`);
  await run.awaitStreams('at the end of the run (streams reach every head)', Date.now() + WAKE_LIMIT_MS);
  for (const s of [...run.streams]) s.close();
  await run.quiesce('after the streams closed');
  run.log('catch-up');
  await Promise.all(run.clients.filter((c) => c.cursor !== undefined).map((c, i) => catchUp(run, c, i)));
  await drainSeeds(run);
  await run.quiesce('at the end of the run');
}
