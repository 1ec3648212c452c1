/**
 * Parks polls in Holdfast's own structures without sockets, to show what they cost per poll
 * and that park / wake / expire stay flat from 10K to 1M parked polls (one process cannot
 * hold 1M sockets here: 20,000 open files per process).
 *
 *   npm run bench:sim [-- 10000 100000 1000000]
 *
 * Each poll is parked through PollHub.begin() on its own channel (the inbox shape: a registry
 * entry and a subscription each) with a stand-in response object whose methods live on its
 * prototype, so the heap delta is Holdfast's structures plus ~40 bytes of stand-in.
 */

import { writeFileSync } from 'node:fs';
import { MemoryBroker } from '../src/broker/memory.js';
import { loadConfig } from '../src/config.js';
import { Metrics } from '../src/metrics.js';
import { PollHub } from '../src/poll/hub.js';
import { Poll } from '../src/poll/poll.js';
import { longPollTransport } from '../src/http/poll-transport.js';

if (!global.gc) {
  console.error('run with node --expose-gc (npm run bench:sim does)');
  process.exit(2);
}

/** Stands in for uWS's HttpResponse: every write succeeds at once. */
class StandInResponse {
  closed?: boolean = undefined;
  /** Kept, as uWS keeps it: the abort closure is part of a parked poll's cost. */
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

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const rows = [];
for (const n of sizes.length ? sizes : [10_000, 100_000, 1_000_000]) {
  const config = loadConfig({ LP_MAX_PARKED: String(n * 2) });
  let now = Date.now();
  const broker = new MemoryBroker(config);
  let hub!: PollHub;
  const metrics = new Metrics({ parkedPolls: () => hub.parkedCount, readingPolls: () => 0, decodeQueueDepth: () => 0 });
  hub = new PollHub(broker, config, metrics, (err) => {
    throw err;
  }, () => now);
  const transport = longPollTransport(config);
  broker.setEvents({ messages: (ch, m) => hub.onMessages(ch, m), reset: () => {}, resync: () => {}, queueReady: () => {}, queueDisconnected: () => {} });
  const names = Array.from({ length: n }, (_, i) => `inbox:${i}`);
  const responses = Array.from({ length: n }, () => new StandInResponse());

  global.gc!();
  const heap0 = process.memoryUsage().heapUsed;
  let t = performance.now();
  for (let i = 0; i < n; i++) {
    hub.begin(new Poll(transport, responses[i] as never, [names[i]!], 100, 'json', now + 60_000), ['now']);
  }
  await new Promise((r) => setImmediate(r)); // let every first read settle
  const parkNs = ((performance.now() - t) * 1e6) / n;
  global.gc!();
  const heap1 = process.memoryUsage().heapUsed;
  if (hub.parkedCount !== n) throw new Error(`parked ${hub.parkedCount} of ${n}`);

  // Wake a tenth of them with one message each; delivery runs on the next loop turn.
  const woken = Math.floor(n / 10);
  t = performance.now();
  for (let i = 0; i < woken; i++) await broker.publish({ ch: names[i]!, json: '{"v":1}' });
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  const wakeNs = ((performance.now() - t) * 1e6) / woken;
  if (hub.parkedCount !== n - woken) throw new Error(`woke ${n - hub.parkedCount} of ${woken}`);

  // Expire the rest by moving the clock past their deadline.
  now += 61_000;
  t = performance.now();
  hub.wheel.advance();
  const expireNs = ((performance.now() - t) * 1e6) / (n - woken);
  if (hub.parkedCount !== 0) throw new Error(`${hub.parkedCount} left after expiry`);

  const row = {
    parked: n,
    heapBytesPerPoll: Math.round((heap1 - heap0) / n),
    parkNsPerPoll: Math.round(parkNs),
    wakeNsPerPoll: Math.round(wakeNs),
    expireNsPerPoll: Math.round(expireNs),
  };
  console.log(JSON.stringify(row));
  rows.push(row);
  hub.close();
  await broker.close();
  metrics.close();
}
writeFileSync(new URL(`./results/sim-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url), JSON.stringify(rows, null, 2));
