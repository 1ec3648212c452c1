/**
 * Inline vs piscina-pool decoding of Redis notification envelopes.
 *
 *   npm run bench:decode [-- --quick]
 *
 * For 1, 100 and 1,000 envelopes per batch and 100 B and 16 KiB payloads, measures envelopes
 * decoded per second (into Message objects with their JSON fragment rendered, as delivery
 * needs them) inline on the event loop and on a pool of 1 and 2 threads. Repeats each cell
 * and quotes the median; prints a table and writes native-bench/results/decode-<date>.json.
 */

import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { pack } from 'msgpackr';
import { InlineDecoder, PoolDecoder, type Decoder } from '../src/decode/pool.js';
import { Message } from '../src/message.js';

const quick = process.argv.includes('--quick');
const REPEATS = quick ? 3 : 5;
const CELL_MS = quick ? 150 : 400;
const BATCHES = [1, 100, 1000];
const PAYLOADS = [100, 16 * 1024];

function envelope(seq: number, size: number): Buffer {
  const data = JSON.stringify({ text: 'x'.repeat(Math.max(0, size - 12)) });
  return pack({ ch: 'bench:channel', seq, epoch: '18d2f4a1c0b3e1', t: Date.now() + 0.123, data });
}

/** Envelopes per second through `decoder`, keeping up to `inflight` batches in flight. */
async function measure(decoder: Decoder, frames: Buffer[], inflight: number): Promise<number> {
  const deadline = performance.now() + CELL_MS;
  let decoded = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (performance.now() < deadline) {
      const out = await decoder.decode(frames);
      for (const m of out) if (m instanceof Message) m.jsonFragment();
      decoded += out.length;
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return decoded / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const decoders: { name: string; make: () => Decoder; inflight: number }[] = [
  { name: 'inline', make: () => new InlineDecoder(), inflight: 1 },
  { name: 'pool-1', make: () => new PoolDecoder(1), inflight: 4 },
  { name: 'pool-2', make: () => new PoolDecoder(2), inflight: 8 },
];

const rows: { payload: number; batch: number; decoder: string; envelopesPerSec: number }[] = [];
for (const payload of PAYLOADS) {
  for (const batch of BATCHES) {
    const frames = Array.from({ length: batch }, (_, i) => envelope(i + 1, payload));
    for (const d of decoders) {
      const decoder = d.make();
      await measure(decoder, frames, d.inflight); // warm-up
      const runs: number[] = [];
      for (let r = 0; r < REPEATS; r++) runs.push(await measure(decoder, frames, d.inflight));
      await decoder.close();
      rows.push({ payload, batch, decoder: d.name, envelopesPerSec: Math.round(median(runs)) });
    }
  }
}

const lines = ['| payload | batch | inline env/s | pool-1 env/s | pool-2 env/s | pool-2 / inline |', '|---|---|---|---|---|---|'];
for (const payload of PAYLOADS) {
  for (const batch of BATCHES) {
    const get = (name: string) => rows.find((r) => r.payload === payload && r.batch === batch && r.decoder === name)!.envelopesPerSec;
    lines.push(`| ${payload} B | ${batch} | ${get('inline').toLocaleString('en')} | ${get('pool-1').toLocaleString('en')} | ${get('pool-2').toLocaleString('en')} | ${(get('pool-2') / get('inline')).toFixed(2)}× |`);
  }
}
const table = lines.join('\n');
console.log(`decode: inline vs piscina pool, median of ${REPEATS} × ${CELL_MS} ms (${cpus().length} cores: ${cpus()[0]?.model})\n`);
console.log(table);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/decode-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, quick, rows, table }, null, 2));
console.log(`\nwritten to ${file.pathname}`);
