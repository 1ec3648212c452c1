/**
 * Resubscribe at scale (issue 10): with N channels subscribed — N parked inbox polls, one
 * channel each — every subscriber connection is dropped (CLIENT KILL TYPE pubsub on every
 * master), and this measures how long until every channel is subscribed again and every
 * parked poll has re-read its channel.
 *
 *   npm run bench:resubscribe [-- --channels 100000 --modes redis,cluster --subscribers 2]
 *
 * In process, without sockets (one process may hold 20,000 open files here): the real
 * RedisBroker and PollHub on real Redis servers, polls parked through PollHub.begin() with a
 * stand-in response (as native-bench/sim.ts does). Subscriptions are restored in batches
 * (SUBSCRIBE of up to 5,000 channels per connection; one SSUBSCRIBE per slot on Cluster), and
 * only once they hold are the polls told to re-read.
 *
 * Two re-read policies are measured after the same drop:
 *   all       every resync re-reads every parked poll (what the server does today: it ignores
 *             the channels a resync names, so K connections coming back re-read K times)
 *   channels  a resync re-reads only the polls on the channels it names
 */

import { writeFileSync } from 'node:fs';
import { pino } from 'pino';
import type { ReadFrom } from '../src/broker/broker.js';
import { RedisBroker } from '../src/broker/redis/broker.js';
import { loadConfig } from '../src/config.js';
import { longPollTransport } from '../src/http/poll-transport.js';
import { Metrics } from '../src/metrics.js';
import { PollHub } from '../src/poll/hub.js';
import { Poll } from '../src/poll/poll.js';
import { type RedisServer, clusterLayout, startRedis, startRedisCluster, stopAllRedis } from '../test/helpers/redis.js';

/** Stands in for uWS's HttpResponse: every write succeeds at once. */
class StandInResponse {
  closed?: boolean = undefined;
  abortHandler: (() => void) | undefined = undefined;
  onAborted(fn: () => void): this {
    this.abortHandler = fn;
    return this;
  }
  cork(fn: () => void): this {
    fn();
    return this;
  }
  writeStatus(): this {
    return this;
  }
  writeHeader(): this {
    return this;
  }
  getWriteOffset(): number {
    return 0;
  }
  tryEnd(): [boolean, boolean] {
    return [true, true];
  }
  end(): this {
    return this;
  }
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const CHANNELS = Number(arg('channels', '100000'));
const MODES = arg('modes', 'redis,cluster').split(',') as ('redis' | 'cluster')[];
const SUBSCRIBERS = arg('subscribers', '2');
const LIMIT_MS = 600_000;

async function until(what: string, predicate: () => boolean | Promise<boolean>, pollMs = 5): Promise<void> {
  const deadline = Date.now() + LIMIT_MS;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Channel subscriptions Redis holds for clients named holdfast-sub, summed over `servers`. */
async function subscriptionsHeld(servers: RedisServer[]): Promise<number> {
  let total = 0;
  for (const s of servers) {
    for (const line of (await s.cli('client', 'list', 'type', 'pubsub')).split('\n')) {
      if (!line.includes('name=holdfast-sub')) continue;
      total += Number(/ sub=(\d+)/.exec(line)?.[1] ?? 0) + Number(/ ssub=(\d+)/.exec(line)?.[1] ?? 0);
    }
  }
  return total;
}

interface Row {
  mode: 'redis' | 'cluster';
  policy: 'all' | 'channels';
  channels: number;
  subscriberConnections: number;
  parkSeconds: number;
  /** From the drop until the last connection had every channel confirmed by Redis again. */
  resubscribedMs: number;
  /** From the drop until the last re-read finished (every parked poll re-read after its channel held again). */
  rereadMs: number;
  reads: number;
}

async function measure(mode: 'redis' | 'cluster'): Promise<Row[]> {
  let env: Record<string, string>;
  let masters: RedisServer[];
  if (mode === 'redis') {
    const redis = await startRedis();
    env = { REDIS_URL: redis.url };
    masters = [redis];
  } else {
    const cluster = await startRedisCluster();
    env = { REDIS_CLUSTER_NODES: cluster.nodes.join(',') };
    const layout = await clusterLayout(cluster.servers[0]!);
    masters = cluster.servers.filter((s) => layout.some((n) => n.master && n.address === s.address));
  }
  const config = loadConfig({ ...env, LP_REDIS_PREFIX: 'rs:', LP_REDIS_SUBSCRIBERS: SUBSCRIBERS, LP_MAX_PARKED: String(CHANNELS * 2), LOG_LEVEL: 'silent' });
  const broker = new RedisBroker(config, pino({ level: 'silent' }));
  let hub!: PollHub;
  const metrics = new Metrics({ parkedPolls: () => hub.parkedCount, readingPolls: () => hub.registry.size - hub.parkedCount, decodeQueueDepth: () => 0 });
  hub = new PollHub(broker, config, metrics, (err) => {
    throw err;
  });
  let policy: 'all' | 'channels' = 'all';
  // Each connection that restored its subscriptions reports its channels (once they hold).
  let restored = 0;
  let lastRestoredAt = 0;
  broker.setEvents({
    messages: (ch, m) => hub.onMessages(ch, m),
    reset: (ch) => hub.onReset(ch),
    resync: (channels) => {
      if (channels) {
        restored += channels.length;
        lastRestoredAt = performance.now();
      }
      if (policy === 'channels' && channels) for (const ch of channels) hub.onReset(ch);
      else hub.onResync();
    },
    queueReady: () => {},
    queueDisconnected: () => {},
  });
  // Count the reads that finish after the drop, and when the last one did.
  let counting = false;
  let reads = 0;
  let lastReadAt = 0;
  const read = broker.read.bind(broker);
  broker.read = async (ch: string, from: ReadFrom, max: number) => {
    const r = await read(ch, from, max);
    if (counting) {
      reads++;
      lastReadAt = performance.now();
    }
    return r;
  };
  await broker.start();
  await broker.waitReady(30_000);

  const transport = longPollTransport(config);
  const deadline = Date.now() + 3_600_000;
  let t = performance.now();
  for (let i = 0; i < CHANNELS; i++) {
    hub.begin(new Poll(transport, new StandInResponse() as never, [`inbox:${i}`], 100, 'json', deadline), ['now']);
    if (i % 2000 === 1999) await new Promise((r) => setImmediate(r));
  }
  await until('every poll parked', () => hub.parkedCount === CHANNELS, 20);
  const parkSeconds = (performance.now() - t) / 1000;
  await until('every channel subscribed', async () => (await subscriptionsHeld(masters)) === CHANNELS, 20);
  const connections = mode === 'cluster' ? masters.length : Number(SUBSCRIBERS);
  console.log(`${mode}: ${CHANNELS} polls parked and subscribed in ${parkSeconds.toFixed(1)} s on ${connections} subscriber connections`);

  const rows: Row[] = [];
  for (const p of ['all', 'channels'] as const) {
    policy = p;
    reads = 0;
    restored = 0;
    counting = true;
    t = performance.now();
    await Promise.all(masters.map((m) => m.cli('client', 'kill', 'type', 'pubsub')));
    // Every connection restored (confirmed) its channels, then every poll re-read and parked,
    // and nothing more happens for a second.
    await until('every channel subscribed again', () => restored >= CHANNELS, 1);
    for (;;) {
      await until('every poll re-read and parked again', () => hub.parkedCount === CHANNELS && hub.registry.size === CHANNELS && reads >= CHANNELS, 1);
      const seen = [lastRestoredAt, reads];
      await new Promise((r) => setTimeout(r, 1000));
      if (hub.parkedCount === CHANNELS && lastRestoredAt === seen[0] && reads === seen[1]) break;
    }
    counting = false;
    const held = await subscriptionsHeld(masters);
    if (held !== CHANNELS) throw new Error(`Redis holds ${held} of ${CHANNELS} subscriptions`);
    const row: Row = { mode, policy: p, channels: CHANNELS, subscriberConnections: connections, parkSeconds: Math.round(parkSeconds * 10) / 10, resubscribedMs: Math.round(lastRestoredAt - t), rereadMs: Math.round(lastReadAt - t), reads };
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  hub.close();
  await broker.close();
  metrics.close();
  await stopAllRedis();
  return rows;
}

const rows: Row[] = [];
for (const mode of MODES) rows.push(...(await measure(mode)));
console.log('\n| mode | re-read policy | channels | subscriber connections | all subscribed again | all polls re-read | reads |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.mode} | ${r.policy} | ${r.channels.toLocaleString('en')} | ${r.subscriberConnections} | ${r.resubscribedMs.toLocaleString('en')} ms | ${r.rereadMs.toLocaleString('en')} ms | ${r.reads.toLocaleString('en')} |`);
const file = new URL(`./results/resubscribe-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), channels: CHANNELS, rows }, null, 2));
console.log(`\nwritten: ${file.pathname}`);
