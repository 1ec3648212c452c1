/**
 * Prometheus metrics, one registry per server (so several servers can share a process in
 * tests). Gauges that mirror live state are read at scrape time, not updated per request.
 *
 * Names: Holdfast's own metrics start with `holdfast_`; the process and runtime metrics keep
 * prom-client's standard `process_*` / `nodejs_*` names, so stock Node.js dashboards work.
 *
 * Under `holdfast --procs N` the workers share one port, so a scrape lands on any one of them.
 * That worker asks the supervisor (over the fork IPC channel) for every worker's metrics, and
 * answers the scrape with their aggregate (prom-client's AggregatorRegistry.aggregate): one
 * scrape covers every process. See `WorkerGroupRegistry` and src/supervisor.ts.
 */

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, type CounterConfiguration, Gauge, Histogram, type HistogramConfiguration, type LabelValues, Registry, collectDefaultMetrics, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';

export type AnswerReason = 'messages' | 'timeout' | 'gap' | 'drain';

/** How a message reaches its subscriber (the `transport` label of the delivery metrics). */
export type TransportKind = 'poll' | 'sse' | 'ws';
const TRANSPORTS: readonly TransportKind[] = ['poll', 'sse', 'ws'];
const REASONS: readonly AnswerReason[] = ['messages', 'timeout', 'gap', 'drain'];
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;
const CATCHUP_BUCKETS = [0.01, 0.1, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400] as const;
const LAG_BUCKETS = [0, 1, 2, 5, 10, 50, 100, 500, 1000, 10000] as const;

/** The delivery metrics of one transport, counted in place (no hashing per answer). */
export interface DeliveryMetrics {
  delivered: CountedCounter;
  latency: CountedHistogram;
  catchup: CountedHistogram;
}

export interface LiveState {
  parkedPolls(): number;
  /** Polls registered but not parked: reading history, or waiting for a subscription. */
  readingPolls(): number;
  decodeQueueDepth(): number;
  /** Open SSE streams / WebSocket connections. */
  openStreams?(transport: 'sse' | 'ws'): number;
}

export class Metrics {
  readonly registry: Registry = new WorkerGroupRegistry();
  readonly pollsAnswered: Counter<'reason'>;
  /** Counted in place: no label hashing per answer. */
  readonly answeredBy: Record<AnswerReason, CountedCounter>;
  readonly published: CountedCounter;
  readonly deliveredTotal: Counter<'transport'>;
  /** Live delivery only: publish → answer written, for a message that reached a waiting poll. */
  readonly deliveryLatency: Histogram<'transport'>;
  /** Catch-up reads: how old a message read from history was when its answer was written. */
  readonly catchupAge: Histogram<'transport'>;
  /** The three delivery metrics per transport, pre-bound. */
  readonly deliveryBy: Record<TransportKind, DeliveryMetrics>;
  /** Messages delivered by long polls (the seed API's). */
  readonly delivered: CountedCounter;
  /** How far behind the head a new poll's cursor was. */
  readonly pollLag: CountedHistogram;
  readonly slowClosed: Counter;
  readonly rejected: Counter<'reason'>;
  readonly brokerReconnects: Counter;
  private readonly loop: LoopDelay;

  constructor(live: LiveState) {
    const registers = [this.registry];
    this.loop = new LoopDelay();
    registerDefaultMetrics(this.registry, this.loop);
    new Gauge({ name: 'holdfast_processes', help: 'Holdfast server processes in this scrape (1 per process; under --procs, the workers that answered).', registers, collect() { this.set(1); } });
    new Gauge({ name: 'holdfast_parked_polls', help: 'Polls parked (waiting for a message), /v1/poll and /poll.', registers, collect() { this.set(live.parkedPolls()); } });
    new Gauge({ name: 'holdfast_reading_polls', help: 'Polls reading history or waiting for their subscription (not yet parked).', registers, collect() { this.set(live.readingPolls()); } });
    const answeredBy = {} as Record<AnswerReason, CountedCounter>;
    for (const reason of REASONS) answeredBy[reason] = new CountedCounter();
    this.answeredBy = answeredBy;
    this.pollsAnswered = countedCounter({ name: 'holdfast_polls_answered_total', help: 'Poll answers by reason: messages, timeout, gap, drain.', labelNames: ['reason'], registers }, REASONS.map((reason) => [{ reason }, answeredBy[reason]]));
    this.published = new CountedCounter();
    countedCounter({ name: 'holdfast_messages_published_total', help: 'Messages published through this process (HTTP publish, batch items, /push).', registers }, [[{}, this.published]]);
    const deliveryBy = {} as Record<TransportKind, DeliveryMetrics>;
    for (const t of TRANSPORTS) {
      deliveryBy[t] = { delivered: new CountedCounter(), latency: new CountedHistogram(LATENCY_BUCKETS), catchup: new CountedHistogram(CATCHUP_BUCKETS) };
    }
    this.deliveryBy = deliveryBy;
    // Every series exists from the first scrape (zeros), as an unlabelled metric's would.
    this.deliveredTotal = countedCounter({ name: 'holdfast_messages_delivered_total', help: 'Messages written to subscribers, by transport: poll (answers), sse (events), ws (frames).', labelNames: ['transport'], registers }, TRANSPORTS.map((t) => [{ transport: t }, deliveryBy[t].delivered]));
    this.deliveryLatency = countedHistogram({
      name: 'holdfast_delivery_latency_seconds',
      help: 'Live delivery: from publish to the answer (SSE event, WebSocket frame) carrying the message being written, for messages that reached a waiting subscriber, by transport.',
      buckets: [...LATENCY_BUCKETS],
      labelNames: ['transport'],
      registers,
    }, TRANSPORTS.map((t) => [{ transport: t }, deliveryBy[t].latency]));
    this.catchupAge = countedHistogram({
      name: 'holdfast_catchup_age_seconds',
      help: 'Catch-up reads: age of a message delivered from history (the subscriber asked for it after it was published), by transport.',
      buckets: [...CATCHUP_BUCKETS],
      labelNames: ['transport'],
      registers,
    }, TRANSPORTS.map((t) => [{ transport: t }, deliveryBy[t].catchup]));
    this.delivered = deliveryBy.poll.delivered;
    new Gauge({
      name: 'holdfast_streams',
      help: 'Open streams: SSE responses and WebSocket connections, by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        for (const t of ['sse', 'ws'] as const) this.set({ transport: t }, live.openStreams?.(t) ?? 0);
      },
    });
    this.pollLag = new CountedHistogram(LAG_BUCKETS);
    countedHistogram({
      name: 'holdfast_poll_lag_messages',
      help: 'How many messages behind the head a new poll\'s cursor was.',
      buckets: [...LAG_BUCKETS],
      registers,
    }, [[{}, this.pollLag]]);
    this.slowClosed = new Counter({ name: 'holdfast_slow_responses_closed_total', help: 'Responses closed because the client read too slowly.', registers });
    this.rejected = new Counter({ name: 'holdfast_rejected_requests_total', help: 'Requests answered with an error, by error code.', labelNames: ['reason'], registers });
    this.brokerReconnects = new Counter({ name: 'holdfast_broker_reconnects_total', help: 'Broker connections re-established.', registers });
    new Gauge({ name: 'holdfast_decode_queue_depth', help: 'Envelopes waiting for the decode pool.', registers, collect() { this.set(live.decodeQueueDepth()); } });
    const loop = this.loop;
    new Gauge({
      name: 'holdfast_event_loop_lag_seconds',
      help: 'Event loop delay beyond the 10 ms sampling interval, p99 over the last scrape interval.',
      aggregator: 'max',
      registers,
      collect() {
        this.set(loop.current.lagP99);
      },
    });
    if (isWorker()) workerBridge.attach(this.registry);
  }

  close(): void {
    this.loop.close();
    workerBridge.detach(this.registry);
  }
}

// ---- metrics counted in place ----
//
// prom-client hashes the label values on every inc() and observe(), and a histogram looks its
// bucket up by the bound's number-as-string key: measured with callgrind, ~3,000 instructions
// per observe, paid per message per answer (a fan-out to 19,000 polls paid it 19,000 times).
// Counted metrics add to plain numbers on the hot path; prom-client's metric gets the sums when
// it is scraped (its collect hook), so exposition, aggregation across --procs workers and
// reset() stay prom-client's.

/** A counter (or one label combination of it) counted in a plain number. */
export class CountedCounter {
  /** Counted since the last scrape. */
  pending = 0;

  inc(n = 1): void {
    this.pending += n;
  }
}

/** A histogram (or one label combination of it) counted in a typed array. */
export class CountedHistogram {
  /** Observations per bucket since the last scrape (not cumulative; +Inf is count - sum of these). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  /** `n` observations of `value` (one message answered to n subscribers at once). */
  observe(value: number, n = 1): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    if (i < b.length) this.counts[i]! += n;
    this.sum += value * n;
    this.count += n;
  }
}

type Labels = Record<string, string>;

/** A prom-client Counter that takes the sums of `children` (label values → child) when scraped. */
function countedCounter<T extends string>(config: CounterConfiguration<T>, children: [Labels, CountedCounter][]): Counter<T> {
  const counter: Counter<T> = new Counter<T>({
    ...config,
    collect() {
      for (const [labels, child] of children) {
        counter.inc(labels as LabelValues<T>, child.pending);
        child.pending = 0;
      }
    },
  });
  for (const [labels] of children) counter.inc(labels as LabelValues<T>, 0);
  return counter;
}

/** The series prom-client's Histogram keeps per label combination (15.x). */
interface HistogramSeries {
  labels: Labels;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * A prom-client Histogram that takes the counts of `children` when scraped. prom-client has no
 * way to add n observations at once, so the counts go into its series directly; the shape of a
 * series is checked here, at start-up, so a prom-client that changed it fails loudly.
 */
function countedHistogram<T extends string>(config: HistogramConfiguration<T>, children: [Labels, CountedHistogram][]): Histogram<T> {
  const find = (labels: Labels): HistogramSeries | undefined => {
    const map = (histogram as unknown as { hashMap?: Record<string, HistogramSeries> }).hashMap ?? {};
    const keys = Object.keys(labels);
    return Object.values(map).find((s) => keys.length === Object.keys(s.labels ?? {}).length && keys.every((k) => s.labels[k] === labels[k]));
  };
  const series = (labels: Labels): HistogramSeries => {
    let found = find(labels);
    if (!found) {
      histogram.zero(labels as LabelValues<T>); // after a reset()
      found = find(labels);
    }
    if (!found) throw new Error(`prom-client's Histogram keeps no series for ${JSON.stringify(labels)}: ${config.name} cannot be counted in place`);
    return found;
  };
  const histogram: Histogram<T> = new Histogram<T>({
    ...config,
    collect() {
      for (const [labels, child] of children) {
        if (child.count === 0) continue;
        const s = series(labels);
        for (let i = 0; i < child.bounds.length; i++) s.bucketValues[child.bounds[i]!]! += child.counts[i]!;
        s.sum += child.sum;
        s.count += child.count;
        child.counts.fill(0);
        child.sum = child.count = 0;
      }
    },
  });
  for (const [labels, child] of children) {
    histogram.zero(labels as LabelValues<T>);
    const s = series(labels);
    if (!s.bucketValues || typeof s.sum !== 'number' || typeof s.count !== 'number' || child.bounds.some((b) => typeof s.bucketValues[b] !== 'number')) {
      throw new Error(`prom-client's Histogram series changed shape: ${config.name} cannot be counted in place`);
    }
  }
  return histogram;
}

// ---- process and runtime metrics ----

/** monitorEventLoopDelay samples every this many ms; each sample includes the interval itself. */
const LOOP_RESOLUTION_MS = 10;

interface LoopSnapshot {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  p50: number;
  p90: number;
  p99: number;
  /** p99 minus the sampling interval: the delay the loop added. */
  lagP99: number;
}

/**
 * One event-loop delay histogram, read once per scrape. A scrape that finds no new sample
 * (the first one right after start, or two scrapes within one sampling interval) keeps the
 * last values: an empty histogram reads min 9223372036.85 s and mean NaN, which is what
 * prom-client's own collector reports in that case.
 */
class LoopDelay {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  current: LoopSnapshot = { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0, lagP99: 0 };

  constructor() {
    this.histogram.enable();
  }

  /** Takes a new snapshot when the histogram has samples since the last one. */
  sample(): LoopSnapshot {
    const h = this.histogram;
    if (h.count > 0) {
      const p99 = h.percentile(99) / 1e9;
      this.current = {
        min: h.min / 1e9,
        max: h.max / 1e9,
        mean: h.mean / 1e9,
        stddev: h.stddev / 1e9,
        p50: h.percentile(50) / 1e9,
        p90: h.percentile(90) / 1e9,
        p99,
        lagP99: Math.max(0, p99 - LOOP_RESOLUTION_MS / 1000),
      };
      h.reset();
    }
    return this.current;
  }

  close(): void {
    this.histogram.disable();
  }
}

/**
 * prom-client's default metrics under their standard names, except the event-loop delay
 * gauges, which come from LoopDelay (same names, help and cluster aggregators as prom-client,
 * without the values of an empty histogram).
 */
function registerDefaultMetrics(registry: Registry, loop: LoopDelay): void {
  const defaults = new Registry();
  // prom-client's own event-loop monitor is not used; sample it rarely.
  collectDefaultMetrics({ register: defaults, eventLoopMonitoringPrecision: 1000 });
  for (const metric of defaults.getMetricsAsArray() as unknown as (Metric & { name: string })[]) {
    if (!metric.name.startsWith('nodejs_eventloop_lag')) registry.registerMetric(metric);
  }
  const registers = [registry];
  // The first gauge's collect takes the snapshot and sets the others (prom-client's pattern);
  // a registry collects its metrics in registration order.
  let lagSetAt: bigint | undefined;
  const lag = new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds.',
    aggregator: 'average',
    registers,
    collect() {
      // Measured by a setImmediate round trip; reported at the next scrape, as prom-client does.
      const start = process.hrtime.bigint();
      lagSetAt = start;
      setImmediate(() => {
        if (lagSetAt === start) lag.set(Number(process.hrtime.bigint() - start) / 1e9);
      });
      const s = loop.sample();
      for (const [g, read] of loopGauges) g.set(read(s));
    },
  });
  const loopGauges: [Gauge, (s: LoopSnapshot) => number][] = [
    [new Gauge({ name: 'nodejs_eventloop_lag_min_seconds', help: 'The minimum recorded event loop delay.', aggregator: 'min', registers }), (s) => s.min],
    [new Gauge({ name: 'nodejs_eventloop_lag_max_seconds', help: 'The maximum recorded event loop delay.', aggregator: 'max', registers }), (s) => s.max],
    [new Gauge({ name: 'nodejs_eventloop_lag_mean_seconds', help: 'The mean of the recorded event loop delays.', aggregator: 'average', registers }), (s) => s.mean],
    [new Gauge({ name: 'nodejs_eventloop_lag_stddev_seconds', help: 'The standard deviation of the recorded event loop delays.', aggregator: 'average', registers }), (s) => s.stddev],
    [new Gauge({ name: 'nodejs_eventloop_lag_p50_seconds', help: 'The 50th percentile of the recorded event loop delays.', aggregator: 'average', registers }), (s) => s.p50],
    [new Gauge({ name: 'nodejs_eventloop_lag_p90_seconds', help: 'The 90th percentile of the recorded event loop delays.', aggregator: 'average', registers }), (s) => s.p90],
    [new Gauge({ name: 'nodejs_eventloop_lag_p99_seconds', help: 'The 99th percentile of the recorded event loop delays.', aggregator: 'average', registers }), (s) => s.p99],
  ];
}

// ---- one scrape for every worker of `holdfast --procs N` ----

/** Messages on the fork IPC channel between a worker and the supervisor. */
export type ScrapeMessage =
  | { holdfast: 'scrape'; id: number } // worker → supervisor: a scrape arrived, aggregate
  | { holdfast: 'collect'; id: number } // supervisor → every worker: your metrics, please
  | { holdfast: 'collected'; id: number; metrics: MetricObjectWithValues<MetricValue<string>>[] } // worker → supervisor
  | { holdfast: 'scraped'; id: number; text?: string; error?: string }; // supervisor → the asking worker

export function isScrapeMessage(m: unknown): m is ScrapeMessage {
  return typeof m === 'object' && m !== null && typeof (m as { holdfast?: unknown }).holdfast === 'string';
}

/** Set by the supervisor in each worker's environment (the worker's slot number). */
export const WORKER_ENV = 'HOLDFAST_WORKER';

function isWorker(): boolean {
  return process.env[WORKER_ENV] !== undefined && typeof process.send === 'function';
}

/** How long a worker waits for the supervisor's aggregate before the scrape fails. */
const SCRAPE_TIMEOUT_MS = 5000;

/**
 * A registry whose text output covers every worker when this process is one of several
 * (`--procs N`), and only itself otherwise. Metrics register on it as usual.
 */
class WorkerGroupRegistry extends Registry {
  override async metrics(): Promise<string> {
    if (!workerBridge.serves(this)) return super.metrics();
    return workerBridge.scrape();
  }
}

/** The worker's end of the IPC protocol: one per process. */
const workerBridge = new (class WorkerBridge {
  private registry: Registry | undefined;
  private listening = false;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve(text: string): void; reject(err: Error): void; timer: NodeJS.Timeout }>();

  serves(registry: Registry): boolean {
    return this.registry === registry && isWorker();
  }

  attach(registry: Registry): void {
    this.registry = registry;
    if (this.listening) return;
    this.listening = true;
    process.on('message', (m: unknown) => {
      if (!isScrapeMessage(m)) return;
      if (m.holdfast === 'collect') void this.collect(m.id);
      else if (m.holdfast === 'scraped') this.settle(m.id, m.text, m.error);
    });
  }

  detach(registry: Registry): void {
    if (this.registry === registry) this.registry = undefined;
  }

  scrape(): Promise<string> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settle(id, undefined, `the supervisor did not answer within ${SCRAPE_TIMEOUT_MS} ms`), SCRAPE_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      send({ holdfast: 'scrape', id });
    });
  }

  private settle(id: number, text: string | undefined, error: string | undefined): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if (text !== undefined) w.resolve(text);
    else w.reject(new Error(`metrics of the worker group: ${error ?? 'no answer'}`));
  }

  private async collect(id: number): Promise<void> {
    const metrics = this.registry ? await this.registry.getMetricsAsJSON() : [];
    send({ holdfast: 'collected', id, metrics });
  }
})();

function send(message: ScrapeMessage): void {
  // The channel may be closing (supervisor gone): the scrape then times out.
  if (process.connected) process.send!(message);
}
