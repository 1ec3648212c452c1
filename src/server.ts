/**
 * A Holdfast server: one uWS app, one broker, the poll and seed hubs, and the drain.
 *
 *   const server = await startServer(loadConfig());
 *   console.log(server.port);
 *   await server.drain();
 */

import { pino, type Logger } from 'pino';
import { createTokenVerifier } from './auth/jwt.js';
import { PublisherAuth } from './auth/publisher.js';
import type { Broker, BrokerEvents } from './broker/broker.js';
import { MemoryBroker } from './broker/memory.js';
import { RecentHistory } from './cache/recent-history.js';
import { type Config, redisMode } from './config.js';
import type { ServerContext } from './http/context.js';
import { registerRoutes } from './http/routes.js';
import { handle } from './http/context.js';
import { SseTransport, sseHandler } from './http/sse.js';
import { WsTransport, registerWebSocket } from './http/ws.js';
import { seedWriter } from './http/seed.js';
import { Metrics } from './metrics.js';
import { PollHub } from './poll/hub.js';
import { SeedHub } from './seed/seed-hub.js';
import uWS, { LISTEN_EXCLUSIVE_PORT, assertNativeUws, type us_listen_socket } from './uws.js';

export interface ServerOptions {
  /** A broker to use instead of the one the config selects. */
  broker?: Broker;
  logger?: Logger;
}

export interface HoldfastServer {
  readonly port: number;
  readonly broker: Broker;
  readonly context: ServerContext;
  /** Stops accepting, answers parked polls, finishes publishes, closes the broker. */
  drain(): Promise<void>;
}

/** Retry hint given to polls answered by a drain (jittered per poll). */
const DRAIN_RETRY_MS = 1000;

export async function createBroker(config: Config, log?: Logger): Promise<Broker> {
  if (redisMode(config) !== 'memory') {
    const { RedisBroker } = await import('./broker/redis/broker.js');
    return new RedisBroker(config, log);
  }
  return new MemoryBroker(config);
}

export async function startServer(config: Config, options: ServerOptions = {}): Promise<HoldfastServer> {
  assertNativeUws();
  const log = options.logger ?? pino({ level: config.logLevel, base: { pid: process.pid } });
  // Before the broker: a bad key file stops the start-up here.
  const tokens = createTokenVerifier(config, log);
  const broker = options.broker ?? (await createBroker(config, log));
  const onBug = (err: unknown) => log.error({ err }, 'internal error');

  let hub!: PollHub;
  let seed!: SeedHub;
  // On Redis, recent history of the channels this process follows is served from memory.
  const recent = broker.kind === 'memory' ? undefined : new RecentHistory(broker, config);
  const metrics = new Metrics({
    parkedPolls: () => hub.parkedCount + seed.parkedCount,
    readingPolls: () => hub.registry.size - hub.parkedCount,
    decodeQueueDepth: () => (broker as { decodeQueueDepth?: () => number }).decodeQueueDepth?.() ?? 0,
    openStreams: (transport) => (transport === 'sse' ? sse.open.size : ws.open.size),
  });
  hub = new PollHub(recent ?? broker, config, metrics, onBug);
  seed = new SeedHub(broker, metrics, seedWriter, onBug);
  hub.parkedElsewhere = () => seed.parkedCount;

  let idle: (() => void) | undefined;
  const ctx: ServerContext = {
    config,
    broker,
    channels: recent ?? broker,
    hub,
    seed,
    metrics,
    publisher: new PublisherAuth(config.publishKey),
    tokens,
    log,
    state: { draining: false, publishesInFlight: 0 },
    inflightDone() {
      if (--ctx.state.publishesInFlight === 0) idle?.();
    },
  };

  const events: BrokerEvents = {
    messages: (ch, messages) => hub.onMessages(ch, messages),
    reset: (ch) => hub.onReset(ch),
    // A subscriber connection that reconnected names the channels it restored: only their
    // waiters re-read (seed queues it restored are pumped through queueReady).
    resync: (channels) => {
      metrics.brokerReconnects.inc();
      hub.onResync(channels);
      if (!channels) seed.onResync();
    },
    queueReady: (id) => seed.onQueueReady(id),
    queueDisconnected: (id) => seed.onDisconnected(id),
  };
  broker.setEvents(recent ? recent.observe(events) : events);
  await broker.start();
  hub.start();
  seed.start();

  const app = uWS.App({});
  let stopDemo: (() => void) | undefined;
  if (config.demo) {
    const { registerDemo } = await import('./demo/serve.js');
    stopDemo = registerDemo(app, broker);
  }
  // Streams hang off the same hub as polls (same channels, cursors, rendered bodies).
  const sse = new SseTransport(config);
  const ws = new WsTransport(config);
  app.get('/v1/sse', handle(ctx, sseHandler(ctx, sse)));
  registerWebSocket(app, ctx, ws);
  registerRoutes(app, ctx);
  // One process per port on the memory broker (a second one would be a separate store);
  // shared (SO_REUSEPORT) on Redis, where several processes serve the same channels.
  const exclusive = broker.kind === 'memory';
  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    // listen(host, port, options, cb) works at run time but is not in the v20.30 types.
    const listen = app.listen as unknown as (host: string, port: number, options: number, cb: (s: us_listen_socket | false) => void) => void;
    listen.call(app, config.host, config.port, exclusive ? LISTEN_EXCLUSIVE_PORT : 0, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${config.host}:${config.port} (in use, or not an address of this machine)`)),
    );
  });
  const port = uWS.us_socket_local_port(listenSocket);

  if (ctx.publisher.open) {
    log.warn('LP_PUBLISH_KEY is not set: only loopback clients may publish (and not through a proxy)');
  }
  if (config.seedOpen) log.warn('LP_SEED_OPEN=1: anyone may /push to and /disconnect any clientId');
  if (config.demo) log.info({ url: `http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port}/demo/` }, 'demo page');
  log.info({ host: config.host, port, broker: broker.kind }, 'holdfast listening');
  // Said once the broker is connected too (supervisors and tests wait for it); on Redis that
  // can come later, and until then /readyz answers 503.
  broker.waitReady(600_000).then(
    () => log.info({ broker: broker.kind }, 'holdfast ready'),
    () => log.warn('the broker is still not ready after 10 minutes'),
  );

  let draining: Promise<void> | undefined;
  const drain = (): Promise<void> =>
    (draining ??= (async () => {
      ctx.state.draining = true;
      uWS.us_listen_socket_close(listenSocket);
      hub.drain(DRAIN_RETRY_MS);
      ws.closeAll(); // sockets with no subscription too
      seed.drain();
      if (ctx.state.publishesInFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
      stopDemo?.();
      hub.close();
      recent?.close();
      sse.stop();
      seed.close();
      await broker.close();
      metrics.close();
      (app as unknown as { close(): void }).close();
      log.info('drained');
    })());

  return { port, broker, context: ctx, drain };
}
