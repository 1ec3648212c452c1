/**
 * Prometheus metrics, one registry per server (so several servers can share a process in
 * tests). Gauges that mirror live state are read at scrape time, not updated per request.
 */

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type AnswerReason = 'messages' | 'timeout' | 'gap' | 'drain';

export interface LiveState {
  parkedPolls(): number;
  /** Polls registered but not parked: reading history, or waiting for a subscription. */
  readingPolls(): number;
  decodeQueueDepth(): number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly pollsAnswered: Counter<'reason'>;
  /** Pre-bound children: no label hashing per answer. */
  readonly answeredBy: Record<AnswerReason, { inc(n?: number): void }>;
  readonly published: Counter;
  readonly delivered: Counter;
  readonly deliveryLatency: Histogram;
  readonly catchupAge: Histogram;
  readonly pollLag: Histogram;
  readonly slowClosed: Counter;
  readonly rejected: Counter<'reason'>;
  readonly brokerReconnects: Counter;
  private readonly loopDelay: IntervalHistogram;

  constructor(live: LiveState) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'holdfast_process_' });
    new Gauge({ name: 'holdfast_parked_polls', help: 'Polls parked in this process.', registers, collect() { this.set(live.parkedPolls()); } });
    new Gauge({ name: 'holdfast_reading_polls', help: 'Polls reading history or waiting for their subscription (not yet parked).', registers, collect() { this.set(live.readingPolls()); } });
    this.pollsAnswered = new Counter({ name: 'holdfast_polls_answered_total', help: 'Poll answers by reason.', labelNames: ['reason'], registers });
    const answered = this.pollsAnswered;
    this.answeredBy = {
      messages: answered.labels('messages'),
      timeout: answered.labels('timeout'),
      gap: answered.labels('gap'),
      drain: answered.labels('drain'),
    };
    for (const child of Object.values(this.answeredBy)) child.inc(0);
    this.published = new Counter({ name: 'holdfast_messages_published_total', help: 'Messages published through this process.', registers });
    this.delivered = new Counter({ name: 'holdfast_messages_delivered_total', help: 'Messages written to poll answers.', registers });
    this.deliveryLatency = new Histogram({
      name: 'holdfast_delivery_latency_seconds',
      help: 'Live delivery: from publish to the answer carrying the message being written, for messages delivered as they arrived.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.catchupAge = new Histogram({
      name: 'holdfast_catchup_age_seconds',
      help: 'Catch-up: the age of messages delivered from history (a poll whose cursor was behind).',
      buckets: [0.01, 0.1, 1, 10, 60, 300, 900, 3600, 86400],
      registers,
    });
    this.pollLag = new Histogram({
      name: 'holdfast_poll_lag_messages',
      help: 'How many messages behind the head a poll\'s cursor was.',
      buckets: [0, 1, 2, 5, 10, 50, 100, 500, 1000, 10000],
      registers,
    });
    this.slowClosed = new Counter({ name: 'holdfast_slow_responses_closed_total', help: 'Responses closed because the client read too slowly.', registers });
    this.rejected = new Counter({ name: 'holdfast_rejected_requests_total', help: 'Requests answered with an error, by code.', labelNames: ['reason'], registers });
    this.brokerReconnects = new Counter({ name: 'holdfast_broker_reconnects_total', help: 'Broker connections re-established.', registers });
    new Gauge({ name: 'holdfast_decode_queue_depth', help: 'Envelopes waiting for the decode pool.', registers, collect() { this.set(live.decodeQueueDepth()); } });
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    const loopDelay = this.loopDelay;
    new Gauge({
      name: 'holdfast_event_loop_lag_seconds',
      help: 'Event loop delay, p99 over the last scrape interval.',
      registers,
      collect() {
        this.set(Number.isFinite(loopDelay.percentile(99)) ? loopDelay.percentile(99) / 1e9 : 0);
        loopDelay.reset();
      },
    });
  }

  close(): void {
    this.loopDelay.disable();
  }
}
