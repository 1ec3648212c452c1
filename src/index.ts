/** Holdfast's programmatic API: start a server in-process, or build on its pieces. */

export { startServer, createBroker, type HoldfastServer, type ServerOptions } from './server.js';
export { loadConfig, configHelp, ConfigError, CONFIG_VARIABLES, type Config } from './config.js';
export type { Broker, BrokerEvents, ChannelHead, ChannelInfo, ChannelStore, PublishItem, PublishResult, QueueStore, ReadFrom, ReadResult } from './broker/broker.js';
export { MemoryBroker } from './broker/memory.js';
export { HoldfastError, type ErrorCode } from './errors.js';
export { signToken } from './auth/jwt.js';
