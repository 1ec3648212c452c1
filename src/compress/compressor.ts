/**
 * Answer compression: a body is compressed at most once per coding, however many answers
 * carry it (a fan-out group's answer, a catch-up answer many pollers share: see
 * Message.answerFrom), and the variants live exactly as long as the body (a WeakMap keyed by
 * it). Bodies under LP_COMPRESS_MIN_BYTES go out as they are; bodies of at least
 * LP_COMPRESS_POOL_BYTES are compressed on a piscina pool of LP_COMPRESS_THREADS threads, off
 * the event loop (inline when the pool's queue is full, or with 0 threads).
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
 * One pool per process and thread count, made when the first large body comes: test runs start
 * many servers in one process, and most never compress a large body. Its threads are unref'd
 * (piscina), so an idle pool never keeps the process alive.
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
  }
  return pool;
}

export class AnswerCompressor {
  private readonly variants = new WeakMap<Buffer, { br?: Variant; gzip?: Variant }>();
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
    if (!known) this.variants.set(body, (known = {}));
    const have = known[encoding];
    if (have !== undefined) return have;
    if (!this.usePool || body.length < this.config.compressPoolBytes) return (known[encoding] = this.inline(body, encoding));
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
