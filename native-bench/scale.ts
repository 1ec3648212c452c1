/**
 * 100K+ parked polls on this one machine: `holdfast --procs 6` on Redis, one port, and enough
 * native load processes (≤ 19,000 sockets each: 20,000 open files per process). Reports total
 * RSS of the six servers before and after, per parked poll, and then one publish that every
 * parked poll must receive (which proves they were all parked).
 *
 *   npm run bench:scale [-- POLLS [PROCS]]      (default 100000 6)
 */

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ROOT, freePort, park, rssKiB } from './lib.js';

const polls = Number(process.argv[2] ?? 100_000);
const procs = Number(process.argv[3] ?? 6);

const redisPort = await freePort();
const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise<void>((resolve) => {
  let out = '';
  redis.stdout!.on('data', (d) => {
    out += d;
    if (out.includes('Ready to accept connections')) resolve();
  });
});
redis.stdout!.resume();

const port = await freePort();
const server = spawn(process.execPath, ['--max-semi-space-size=2', `${ROOT}dist/cli.js`, '--procs', String(procs)], {
  env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', REDIS_URL: `redis://127.0.0.1:${redisPort}`, LOG_LEVEL: 'info', LP_MAX_PARKED: '1000000', LP_POLL_TIMEOUT_MS: '120000' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const pids = new Set<number>();
for await (const line of createInterface({ input: server.stdout! })) {
  try {
    const e = JSON.parse(line);
    if (e.msg === 'holdfast ready') pids.add(e.pid);
  } catch { /* supervisor output */ }
  if (pids.size === procs) break;
}
server.stdout!.resume();
const rss = () => [...pids].reduce((a, p) => a + rssKiB(p), 0);

await new Promise((r) => setTimeout(r, 1000));
const before = rss();
const t0 = Date.now();
const run = park(port, polls, { channel: 'scale', waitS: 60, rate: 5000 });
await run.parked;
await new Promise((r) => setTimeout(r, 3000)); // hold
const after = rss();
const parkSeconds = (Date.now() - t0) / 1000;
const published = Date.now();
await fetch(`http://127.0.0.1:${port}/v1/publish/scale`, { method: 'POST', body: '{"to":"everyone"}', headers: { 'content-type': 'application/json' } });
const results = await run.done;
const answered = results.reduce((a, r) => a + r.answered, 0);
const last = Math.max(...results.map((r) => r.last_us)) / 1000;
const row = {
  polls,
  serverProcesses: procs,
  loadProcesses: results.length,
  parkSeconds,
  rssBeforeKiB: before,
  rssAfterKiB: after,
  bytesPerPoll: Math.round(((after - before) * 1024) / polls),
  answeredByOnePublish: answered,
  earlyAnswers: results.reduce((a, r) => a + r.early, 0),
  fanoutLastMs: Math.round(last - published),
};
console.log(JSON.stringify(row));
writeFileSync(new URL(`./results/scale-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url), JSON.stringify(row, null, 2));
server.kill('SIGTERM');
await new Promise((r) => server.once('exit', r));
redis.kill('SIGKILL');
