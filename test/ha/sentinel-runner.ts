/**
 * A Holdfast process on the RedisBroker with the configuration from its environment: for the
 * tests that need a process of their own (NODE_EXTRA_CA_CERTS is read only at start-up).
 * Logs JSON lines on stdout ("holdfast listening" with its port, then "holdfast ready");
 * drains and exits 0 on SIGTERM.
 */

import { pino } from 'pino';
import { RedisBroker } from '../../src/broker/redis/broker.js';
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';

const config = loadConfig();
const logger = pino({ level: config.logLevel });
const server = await startServer(config, { broker: new RedisBroker(config, logger), logger });
process.once('SIGTERM', () => {
  void server.drain().then(() => process.exit(0));
});
