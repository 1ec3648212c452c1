/**
 * What Redis durability and the lost-writes rule cost (issue 10), measured on real Redis:
 *
 *   npm run bench:redis-costs
 *
 * - the cursor's fingerprint: bytes per cursor entry (encoded, with and without it);
 * - the publish script's extra HSET of the message time (meta field t), and the read script's
 *   LINDEX of the cursor message's time: Redis CPU per call from INFO commandstats, for the
 *   scripts as shipped against copies without those lines;
 * - the meta hash's bytes in Redis with and without the time fields;
 * - the acknowledgement log of the lost-writes audit: heap per entry, and audit time;
 * - LP_REDIS_WAIT_REPLICAS=1 (WAIT after each publish, one replica): publish latency and
 *   throughput against no WAIT, through the broker.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RedisBroker } from '../src/broker/redis/broker.js';
import { AckLog } from '../src/broker/redis/ack-log.js';
import { loadConfig } from '../src/config.js';
import { encodeCursor } from '../src/cursor.js';
import { startRedis, startReplica, stopAllRedis } from '../test/helpers/redis.js';

const CALLS = 20_000;
const ROUNDS = 7;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
/** Keeps what a heap measurement must not lose to the collector. */
const retained: unknown[] = [];
const lua = (name: string) => readFileSync(new URL(`../src/broker/redis/lua/${name}.lua`, import.meta.url), 'utf8');
const common = lua('common');

/** Redis CPU per call (µs) of each script, from INFO commandstats, after `run` ran them. */
async function usecPerCall(redis: Redis, run: () => Promise<void>): Promise<number> {
  await redis.config('RESETSTAT');
  await run();
  const stats = await redis.info('commandstats');
  const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(stats)!;
  return Number(evalsha[2]) / Number(evalsha[1]);
}

async function scriptCosts(redis: Redis) {
  const publish = `${common}\n${lua('publish')}`;
  // The same script without the lost-writes bookkeeping: no t, no b.
  const publishBare = publish
    .replace("redis.call('HSET', meta, 't', now_text)", '')
    .replace("redis.call('HSET', meta, 'b', entry_time(redis.call('LINDEX', hist, len - size - 1)))", '')
    .replace("redis.call('HSET', meta, 'b', dropped)", '');
  const read = `${common}\n${lua('read')}`;
  const shaFull = (await redis.script('LOAD', publish)) as string;
  const shaBare = (await redis.script('LOAD', publishBare)) as string;
  const shaRead = (await redis.script('LOAD', read)) as string;
  const pub = (sha: string, ch: string, i: number) =>
    redis.evalsha(sha, 4, `c{${ch}}:m`, `c{${ch}}:h`, 's{x}', `c{${ch}}:i:`, ch, `{"n":${i}}`, 1000, 3600, 86400, 600, `c{${ch}}:n`, 'PUBLISH', 0);
  const batch = async (fn: (i: number) => Promise<unknown>) => {
    for (let i = 0; i < CALLS; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => fn(i + j)));
  };
  // Rounds alternate with and without, and each side keeps its median (this machine is shared).
  const fullRounds: number[] = [];
  const bareRounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    fullRounds.push(await usecPerCall(redis, () => batch((i) => pub(shaFull, `full${i % 100}`, i))));
    bareRounds.push(await usecPerCall(redis, () => batch((i) => pub(shaBare, `bare${i % 100}`, i))));
  }
  const publishFull = median(fullRounds);
  const publishWithout = median(bareRounds);
  // Reads from a cursor in the middle of a channel's history, asking for nothing new (max 0):
  // with the fingerprint the script also LINDEXes the cursor message's time.
  const epoch = (await redis.hget('c{full0}:m', 'e'))!;
  const rdAt = (wantFp: number, i: number) => redis.evalsha(shaRead, 3, `c{full${i % 100}}:m`, `c{full${i % 100}}:h`, 's{x}', 'pos', epoch, 100, 0, 3600, 86400, 0, wantFp);
  const withRounds: number[] = [];
  const withoutRounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    withRounds.push(await usecPerCall(redis, () => batch((i) => rdAt(1, i))));
    withoutRounds.push(await usecPerCall(redis, () => batch((i) => rdAt(0, i))));
  }
  const readWith = median(withRounds);
  const readWithout = median(withoutRounds);
  const metaWith = (await redis.call('MEMORY', 'USAGE', 'c{full0}:m')) as number;
  await redis.hdel('c{full0}:m', 't', 'b');
  const metaWithout = (await redis.call('MEMORY', 'USAGE', 'c{full0}:m')) as number;
  return { publishFull, publishWithout, readWith, readWithout, metaWith, metaWithout };
}

function cursorBytes() {
  const one = encodeCursor(['user:42'], [{ epoch: '6b09b27e4e0b01', seq: 123456, fp: 0xdeadbeef }]);
  const names = Array.from({ length: 32 }, (_, i) => `room:${i}`);
  const many = encodeCursor(names, names.map(() => ({ epoch: '6b09b27e4e0b01', seq: 123456, fp: 0xdeadbeef })));
  // The fingerprint is 4 bytes of each entry; base64url writes 4 characters per 3 bytes.
  return { oneChannelChars: one.length, thirtyTwoChannelChars: many.length, fingerprintBytesPerEntry: 4, fingerprintCharsPerEntry: Math.round((4 * 4) / 3 * 10) / 10 };
}

async function ackLogCosts(redisUrl: string) {
  const N = 100_000;
  // The channel names and message times exist anyway (the publish made them): made first.
  const names = Array.from({ length: N }, (_, i) => `inbox:${i}`);
  const times = Array.from({ length: N }, (_, i) => `1795797630314.${String(i % 1000).padStart(3, '0')}`);
  retained.push(names, times);
  if (!global.gc) throw new Error('run with node --expose-gc (npm run bench:redis-costs does)');
  global.gc();
  const before = process.memoryUsage().heapUsed;
  const log = new AckLog(30_000);
  for (let i = 0; i < N; i++) log.record(names[i]!, '6b09b27e4e0b01', i + 1, times[i]!);
  retained.push(log);
  global.gc();
  const heapPerEntry = Math.round((process.memoryUsage().heapUsed - before) / N);
  // The audit after a reconnect: every acknowledged channel checked, through the broker.
  const config = loadConfig({ REDIS_URL: redisUrl, LP_REDIS_PREFIX: 'audit:', LOG_LEVEL: 'silent' });
  const broker = new RedisBroker(config, pino({ level: 'silent' }));
  broker.setEvents({ messages() {}, reset() {}, resync() {}, queueReady() {}, queueDisconnected() {} });
  await broker.start();
  await broker.waitReady(10_000);
  const channels = 10_000;
  for (let i = 0; i < channels; i += 500) await Promise.all(Array.from({ length: 500 }, (_, j) => broker.publish({ ch: `a${i + j}`, json: '1' })));
  const t = performance.now();
  await (broker as unknown as { recover(why: string): Promise<void> }).recover('bench');
  const auditMs = performance.now() - t;
  await broker.close();
  return { heapPerEntry, auditChannels: channels, auditMs: Math.round(auditMs) };
}

async function waitCosts(redisUrl: string, replicas: number) {
  const config = loadConfig({ REDIS_URL: redisUrl, LP_REDIS_PREFIX: `w${replicas}:`, LP_REDIS_WAIT_REPLICAS: String(replicas), LOG_LEVEL: 'silent' });
  const broker = new RedisBroker(config, pino({ level: 'silent' }));
  broker.setEvents({ messages() {}, reset() {}, resync() {}, queueReady() {}, queueDisconnected() {} });
  await broker.start();
  await broker.waitReady(10_000);
  const lat: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    await broker.publish({ ch: `lat${i % 10}`, json: String(i) });
    lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  const N = 20_000;
  const t = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < N) await broker.publish({ ch: `tp${next++ % 100}`, json: '1' });
  }));
  const perSecond = Math.round(N / ((performance.now() - t) / 1000));
  await broker.close();
  return { replicas, p50Ms: Math.round(lat[lat.length >> 1]! * 1000) / 1000, p99Ms: Math.round(lat[Math.floor(lat.length * 0.99)]! * 1000) / 1000, publishesPerSecond50InFlight: perSecond };
}

const primary = await startRedis();
const plain = new Redis(primary.url);
const scripts = await scriptCosts(plain);
plain.disconnect();
const cursor = cursorBytes();
const ackLog = await ackLogCosts(primary.url);
const withoutWait = await waitCosts(primary.url, 0);
await startReplica(primary);
const withWait = await waitCosts(primary.url, 1);
await stopAllRedis();

const result = { date: new Date().toISOString(), cursor, scripts, ackLog, wait: [withoutWait, withWait] };
console.log(JSON.stringify(result, null, 2));
console.log(`
| cost | with | without | difference |
|---|---|---|---|
| cursor entry (fingerprint) | ${cursor.fingerprintBytesPerEntry} bytes = ${cursor.fingerprintCharsPerEntry} characters | – | 1 channel: ${cursor.oneChannelChars} chars; 32 channels: ${cursor.thirtyTwoChannelChars} chars |
| publish script, Redis CPU per call (HSET t) | ${scripts.publishFull.toFixed(2)} µs | ${scripts.publishWithout.toFixed(2)} µs | ${(scripts.publishFull - scripts.publishWithout).toFixed(2)} µs |
| read script from a cursor, Redis CPU per call (LINDEX) | ${scripts.readWith.toFixed(2)} µs | ${scripts.readWithout.toFixed(2)} µs | ${(scripts.readWith - scripts.readWithout).toFixed(2)} µs |
| meta hash in Redis (t, b fields) | ${scripts.metaWith} bytes | ${scripts.metaWithout} bytes | ${scripts.metaWith - scripts.metaWithout} bytes per channel |
| ack log (audit), Node heap per recently published channel | ${ackLog.heapPerEntry} bytes | – | audit of ${ackLog.auditChannels.toLocaleString('en')} channels: ${ackLog.auditMs} ms |
| publish p50 / p99, one at a time | ${withWait.p50Ms} / ${withWait.p99Ms} ms (WAIT 1) | ${withoutWait.p50Ms} / ${withoutWait.p99Ms} ms | |
| publishes/s, 50 in flight | ${withWait.publishesPerSecond50InFlight.toLocaleString('en')} (WAIT 1) | ${withoutWait.publishesPerSecond50InFlight.toLocaleString('en')} | ${Math.round((1 - withWait.publishesPerSecond50InFlight / withoutWait.publishesPerSecond50InFlight) * 100)}% fewer |`);
const file = new URL(`./results/redis-costs-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url);
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(`\nwritten: ${file.pathname}`);
