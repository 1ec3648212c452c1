/**
 * Configuration: every tunable is an environment variable, parsed and validated here, once,
 * into one frozen object. The table below is the single source for parsing, defaults and the
 * `--help` text, so the three cannot drift apart.
 */

export class ConfigError extends Error {
  readonly code = 'HF_CONFIG';
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** @default 3000 */ readonly port: number;
  /** @default '0.0.0.0' */ readonly host: string;
  /** Redis URL; unset = embedded in-memory broker. */ readonly redisUrl: string | undefined;
  /** Redis Cluster seed nodes (host:port). */ readonly redisClusterNodes: readonly string[];
  /** Redis Sentinel addresses (host:port): Sentinel mode, with `redisSentinelName`. */
  readonly redisSentinels: readonly string[];
  /** The primary's name as the sentinels know it (`sentinel monitor <name> …`). */
  readonly redisSentinelName: string | undefined;
  /** Password of the sentinels themselves (their `requirepass`), when they have one. */
  readonly redisSentinelPassword: string | undefined;
  /** TLS to the sentinels. */
  readonly redisSentinelTls: boolean;
  /** ACL user of the Redis data nodes in Sentinel and Cluster mode (REDIS_URL carries its own). */
  readonly redisUsername: string | undefined;
  /** Password of the Redis data nodes in Sentinel and Cluster mode (REDIS_URL carries its own). */
  readonly redisPassword: string | undefined;
  /** TLS to the Redis data nodes in Sentinel and Cluster mode (REDIS_URL says rediss://). */
  readonly redisTls: boolean;
  /** A Redis command not answered by then fails (503); a write may still have been stored. */
  readonly redisCommandTimeoutMs: number;
  /** A publish answers only once this many replicas have it (WAIT); 0 = as soon as the primary has it. */
  readonly redisWaitReplicas: number;
  /** A publish answers only once the primary's AOF has it on disk (WAITAOF, Redis 7.2+). */
  readonly redisWaitAof: boolean;
  /** How long a process remembers its acknowledged publishes, to find them lost after a failover. */
  readonly redisLossWindowS: number;
  /** Key prefix for every Redis key, so several deployments can share one Redis. */
  readonly redisPrefix: string;
  readonly redisSubscribers: number;
  readonly unsubscribeLingerMs: number;
  /** Decode threads; 0 decodes inline on the event loop. */
  readonly decodeThreads: number;
  readonly pollTimeoutMs: number;
  readonly historySize: number;
  readonly historyTtlS: number;
  readonly channelIdleS: number;
  readonly maxChannelsPerPoll: number;
  readonly maxBodyBytes: number;
  readonly maxParked: number;
  readonly maxBackpressure: number;
  readonly writeTimeoutMs: number;
  readonly publishKey: string | undefined;
  readonly jwtSecret: string | undefined;
  /** PEM file with the public key (RS*, PS*, ES*, EdDSA) that verifies subscriber tokens. */
  readonly jwtPublicKeyFile: string | undefined;
  /** JWKS document URL; keys cached, refetched when a token names an unknown `kid`. */
  readonly jwtJwksUrl: string | undefined;
  /** Required `aud` of subscriber tokens, when set. */
  readonly jwtAudience: string | undefined;
  /** Required `iss` of subscriber tokens, when set. */
  readonly jwtIssuer: string | undefined;
  readonly jwtLeewayS: number;
  readonly publicPrefixes: readonly string[];
  readonly conflatePrefixes: readonly string[];
  /** `['*']` allows any origin. */
  readonly corsOrigins: readonly string[];
  readonly idempotencyTtlS: number;
  readonly idempotencyMaxKeys: number;
  readonly drainMs: number;
  /** SSE comment heartbeat, so proxies keep an idle stream open. */
  readonly sseHeartbeatMs: number;
  /** A stream (SSE or WebSocket) is ended after this long, so load rebalances after a scale-out. */
  readonly streamMaxS: number;
  /** Answers at least this large are compressed when the client accepts gzip or br. */
  readonly compressMinBytes: number;
  /** Answers at least this large are compressed on the worker pool, off the event loop. */
  readonly compressPoolBytes: number;
  /** Worker threads for compression; 0 compresses on the event loop. */
  readonly compressThreads: number;
  readonly maxBatch: number;
  readonly maxPublishInflight: number;
  readonly seedOpen: boolean;
  readonly procs: number | 'auto';
  readonly demo: boolean;
  readonly logLevel: LogLevel;
}

type Env = Record<string, string | undefined>;

interface Var<K extends keyof Config> {
  readonly name: string;
  readonly key: K;
  readonly def: string;
  readonly unit: string;
  readonly doc: string;
  readonly parse: (raw: string, name: string) => Config[K];
}

function fail(name: string, raw: string, allowed: string): never {
  throw new ConfigError(`${name}=${JSON.stringify(raw)} is not valid: ${allowed}`);
}

function int(min: number, max: number) {
  return (raw: string, name: string): number => {
    const n = /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      fail(name, raw, `an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function bool(raw: string, name: string): boolean {
  const v = raw.trim().toLowerCase();
  if (v === '1' || v === 'true' || v === 'yes') return true;
  if (v === '0' || v === 'false' || v === 'no' || v === '') return false;
  return fail(name, raw, 'one of 1, 0, true, false, yes, no');
}

function optionalString(raw: string): string | undefined {
  return raw === '' ? undefined : raw;
}

function list(raw: string): string[] {
  return raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

function hostPortList(raw: string, name: string): string[] {
  const nodes = list(raw);
  for (const n of nodes) if (!/^[^:\s]+:\d{1,5}$/.test(n)) fail(name, raw, 'a comma-separated list of host:port');
  return nodes;
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/* The table. Order is the order of `--help`. */
const VARS = [
  v({ name: 'PORT', key: 'port', def: '3000', unit: 'port', doc: 'TCP port to listen on (0 = any free port).', parse: int(0, 65535) }),
  v({ name: 'HOST', key: 'host', def: '0.0.0.0', unit: 'address', doc: 'Address to listen on.', parse: (raw, name) => raw.trim() || fail(name, raw, 'an IP address or host name') }),
  v({ name: 'REDIS_URL', key: 'redisUrl', def: '', unit: 'url', doc: 'redis:// or rediss:// URL. Unset: the embedded in-memory broker (one process).', parse: (raw, name) => {
    if (raw === '') return undefined;
    if (!/^rediss?:\/\/./.test(raw)) fail(name, raw, 'a redis:// or rediss:// URL');
    return raw;
  } }),
  v({ name: 'REDIS_CLUSTER_NODES', key: 'redisClusterNodes', def: '', unit: 'list', doc: 'Redis Cluster seed nodes, comma-separated host:port.', parse: hostPortList }),
  v({ name: 'REDIS_SENTINELS', key: 'redisSentinels', def: '', unit: 'list', doc: 'Redis Sentinel addresses, comma-separated host:port (Sentinel mode; needs REDIS_SENTINEL_NAME).', parse: hostPortList }),
  v({ name: 'REDIS_SENTINEL_NAME', key: 'redisSentinelName', def: '', unit: 'string', doc: 'Name of the primary the sentinels monitor (their "sentinel monitor <name>").', parse: (raw, name) => {
    if (raw === '') return undefined;
    return /^[A-Za-z0-9._:-]{1,128}$/.test(raw) ? raw : fail(name, raw, 'up to 128 characters of A-Z a-z 0-9 . _ : -');
  } }),
  v({ name: 'REDIS_SENTINEL_PASSWORD', key: 'redisSentinelPassword', def: '', unit: 'secret', doc: 'Password of the sentinels themselves, when they require one.', parse: optionalString }),
  v({ name: 'REDIS_SENTINEL_TLS', key: 'redisSentinelTls', def: '0', unit: 'bool', doc: 'Connect to the sentinels over TLS.', parse: bool }),
  v({ name: 'REDIS_USERNAME', key: 'redisUsername', def: '', unit: 'string', doc: 'ACL user for the Redis nodes in Sentinel and Cluster mode (with REDIS_URL, put it in the URL).', parse: optionalString }),
  v({ name: 'REDIS_PASSWORD', key: 'redisPassword', def: '', unit: 'secret', doc: 'Password for the Redis nodes in Sentinel and Cluster mode (with REDIS_URL, put it in the URL).', parse: optionalString }),
  v({ name: 'REDIS_TLS', key: 'redisTls', def: '0', unit: 'bool', doc: 'TLS to the Redis nodes in Sentinel and Cluster mode (with REDIS_URL, use rediss://).', parse: bool }),
  v({ name: 'LP_REDIS_COMMAND_TIMEOUT_MS', key: 'redisCommandTimeoutMs', def: '3000', unit: 'ms', doc: 'A Redis command not answered by then fails with 503 (a publish may still have been stored: retry with the same Idempotency-Key); Redis counts as down.', parse: int(10, 600_000) }),
  v({ name: 'LP_REDIS_WAIT_REPLICAS', key: 'redisWaitReplicas', def: '0', unit: 'replicas', doc: 'A publish answers 200 only once this many replicas have it (Redis WAIT); 0 = once the primary has it.', parse: int(0, 64) }),
  v({ name: 'LP_REDIS_WAIT_AOF', key: 'redisWaitAof', def: '0', unit: 'bool', doc: 'A publish answers 200 only once the primary\'s AOF (and the replicas\' AOF, with LP_REDIS_WAIT_REPLICAS) has it on disk (WAITAOF, Redis 7.2+).', parse: bool }),
  v({ name: 'LP_REDIS_LOSS_WINDOW_S', key: 'redisLossWindowS', def: '30', unit: 's', doc: 'How long a process remembers the publishes it acknowledged, to find any that Redis lost after a restart or failover (their channels then report a gap); 0 = off.', parse: int(0, 3600) }),
  v({ name: 'LP_REDIS_PREFIX', key: 'redisPrefix', def: 'hf:', unit: 'string', doc: 'Prefix of every Redis key and notification channel.', parse: (raw, name) => /^[A-Za-z0-9_:.-]{0,64}$/.test(raw) ? raw : fail(name, raw, 'up to 64 characters of A-Z a-z 0-9 _ : . -') }),
  v({ name: 'LP_REDIS_SUBSCRIBERS', key: 'redisSubscribers', def: '2', unit: 'connections', doc: 'Redis subscriber connections per process; channels are spread over them by hash.', parse: int(1, 64) }),
  v({ name: 'LP_UNSUBSCRIBE_LINGER_MS', key: 'unsubscribeLingerMs', def: '5000', unit: 'ms', doc: 'How long a process stays subscribed to a channel after its last poll left.', parse: int(0, 3_600_000) }),
  v({ name: 'LP_DECODE_THREADS', key: 'decodeThreads', def: '0', unit: 'threads', doc: 'Worker threads that decode Redis envelopes; 0 decodes inline (faster for typical loads; see README).', parse: int(0, 64) }),
  v({ name: 'LP_POLL_TIMEOUT_MS', key: 'pollTimeoutMs', def: '30000', unit: 'ms', doc: 'Default poll hold when the request gives no timeout.', parse: int(1000, 120_000) }),
  v({ name: 'LP_HISTORY_SIZE', key: 'historySize', def: '1000', unit: 'messages', doc: 'Messages retained per channel (and per seed client queue).', parse: int(1, 1_000_000) }),
  v({ name: 'LP_HISTORY_TTL_S', key: 'historyTtlS', def: '3600', unit: 's', doc: 'How long a message is retained.', parse: int(1, 31_536_000) }),
  v({ name: 'LP_CHANNEL_IDLE_S', key: 'channelIdleS', def: '86400', unit: 's', doc: 'How long a channel\'s seq and epoch outlive its last publish before an idle channel is reclaimed.', parse: int(1, 31_536_000) }),
  v({ name: 'LP_MAX_CHANNELS_PER_POLL', key: 'maxChannelsPerPoll', def: '32', unit: 'channels', doc: 'Channels one poll may follow.', parse: int(1, 256) }),
  v({ name: 'LP_MAX_BODY_BYTES', key: 'maxBodyBytes', def: '65536', unit: 'bytes', doc: 'Largest request body (413 above).', parse: int(1, 64 * 1024 * 1024) }),
  v({ name: 'LP_MAX_PARKED', key: 'maxParked', def: '100000', unit: 'polls', doc: 'Parked polls per process (503 above).', parse: int(1, 100_000_000) }),
  v({ name: 'LP_MAX_BACKPRESSURE', key: 'maxBackpressure', def: '262144', unit: 'bytes', doc: 'Unsent bytes after which a slow response is closed.', parse: int(1024, 1024 * 1024 * 1024) }),
  v({ name: 'LP_WRITE_TIMEOUT_MS', key: 'writeTimeoutMs', def: '10000', unit: 'ms', doc: 'A poll answer not fully written by then is closed (slow reader).', parse: int(100, 600_000) }),
  v({ name: 'LP_PUBLISH_KEY', key: 'publishKey', def: '', unit: 'secret', doc: 'Bearer key for publish and admin. Unset: loopback clients only, no proxies.', parse: optionalString }),
  v({ name: 'LP_JWT_SECRET', key: 'jwtSecret', def: '', unit: 'secret', doc: 'HS256/384/512 secret for subscriber tokens. With no JWT key set, polls need no token.', parse: optionalString }),
  v({ name: 'LP_JWT_PUBLIC_KEY', key: 'jwtPublicKeyFile', def: '', unit: 'file', doc: 'PEM public key file for subscriber tokens (RS*, PS*, ES*, EdDSA).', parse: optionalString }),
  v({ name: 'LP_JWT_JWKS_URL', key: 'jwtJwksUrl', def: '', unit: 'url', doc: 'JWKS URL for subscriber tokens; refetched when a token names an unknown kid.', parse: (raw, name) => {
    if (raw === '') return undefined;
    if (!/^https?:\/\/./.test(raw)) fail(name, raw, 'an http:// or https:// URL');
    return raw;
  } }),
  v({ name: 'LP_JWT_AUDIENCE', key: 'jwtAudience', def: '', unit: 'string', doc: 'When set, tokens must carry this aud.', parse: optionalString }),
  v({ name: 'LP_JWT_ISSUER', key: 'jwtIssuer', def: '', unit: 'string', doc: 'When set, tokens must carry this iss.', parse: optionalString }),
  v({ name: 'LP_JWT_LEEWAY_S', key: 'jwtLeewayS', def: '30', unit: 's', doc: 'Clock leeway when checking a token\'s exp and nbf.', parse: int(0, 3600) }),
  v({ name: 'LP_PUBLIC_PREFIXES', key: 'publicPrefixes', def: '', unit: 'list', doc: 'Channel prefixes that need no token (comma-separated).', parse: list }),
  v({ name: 'LP_CONFLATE_PREFIXES', key: 'conflatePrefixes', def: '', unit: 'list', doc: 'Channel prefixes that keep only their latest message (comma-separated).', parse: list }),
  v({ name: 'LP_CORS_ORIGINS', key: 'corsOrigins', def: '', unit: 'list', doc: 'Allowed browser origins (comma-separated, or *). Default none.', parse: (raw, name) => {
    const origins = list(raw);
    for (const o of origins) if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) fail(name, raw, '* or a comma-separated list of origins like https://app.example.com');
    return origins;
  } }),
  v({ name: 'LP_IDEMPOTENCY_TTL_S', key: 'idempotencyTtlS', def: '600', unit: 's', doc: 'How long an Idempotency-Key is remembered.', parse: int(1, 604_800) }),
  v({ name: 'LP_IDEMPOTENCY_MAX_KEYS', key: 'idempotencyMaxKeys', def: '100000', unit: 'keys', doc: 'Idempotency keys remembered per channel (oldest forgotten first).', parse: int(1, 10_000_000) }),
  v({ name: 'LP_DRAIN_MS', key: 'drainMs', def: '5000', unit: 'ms', doc: 'Deadline for a graceful drain on SIGTERM/SIGINT.', parse: int(0, 600_000) }),
  v({ name: 'LP_SSE_HEARTBEAT_MS', key: 'sseHeartbeatMs', def: '15000', unit: 'ms', doc: 'Comment line sent on an idle SSE stream so proxies keep it open.', parse: int(1000, 600_000) }),
  v({ name: 'LP_STREAM_MAX_S', key: 'streamMaxS', def: '3600', unit: 's', doc: 'SSE and WebSocket streams end after this long (the client resumes from its cursor), so load rebalances.', parse: int(1, 604_800) }),
  v({ name: 'LP_COMPRESS_MIN_BYTES', key: 'compressMinBytes', def: '4096', unit: 'bytes', doc: 'Poll answers at least this large are compressed (br or gzip) when the client accepts it and several polls get the same answer (compressed once, from its second copy); 0 turns compression off.', parse: int(0, 1024 * 1024 * 1024) }),
  v({ name: 'LP_COMPRESS_POOL_BYTES', key: 'compressPoolBytes', def: '262144', unit: 'bytes', doc: 'Answers at least this large are compressed on the worker pool instead of the event loop, shared or not (above the default answer size: see the README).', parse: int(0, 1024 * 1024 * 1024) }),
  v({ name: 'LP_COMPRESS_THREADS', key: 'compressThreads', def: '1', unit: 'threads', doc: 'Worker threads that compress large answers; 0 compresses on the event loop.', parse: int(0, 64) }),
  v({ name: 'LP_MAX_BATCH', key: 'maxBatch', def: '1000', unit: 'messages', doc: 'Items in one batch publish.', parse: int(1, 100_000) }),
  v({ name: 'LP_MAX_PUBLISH_INFLIGHT', key: 'maxPublishInflight', def: '10000', unit: 'publishes', doc: 'Publishes waiting on the broker per process (429 above).', parse: int(1, 10_000_000) }),
  v({ name: 'LP_SEED_OPEN', key: 'seedOpen', def: '0', unit: 'bool', doc: 'Let anyone /push and /disconnect any clientId, as the classic tutorial does.', parse: bool }),
  v({ name: 'LP_PROCS', key: 'procs', def: '1', unit: 'count', doc: 'Processes to run on the same port (or auto = one per core); needs Redis above 1.', parse: (raw, name) => raw.trim() === 'auto' ? 'auto' : int(1, 1024)(raw, name) }),
  v({ name: 'LP_DEMO', key: 'demo', def: '0', unit: 'bool', doc: 'Serve the demo page at /demo/.', parse: bool }),
  v({ name: 'LOG_LEVEL', key: 'logLevel', def: 'info', unit: 'level', doc: `One of ${LOG_LEVELS.join(', ')}.`, parse: (raw, name) => (LOG_LEVELS as readonly string[]).includes(raw.trim()) ? raw.trim() as LogLevel : fail(name, raw, `one of ${LOG_LEVELS.join(', ')}`) }),
] as const;

function v<K extends keyof Config>(spec: Var<K>): Var<K> {
  return spec;
}

/** Parses `env` (default `process.env`); throws ConfigError naming the variable on bad input. */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  for (const spec of VARS) {
    const raw = env[spec.name];
    out[spec.key] = spec.parse(raw === undefined ? spec.def : raw, spec.name);
  }
  const config = { ...out, ...overrides } as unknown as Config;
  // The demo's ticker is a conflated channel.
  if (config.demo && !config.conflatePrefixes.includes('demo:ticker')) {
    (config as { conflatePrefixes: readonly string[] }).conflatePrefixes = [...config.conflatePrefixes, 'demo:ticker'];
  }
  checkRedis(config);
  return Object.freeze(config);
}

/** Which store the config selects. */
export type RedisMode = 'memory' | 'redis' | 'sentinel' | 'cluster';

export function redisMode(config: Pick<Config, 'redisUrl' | 'redisClusterNodes' | 'redisSentinels'>): RedisMode {
  if (config.redisUrl) return 'redis';
  if (config.redisSentinels.length > 0) return 'sentinel';
  if (config.redisClusterNodes.length > 0) return 'cluster';
  return 'memory';
}

/** The Redis variables that only make sense together (each message names them). */
function checkRedis(config: Config): void {
  const chosen = [
    config.redisUrl && 'REDIS_URL',
    config.redisClusterNodes.length > 0 && 'REDIS_CLUSTER_NODES',
    config.redisSentinels.length > 0 && 'REDIS_SENTINELS',
  ].filter(Boolean);
  if (chosen.length > 1) throw new ConfigError(`${chosen.join(' and ')} are ${chosen.length === 2 ? 'both' : 'all'} set: choose one`);
  const mode = redisMode(config);
  if (mode === 'sentinel' && !config.redisSentinelName) {
    throw new ConfigError('REDIS_SENTINELS is set but REDIS_SENTINEL_NAME is not: give the name the sentinels monitor the primary under ("sentinel monitor <name> …")');
  }
  if (mode !== 'sentinel') {
    for (const [set, name] of [[config.redisSentinelName, 'REDIS_SENTINEL_NAME'], [config.redisSentinelPassword, 'REDIS_SENTINEL_PASSWORD'], [config.redisSentinelTls, 'REDIS_SENTINEL_TLS']] as const) {
      if (set) throw new ConfigError(`${name} is set but REDIS_SENTINELS is not: it only applies in Sentinel mode`);
    }
  }
  if (mode === 'redis') {
    for (const [set, name] of [[config.redisUsername, 'REDIS_USERNAME'], [config.redisPassword, 'REDIS_PASSWORD'], [config.redisTls, 'REDIS_TLS']] as const) {
      if (set) throw new ConfigError(`${name} is set along with REDIS_URL: put credentials and TLS in the URL (rediss://user:password@host:port)`);
    }
  }
  if (mode === 'memory') {
    for (const [set, name] of [[config.redisWaitReplicas > 0, 'LP_REDIS_WAIT_REPLICAS'], [config.redisWaitAof, 'LP_REDIS_WAIT_AOF'], [config.redisUsername, 'REDIS_USERNAME'], [config.redisPassword, 'REDIS_PASSWORD'], [config.redisTls, 'REDIS_TLS']] as const) {
      if (set) throw new ConfigError(`${name} is set but no Redis is (set REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES): it has no effect on the in-memory broker`);
    }
  }
}

/** The variable table as `--help` prints it. */
export function configHelp(): string {
  const rows = VARS.map((s) => {
    const def = s.def === '' ? '(unset)' : s.def;
    return `  ${s.name.padEnd(28)} ${def.padEnd(10)} ${s.unit.padEnd(11)} ${s.doc}`;
  });
  return [`  ${'VARIABLE'.padEnd(28)} ${'DEFAULT'.padEnd(10)} ${'UNIT'.padEnd(11)} MEANING`, ...rows].join('\n');
}

/** Names of all variables, for tests and docs. */
export const CONFIG_VARIABLES: readonly string[] = VARS.map((s) => s.name);
