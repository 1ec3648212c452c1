/**
 * The seed-compatible endpoints (spec "Seed-compatible endpoints"): POST /push, GET /poll,
 * DELETE /disconnect. Each push carries a unique id; the model checks that a poll for
 * clientId X gets only pushes to X (never a channel's message, `q:X` included), each exactly
 * once, oldest first while it is the only poll waiting for X; that a disconnect drops what
 * was queued (allowed loss, only for those) and answers the waiting polls with a timeout.
 */

import * as driver from './driver.js';
import { count, payloadId, sameValue, violation } from './model.js';
import { LONG_TIMEOUT_MS, type Run, SHORT_TIMEOUT_MS, type SeedPoll, WAKE_LIMIT_MS, untilDeadline } from './run.js';
import type { Reply } from './driver.js';

export function installSeedChecks(run: Run): void {
  run.seedHooks = { onSeedAnswer: (p, reply) => onSeedAnswer(run, p, reply) };
}

function onSeedAnswer(run: Run, p: SeedPoll, reply: Reply | undefined): void {
  if (!reply) return;
  run.expectStatus(p.label, reply, 200);
  const body = reply.body as { data?: unknown; status?: unknown };
  if (body !== null && typeof body === 'object' && 'data' in body) {
    const key = payloadId(body.data);
    const rec = typeof key === 'string' ? run.pushes.get(key) : undefined;
    const said = `${p.label} got ${JSON.stringify(body.data).slice(0, 80)}`;
    if (!rec) {
      const pub = key === undefined ? undefined : run.pubs.get(key);
      violation(`${said}: ${pub ? `the message published to channel ${pub.ch}` : 'a value never pushed'}`);
    }
    if (rec.id !== p.id) violation(`${said}: a push to clientId ${rec.id}`);
    if (!sameValue(body.data, rec.value)) violation(`${said}: differs from the pushed ${JSON.stringify(rec.value)}`);
    if (rec.state === 'delivered') violation(`${said}: delivered a second time (each push exactly once)`);
    if (rec.state === 'queued' && !p.concurrent) {
      const seed = run.seeds.get(p.id)!;
      seed.queued(); // ages out pushes past their TTL
      const older = seed.pushes.find((x) => x.index < rec.index && x.state === 'queued');
      if (older) violation(`${said}: the older push ${older.key} is still queued (oldest first)`);
    }
    rec.state = 'delivered';
    run.log(`  ${p.label} → ${rec.key}`);
    count('seed: delivered');
    return;
  }
  if (body?.status !== 'timeout') violation(`${p.label}: answer ${JSON.stringify(body)} is neither {"data":…} nor {"status":"timeout"}`);
  if (p.long && !p.disconnected) violation(`${p.label}: answered {"status":"timeout"} long before its timeout, with no disconnect`);
  run.log(`  ${p.label} → timeout`);
  count(p.disconnected ? 'seed: timeout after disconnect' : 'seed: timed out');
}

function seedId(run: Run, i: number): string {
  return run.names.seedIds[i % run.names.seedIds.length]!;
}

export async function push(run: Run, idIndex: number, content: unknown, serverPick: number): Promise<void> {
  const id = seedId(run, idIndex);
  const rec = run.newPush(id, content);
  const { server } = run.serverAt(serverPick);
  const what = `push ${id} ${rec.key}`;
  run.log(what);
  const reply = await driver.seedPush(server.url, id, rec.value);
  run.expectStatus(what, reply, 200);
  if ((reply.body as { status?: unknown }).status !== 'ok') violation(`${what}: answer ${JSON.stringify(reply.body)} is not {"status":"ok"}`);
  if (rec.state === 'sent') rec.state = 'queued';
  run.seeds.get(id)!.trimOverflow();
  await run.settle('after a push');
}

export function startSeedPoll(run: Run, id: string, long: boolean, serverPick: number): SeedPoll {
  const { index, server } = run.serverAt(serverPick);
  const label = `seed poll ${id}${run.world.servers.length > 1 ? `@s${index}` : ''}`;
  const pending = driver.startSeedPoll(server.url, id, long ? LONG_TIMEOUT_MS : SHORT_TIMEOUT_MS, run.seedToken);
  const poll: SeedPoll = { label, id, server: index, pending, long, concurrent: false, disconnected: false };
  for (const other of run.seedPolls) {
    if (other.id === id && !other.pending.done) {
      other.concurrent = true;
      poll.concurrent = true;
    }
  }
  run.seedPolls.add(poll);
  run.log(`${label} ${long ? 'long' : `timeout=${SHORT_TIMEOUT_MS}`}`);
  return poll;
}

export async function seedPoll(run: Run, idIndex: number, long: boolean, serverPick: number): Promise<void> {
  startSeedPoll(run, seedId(run, idIndex), long, serverPick);
  await run.settle('after a seed poll');
}

/** A seed poll whose token does not grant the clientId: 403, and no message leaves the queue. */
export async function deniedSeedPoll(run: Run, idIndex: number, serverPick: number): Promise<void> {
  const id = seedId(run, idIndex);
  const { server } = run.serverAt(serverPick);
  const what = `denied seed poll ${id}`;
  run.log(what);
  const pending = driver.startSeedPoll(server.url, id, SHORT_TIMEOUT_MS, run.strangerToken);
  await untilDeadline(pending.reply.catch(() => undefined), Date.now() + WAKE_LIMIT_MS);
  if (!pending.done) {
    pending.abort();
    violation(`${what}: parked instead of answering 403`);
  }
  const reply = (await pending.reply)!;
  if (reply.status === 200) violation(`${what}: answered 200 ${JSON.stringify(reply.body).slice(0, 200)} with a token that does not grant it`);
  run.expectStatus(what, reply, 403);
  count('auth: seed poll refused 403');
}

export async function disconnect(run: Run, idIndex: number, serverPick: number): Promise<void> {
  const id = seedId(run, idIndex);
  const { server } = run.serverAt(serverPick);
  const what = `disconnect ${id}`;
  run.log(what);
  // Marked before sending: a waiting poll may answer before the disconnect's own answer arrives.
  for (const p of run.seedPolls) if (p.id === id) p.disconnected = true;
  const reply = await driver.seedDisconnect(server.url, id);
  run.expectStatus(what, reply, 200);
  run.seeds.get(id)!.disconnect();
  await run.settle('after a disconnect');
}

/** Aborts a waiting seed poll; only while nothing is queued for it, so nothing can be lost. */
export async function abortSeedPoll(run: Run, idIndex: number): Promise<void> {
  const id = seedId(run, idIndex);
  const p = [...run.seedPolls].find((x) => x.id === id && !x.pending.done);
  if (!p || run.seeds.get(id)!.queued().length > 0) return;
  p.pending.abort();
  run.seedPolls.delete(p);
  run.log(`abort ${p.label}`);
  await run.settle('after a seed poll was aborted');
}

/** End of run: a sentinel push, then polls until it arrives; nothing acknowledged may be missing. */
export async function drainSeeds(run: Run): Promise<void> {
  for (const [id, seed] of run.seeds) {
    if (seed.pushes.length === 0) continue;
    const sentinel = run.newPush(id, 'sentinel');
    const reply = await driver.seedPush(run.serverAt(0).server.url, id, sentinel.value);
    run.expectStatus(`push sentinel ${id}`, reply, 200);
    sentinel.state = 'queued';
    seed.trimOverflow();
    for (let i = 0; sentinel.state === 'queued'; i++) {
      if (i > seed.pushes.length + 2) violation(`draining ${id}: the sentinel push did not arrive after ${i} polls`);
      const p = startSeedPoll(run, id, true, i);
      await untilDeadline(p.pending.reply.catch(() => undefined), Date.now() + WAKE_LIMIT_MS);
      if (!p.pending.done) violation(`draining ${id}: ${p.label} got nothing within ${WAKE_LIMIT_MS} ms while ${seed.queued().length} pushes are queued`);
      await run.processAnswers();
    }
    seed.queued(); // ages out pushes past their TTL
    const lost = seed.pushes.filter((x) => x.state === 'queued' || x.state === 'sent');
    if (lost.length > 0) violation(`draining ${id}: acknowledged pushes ${lost.map((x) => x.key).join(', ')} were never delivered (the sentinel came first)`);
  }
}
