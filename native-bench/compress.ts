/**
 * Answer compression, measured: a catch-up of 100 × 2 KiB JSON messages to 5,000 polls (each
 * poll asks from cursor=earliest and gets all 100 in one answer), compression off, inline
 * (on the event loop) and on the pool, with gzip and with br. Bytes on the wire per answer and
 * deliveries/s (messages delivered per second, from the burst of requests to the last byte of
 * the last answer); medians of interleaved runs. Then smaller answers, shared (one body for
 * every poll) and unshared (a body per poll: every one compressed), and the cost of one
 * compression by body size: what sets LP_COMPRESS_MIN_BYTES and LP_COMPRESS_POOL_BYTES.
 *
 *   npm run bench:compress [-- --polls 5000] [--runs 3] [--cores 1|2]
 *
 * --cores 1 (default) pins the server to core 0 like every other step, pool threads included
 * (so the pool can only add overhead); --cores 2 lets the server use both cores (the load tool
 * shares core 1), what a pool is for.
 */

import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { median, park, serverRunner, startHoldfast } from './lib.js';

const argv = process.argv.slice(2);
const arg = (name: string) => {
  const i = argv.indexOf(name);
  return i === -1 ? undefined : argv[i + 1];
};
const POLLS = Number(arg('--polls') ?? 5000);
const RUNS = Number(arg('--runs') ?? 3);
const CORES = Number(arg('--cores') ?? 1);
const MESSAGES = 100;
/** --cases 0,2: only these cases (indexes into CASES). */
const PICK = arg('--cases')?.split(',').map(Number);
if (CORES === 2) serverRunner.wrap = ['taskset', '-c', '0,1'];

/** ~2 KiB JSON values that compress like chat or event payloads (words, ids, numbers). */
let seed = 42;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const WORDS = 'the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part'.split(' ');
function payload(i: number) {
  const text = () => {
    let s = '';
    while (s.length < 300) s += WORDS[Math.floor(rnd() * WORDS.length)] + ' ';
    return s;
  };
  return {
    id: `msg-${(rnd() * 1e9) | 0}-${i}`, user: { id: (rnd() * 1e6) | 0, name: `user${(rnd() * 5000) | 0}` }, at: 1795800000000 + i * 1000,
    text: text(), quote: text(), extra: text(), body2: text(), body3: text(), reactions: { like: (rnd() * 50) | 0 }, score: rnd() * 100,
    attachments: [{ url: `https://cdn.example.com/${(rnd() * 1e12).toString(36)}.png`, w: 640, h: 480 }],
  };
}

interface Mode {
  name: string;
  env: Record<string, string>;
  accept: string | undefined;
}
const OFF: Mode = { name: 'off', env: { LP_COMPRESS_MIN_BYTES: '0' }, accept: undefined };
const inline = (accept: string): Mode => ({ name: `inline ${accept}`, env: { LP_COMPRESS_MIN_BYTES: '1024', LP_COMPRESS_THREADS: '0' }, accept });
const pooled = (accept: string): Mode => ({ name: `pool ${accept}`, env: { LP_COMPRESS_MIN_BYTES: '1024', LP_COMPRESS_POOL_BYTES: '1024', LP_COMPRESS_THREADS: '1' }, accept });

/**
 * A case: `messages` per answer; shared: every poll follows one channel from the same cursor
 * (one body for all, compressed once); unshared: each poll its own channel (a body, and a
 * compression, per poll).
 */
interface Case {
  messages: number;
  shared: boolean;
  polls: number;
  modes: Mode[];
}
const CASES: Case[] = [
  { messages: MESSAGES, shared: true, polls: POLLS, modes: [OFF, inline('gzip'), inline('br'), pooled('gzip'), pooled('br')] },
  { messages: 32, shared: true, polls: POLLS, modes: [OFF, inline('br'), pooled('br')] },
  { messages: 1, shared: false, polls: 2000, modes: [OFF, inline('br'), pooled('br')] },
  { messages: 2, shared: false, polls: 2000, modes: [OFF, inline('br'), pooled('br')] },
  { messages: 8, shared: false, polls: 2000, modes: [OFF, inline('br'), pooled('br')] },
  { messages: 32, shared: false, polls: 2000, modes: [OFF, inline('br'), pooled('br')] },
];

async function catchUp(c: Case, mode: Mode) {
  // One answer carries every message: the body budget is half of LP_MAX_BACKPRESSURE.
  const server = await startHoldfast({ ...mode.env, LP_MAX_BACKPRESSURE: String(4 << 20) });
  try {
    seed = 42;
    const channels = c.shared ? 1 : c.polls;
    const items: { ch: string; data: unknown }[] = [];
    for (let k = 0; k < channels; k++) for (let i = 0; i < c.messages; i++) items.push({ ch: `cu${k}`, data: payload(i) });
    for (let i = 0; i < items.length; i += 20) {
      const r = await fetch(`http://127.0.0.1:${server.port}/v1/publish`, { method: 'POST', body: JSON.stringify({ messages: items.slice(i, i + 20) }), headers: { 'content-type': 'application/json' } });
      if (r.status !== 200) throw new Error(`publish: ${r.status}`);
    }
    // One answer first, so every mode starts warm (the JIT; the pool's thread).
    const warm = park(server.port, 1, {
      path: `/v1/poll?ch=%s&cursor=earliest&max=${c.messages}`, channel: 'cu0', waitS: 30, headers: mode.accept ? [`Accept-Encoding: ${mode.accept}`] : [], full: true,
    });
    await warm.done;
    const run = park(server.port, c.polls, {
      path: `/v1/poll?ch=%s&cursor=earliest&max=${c.messages}`, ...(c.shared ? { channel: 'cu0' } : { prefix: 'cu' }), waitS: 120, rate: 10_000,
      headers: mode.accept ? [`Accept-Encoding: ${mode.accept}`] : [], full: true, gate: true,
    });
    const [r] = await run.done;
    if (!r || r.answered !== c.polls) throw new Error(`${mode.name}: ${r?.answered} of ${c.polls} answered (${r?.errors} errors)`);
    const seconds = (r.last_us - r.sent_us) / 1e6;
    return { bytesPerAnswer: Math.round(r.bytes / r.answered), deliveriesPerSec: Math.round((r.answered * c.messages) / seconds), pollsPerSec: Math.round(r.answered / seconds), lastMs: Math.round(seconds * 1000) };
  } finally {
    await server.stop();
  }
}

console.log(`compression: catch-ups of ~2 KiB JSON messages; ${RUNS} interleaved runs; server on ${CORES === 2 ? 'cores 0-1' : 'core 0'}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
type Sample = { bytesPerAnswer: number; deliveriesPerSec: number; pollsPerSec: number; lastMs: number };
const label = (c: Case) => `${c.messages} message${c.messages > 1 ? 's' : ''}, ${c.shared ? `one body for ${c.polls.toLocaleString('en')} polls` : `a body per poll (${c.polls.toLocaleString('en')})`}`;
const samples = new Map<string, Sample[]>();
const chosen = PICK ? CASES.filter((_, i) => PICK.includes(i)) : CASES;
for (let run = 0; run < RUNS; run++) {
  for (const c of chosen) {
    for (const mode of c.modes) {
      const m = await catchUp(c, mode);
      const key = `${label(c)} | ${mode.name}`;
      (samples.get(key) ?? samples.set(key, []).get(key)!).push(m);
      console.log(`  run ${run + 1} ${key}: ${JSON.stringify(m)}`);
    }
  }
}
const rows: Record<string, unknown>[] = [];
const lines = ['| answers | mode | bytes per answer | deliveries/s | polls/s | last answer ms | vs off |', '|---|---|---|---|---|---|---|'];
for (const c of chosen) {
  let off = 0;
  for (const mode of c.modes) {
    const s = samples.get(`${label(c)} | ${mode.name}`)!;
    const row = { case: label(c), mode: mode.name, bytesPerAnswer: median(s.map((x) => x.bytesPerAnswer)), deliveriesPerSec: median(s.map((x) => x.deliveriesPerSec)), pollsPerSec: median(s.map((x) => x.pollsPerSec)), lastMs: median(s.map((x) => x.lastMs)) };
    if (mode === OFF) off = row.deliveriesPerSec;
    rows.push(row);
    lines.push(`| ${label(c)} | ${mode.name} | ${row.bytesPerAnswer.toLocaleString('en')} | ${row.deliveriesPerSec.toLocaleString('en')} | ${row.pollsPerSec.toLocaleString('en')} | ${row.lastMs.toLocaleString('en')} | ${(row.deliveriesPerSec / off).toFixed(2)}× |`);
  }
}

// The cost of one compression by size (this process, one core): where compressing starts to pay
// (LP_COMPRESS_MIN_BYTES) and where it is long enough to hand to the pool (LP_COMPRESS_POOL_BYTES).
seed = 42;
let all = '';
while (all.length < 1 << 20) all += JSON.stringify(payload(all.length)) + ',';
const sizes = [512, 1024, 2048, 4096, 16384, 65536, 262144, 1048576];
const costLines = ['| body bytes | br q1 µs | br ratio | gzip l1 µs | gzip ratio |', '|---|---|---|---|---|'];
const cost: Record<number, unknown> = {};
for (const size of sizes) {
  const body = Buffer.from(all.slice(0, size));
  const time = (f: () => Buffer) => {
    let n = 0;
    let out = f();
    const t0 = process.hrtime.bigint();
    while (process.hrtime.bigint() - t0 < 300_000_000n) {
      out = f();
      n++;
    }
    return { us: Number(process.hrtime.bigint() - t0) / 1000 / n, ratio: out.length / body.length };
  };
  const br = time(() => brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 1, [constants.BROTLI_PARAM_SIZE_HINT]: size } }));
  const gz = time(() => gzipSync(body, { level: 1 }));
  cost[size] = { br, gzip: gz };
  costLines.push(`| ${size.toLocaleString('en')} | ${br.us.toFixed(1)} | ${br.ratio.toFixed(2)} | ${gz.us.toFixed(1)} | ${gz.ratio.toFixed(2)} |`);
}
console.log('\n' + lines.join('\n') + '\n\n' + costLines.join('\n'));
const out = new URL(`./results/compress-${new Date().toISOString().slice(0, 10)}${CORES === 2 ? '-2cores' : ''}.json`, import.meta.url);
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), runs: RUNS, cores: CORES, load: loadavg(), rows, samples: Object.fromEntries(samples), cost }, null, 2));
console.log(`written: native-bench/results/${out.pathname.split('/').pop()}`);
