/**
 * Answer compression, where it pays (native-bench/compress.ts measured it):
 *   - a body that several polls get (a fan-out group's answer, a catch-up answer pollers from
 *     one cursor share: Message.answerFrom) is compressed once per coding, from its second
 *     answer on (its first goes out as it is); every later answer is smaller and cheaper to
 *     send: catch-ups of 100 × 2 KiB to 5,000 polls 1.6× faster with br, 77% fewer bytes;
 *   - a body only one poll gets costs more to compress than to send (on loopback, 2–3× the CPU
 *     per answer): it goes out as it is, unless it is at least LP_COMPRESS_POOL_BYTES and the
 *     pool is on, where it is compressed off the event loop (bandwidth for large answers);
 *   - bodies under LP_COMPRESS_MIN_BYTES are never compressed.
 * Variants live exactly as long as their body (a WeakMap keyed by it). Shared bodies of at
 * least LP_COMPRESS_POOL_BYTES go to the pool too (inline when its queue is full, or with
 * LP_COMPRESS_THREADS=0).
 */

import { Piscina } from 'piscina';
import type { Config } from '../config.js';
import type { Encoding } from './accept.js';
import { compressSync } from './codec.js';
import type { CompressTask } from './worker.js';

type CompressConfig = Pick<Config, 'compressMinBytes' | 'compressPoolBytes' | 'compressThreads'>;

/** A compressed body, one being made on the pool, or null: compressing did not make it smaller. */
type Variant = Buffer | Promise<Buffer | null> | null;

/** Tasks queued per pool thread before compression falls back to the event loop. */
const QUEUE_PER_THREAD = 64;

/**
 * One pool per process and thread count (test runs start many servers in one process), made
 * when the first body of LP_COMPRESS_POOL_BYTES comes (with default limits no answer is that
 * large, so no thread is started) and warmed with a tiny task. Its threads are unref'd
 * (piscina): an idle pool never keeps the process alive.
 */
const pools = new Map<number, Piscina>();
function poolOf(threads: number): Piscina {
  let pool = pools.get(threads);
  if (!pool) {
    const self = new URL(import.meta.url);
    const ext = self.pathname.endsWith('.ts') ? '.ts' : '.js';
    pool = new Piscina({
      filename: new URL(`./worker${ext}`, self).href,
      minThreads: threads,
      maxThreads: threads,
      maxQueue: threads * QUEUE_PER_THREAD,
    });
    pools.set(threads, pool);
    const warm: CompressTask = { body: new ArrayBuffer(16), encoding: 'gzip' };
    pool.run(warm).catch(() => undefined);
  }
  return pool;
}

export class AnswerCompressor {
  private readonly variants = new WeakMap<Buffer, { answers: number; br?: Variant; gzip?: Variant }>();
  private readonly usePool: boolean;
  /** Bodies compressed, inline and on the pool (for tests and the benchmark). */
  readonly counts = { inline: 0, pool: 0 };

  constructor(private readonly config: CompressConfig) {
    this.usePool = config.compressMinBytes > 0 && config.compressThreads > 0;
  }

  /** Compression is on (LP_COMPRESS_MIN_BYTES > 0): answers that may vary say so (Vary). */
  get enabled(): boolean {
    return this.config.compressMinBytes > 0;
  }

  /**
   * What to send a client that accepts `encoding`: the compressed body, a promise of it (from
   * the pool), or null to send `body` as it is (small, or not made smaller).
   */
  compressed(body: Buffer, encoding: Encoding): Buffer | Promise<Buffer | null> | null {
    if (!this.enabled || body.length < this.config.compressMinBytes) return null;
    let known = this.variants.get(body);
    if (!known) this.variants.set(body, (known = { answers: 0 }));
    known.answers++;
    const have = known[encoding];
    if (have !== undefined) return have;
    const large = this.usePool && body.length >= this.config.compressPoolBytes;
    // The first answer with a body goes out as it is unless the pool takes it: it may be the only one.
    if (known.answers === 1 && !large) return null;
    if (!large) return (known[encoding] = this.inline(body, encoding));
    const made = this.onPool(body, encoding);
    known[encoding] = made;
    // Once made, later answers take the bytes at once (not through a promise).
    if (made instanceof Promise) void made.then((ready) => (known[encoding] = ready));
    return made;
  }

  private inline(body: Buffer, encoding: Encoding): Buffer | null {
    this.counts.inline++;
    const out = compressSync(body, encoding);
    return out.length < body.length ? out : null;
  }

  private onPool(body: Buffer, encoding: Encoding): Promise<Buffer | null> | Buffer | null {
    const pool = poolOf(this.config.compressThreads);
    if (pool.queueSize >= pool.options.maxQueue) return this.inline(body, encoding);
    this.counts.pool++;
    // The body stays with the answers that send it as it is: the worker gets a copy.
    const copy = new ArrayBuffer(body.length);
    new Uint8Array(copy).set(body);
    const task: CompressTask = { body: copy, encoding };
    return pool.run(task, { transferList: [copy] }).then(
      (result: ArrayBuffer) => (result.byteLength < body.length ? Buffer.from(result) : null),
      () => this.inline(body, encoding), // the pool failed (closing): do it here
    );
  }
}
