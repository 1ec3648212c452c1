/** Configuration: every bad value is refused with a message naming the variable, the value and what is allowed. */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CONFIG_VARIABLES, ConfigError, loadConfig, redisMode } from '../src/config.js';

const BAD: [variable: string, value: string, allowed: RegExp][] = [
  ['PORT', 'http', /an integer from 0 to 65535/],
  ['PORT', '70000', /an integer from 0 to 65535/],
  ['HOST', '', /an IP address or host name/],
  ['REDIS_URL', 'localhost:6379', /redis:\/\/ or rediss:\/\//],
  ['REDIS_CLUSTER_NODES', 'a:1,b', /host:port/],
  ['REDIS_SENTINELS', '10.0.0.1', /host:port/],
  ['REDIS_SENTINEL_NAME', 'my primary', /up to 128 characters/],
  ['REDIS_SENTINEL_TLS', 'sometimes', /one of 1, 0, true, false/],
  ['REDIS_TLS', 'on-ish', /one of 1, 0, true, false/],
  ['LP_REDIS_COMMAND_TIMEOUT_MS', '5', /from 10 to 600000/],
  ['LP_REDIS_COMMAND_TIMEOUT_MS', '1s', /integer/],
  ['LP_REDIS_WAIT_REPLICAS', '-1', /from 0 to 64/],
  ['LP_REDIS_WAIT_AOF', 'always', /one of 1, 0, true, false/],
  ['LP_REDIS_LOSS_WINDOW_S', '7200', /from 0 to 3600/],
  ['LP_REDIS_PREFIX', 'has space', /up to 64 characters/],
  ['LP_REDIS_SUBSCRIBERS', '0', /from 1 to 64/],
  ['LP_UNSUBSCRIBE_LINGER_MS', '-1', /from 0 to/],
  ['LP_DECODE_THREADS', 'many', /from 0 to 64/],
  ['LP_POLL_TIMEOUT_MS', '500', /from 1000 to 120000/],
  ['LP_POLL_TIMEOUT_MS', '30s', /from 1000 to 120000/],
  ['LP_HISTORY_SIZE', '0', /from 1 to/],
  ['LP_HISTORY_TTL_S', '1.5', /integer/],
  ['LP_CHANNEL_IDLE_S', '0', /from 1 to/],
  ['LP_MAX_CHANNELS_PER_POLL', '1000', /from 1 to 256/],
  ['LP_MAX_BODY_BYTES', '0', /from 1 to/],
  ['LP_MAX_PARKED', 'lots', /integer/],
  ['LP_MAX_BACKPRESSURE', '10', /from 1024 to/],
  ['LP_WRITE_TIMEOUT_MS', '5', /from 100 to/],
  ['LP_JWT_LEEWAY_S', '-3', /from 0 to 3600/],
  ['LP_CORS_ORIGINS', 'example.com', /origins like https:\/\/app.example.com/],
  ['LP_IDEMPOTENCY_TTL_S', '0', /from 1 to/],
  ['LP_IDEMPOTENCY_MAX_KEYS', '0', /from 1 to/],
  ['LP_DRAIN_MS', 'soon', /integer/],
  ['LP_MAX_BATCH', '0', /from 1 to/],
  ['LP_MAX_PUBLISH_INFLIGHT', '0', /from 1 to/],
  ['LP_SEED_OPEN', 'maybe', /one of 1, 0, true, false/],
  ['LP_PROCS', 'half', /integer/],
  ['LP_DEMO', '2', /one of 1, 0, true, false/],
  ['LOG_LEVEL', 'loud', /one of fatal, error, warn, info/],
];

describe('config', () => {
  it('defaults match the contract', () => {
    const c = loadConfig({});
    assert.equal(c.port, 3000);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.pollTimeoutMs, 30000);
    assert.equal(c.historySize, 1000);
    assert.equal(c.historyTtlS, 3600);
    assert.equal(c.maxChannelsPerPoll, 32);
    assert.equal(c.maxBodyBytes, 65536);
    assert.equal(c.maxParked, 100000);
    assert.equal(c.maxBackpressure, 262144);
    assert.equal(c.idempotencyTtlS, 600);
    assert.equal(c.drainMs, 5000);
    assert.equal(c.maxBatch, 1000);
    assert.equal(c.maxPublishInflight, 10000);
    assert.equal(c.jwtLeewayS, 30);
    assert.equal(c.seedOpen, false);
    assert.equal(c.redisUrl, undefined);
    assert.equal(c.publishKey, undefined);
    assert.ok(Object.isFrozen(c));
  });

  it('parses lists and flags', () => {
    const c = loadConfig({ LP_PUBLIC_PREFIXES: 'public:, news.', LP_CORS_ORIGINS: 'https://a.example,http://localhost:5173', LP_SEED_OPEN: 'true', LP_PROCS: 'auto' });
    assert.deepEqual(c.publicPrefixes, ['public:', 'news.']);
    assert.deepEqual(c.corsOrigins, ['https://a.example', 'http://localhost:5173']);
    assert.equal(c.seedOpen, true);
    assert.equal(c.procs, 'auto');
  });

  for (const [variable, value, allowed] of BAD) {
    it(`refuses ${variable}=${JSON.stringify(value)}`, () => {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.ok(err.message.startsWith(`${variable}=`), err.message);
          assert.ok(err.message.includes(JSON.stringify(value)), err.message);
          assert.match(err.message, allowed);
          return true;
        },
      );
    });
  }

  it('refuses REDIS_URL together with REDIS_CLUSTER_NODES', () => {
    assert.throws(() => loadConfig({ REDIS_URL: 'redis://a:1', REDIS_CLUSTER_NODES: 'b:2' }), /choose one/);
  });

  it('Redis defaults: 3 s command timeout, no synchronous durability, a 30 s lost-writes window', () => {
    const c = loadConfig({});
    assert.equal(c.redisCommandTimeoutMs, 3000);
    assert.equal(c.redisWaitReplicas, 0);
    assert.equal(c.redisWaitAof, false);
    assert.equal(c.redisLossWindowS, 30);
    assert.deepEqual(c.redisSentinels, []);
    assert.equal(c.redisSentinelName, undefined);
  });

  it('Sentinel mode: REDIS_SENTINELS with REDIS_SENTINEL_NAME, credentials and TLS for the nodes and the sentinels', () => {
    const c = loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379, 10.0.0.2:26379', REDIS_SENTINEL_NAME: 'mymaster', REDIS_PASSWORD: 'pw', REDIS_USERNAME: 'hf', REDIS_TLS: '1', REDIS_SENTINEL_PASSWORD: 'spw', REDIS_SENTINEL_TLS: 'yes', LP_REDIS_WAIT_REPLICAS: '1' });
    assert.equal(redisMode(c), 'sentinel');
    assert.deepEqual(c.redisSentinels, ['10.0.0.1:26379', '10.0.0.2:26379']);
    assert.equal(c.redisSentinelName, 'mymaster');
    assert.equal(c.redisPassword, 'pw');
    assert.equal(c.redisTls, true);
    assert.equal(c.redisSentinelTls, true);
    assert.equal(redisMode(loadConfig({ REDIS_URL: 'redis://a:1' })), 'redis');
    assert.equal(redisMode(loadConfig({ REDIS_CLUSTER_NODES: 'a:1', REDIS_PASSWORD: 'pw' })), 'cluster');
    assert.equal(redisMode(loadConfig({})), 'memory');
  });

  const CROSS: [name: string, env: Record<string, string>, message: RegExp][] = [
    ['REDIS_SENTINELS with REDIS_URL', { REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_URL: 'redis://b:2' }, /^REDIS_URL and REDIS_SENTINELS are both set: choose one/],
    ['all three stores', { REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_URL: 'redis://b:2', REDIS_CLUSTER_NODES: 'c:3' }, /^REDIS_URL and REDIS_CLUSTER_NODES and REDIS_SENTINELS are all set: choose one/],
    ['REDIS_SENTINELS without a name', { REDIS_SENTINELS: 'a:1' }, /^REDIS_SENTINELS is set but REDIS_SENTINEL_NAME is not/],
    ['REDIS_SENTINEL_NAME alone', { REDIS_SENTINEL_NAME: 'm', REDIS_URL: 'redis://b:2' }, /^REDIS_SENTINEL_NAME is set but REDIS_SENTINELS is not/],
    ['REDIS_SENTINEL_PASSWORD alone', { REDIS_SENTINEL_PASSWORD: 'p', REDIS_CLUSTER_NODES: 'c:3' }, /^REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not/],
    ['REDIS_SENTINEL_TLS alone', { REDIS_SENTINEL_TLS: '1', REDIS_URL: 'redis://b:2' }, /^REDIS_SENTINEL_TLS is set but REDIS_SENTINELS is not/],
    ['REDIS_PASSWORD with REDIS_URL', { REDIS_PASSWORD: 'p', REDIS_URL: 'redis://b:2' }, /^REDIS_PASSWORD is set along with REDIS_URL: put credentials and TLS in the URL/],
    ['REDIS_USERNAME with REDIS_URL', { REDIS_USERNAME: 'u', REDIS_URL: 'redis://b:2' }, /^REDIS_USERNAME is set along with REDIS_URL/],
    ['REDIS_TLS with REDIS_URL', { REDIS_TLS: '1', REDIS_URL: 'redis://b:2' }, /^REDIS_TLS is set along with REDIS_URL: .*rediss:\/\//],
    ['LP_REDIS_WAIT_REPLICAS without Redis', { LP_REDIS_WAIT_REPLICAS: '1' }, /^LP_REDIS_WAIT_REPLICAS is set but no Redis is/],
    ['LP_REDIS_WAIT_AOF without Redis', { LP_REDIS_WAIT_AOF: '1' }, /^LP_REDIS_WAIT_AOF is set but no Redis is/],
    ['REDIS_PASSWORD without Redis', { REDIS_PASSWORD: 'p' }, /^REDIS_PASSWORD is set but no Redis is/],
    ['REDIS_USERNAME without Redis', { REDIS_USERNAME: 'u' }, /^REDIS_USERNAME is set but no Redis is/],
    ['REDIS_TLS without Redis', { REDIS_TLS: '1' }, /^REDIS_TLS is set but no Redis is/],
  ];
  for (const [name, env, message] of CROSS) {
    it(`refuses ${name}, naming the variables`, () => {
      assert.throws(() => loadConfig(env), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    });
  }
});

/** Parses pino JSON lines; with `every`, fails on any line that is not JSON (one log format). */
function logLines(text: string, every = true): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      if (every) assert.fail(`a log line that is not JSON: ${line}`);
    }
  }
  return out;
}

describe('holdfast CLI', () => {
  const cli = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  /** The one fatal line of a start-up that failed: JSON on stdout, nothing on stderr. */
  const fatal = (r: ReturnType<typeof cli>, every = true) => {
    const fatals = logLines(r.stdout, every).filter((l) => l.level === 60);
    assert.equal(fatals.length, 1, r.stdout);
    assert.equal(r.stderr, '');
    return fatals[0]!;
  };

  it('--help lists every variable with its default and unit', () => {
    const r = cli(['--help']);
    assert.equal(r.status, 0);
    for (const name of CONFIG_VARIABLES) assert.match(r.stdout, new RegExp(`^  ${name} `, 'm'), name);
    assert.match(r.stdout, /LP_POLL_TIMEOUT_MS\s+30000\s+ms/);
    assert.match(r.stdout, /--procs/);
  });

  it('a bad variable exits 2 naming it, in a JSON log line like every other', () => {
    const r = cli([], { LP_MAX_PARKED: 'lots' });
    assert.equal(r.status, 2);
    const line = fatal(r);
    assert.equal(line.variable, 'LP_MAX_PARKED');
    assert.match(line.msg, /LP_MAX_PARKED="lots" is not valid: an integer from 1 to/);
  });

  it('--procs 2 on the memory broker exits 2 with the reason', () => {
    const r = cli(['--procs', '2'], { REDIS_URL: '', REDIS_CLUSTER_NODES: '' });
    assert.equal(r.status, 2);
    assert.match(fatal(r).msg, /needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES/);
  });

  it('LOG_LEVEL=silent still says why the process exits', () => {
    const r = cli(['--procs', '2'], { REDIS_URL: '', REDIS_CLUSTER_NODES: '', LOG_LEVEL: 'silent' });
    assert.equal(r.status, 2);
    assert.equal(fatal(r).variable, 'LP_PROCS');
  });

  it('refuses to run on the uWS JavaScript fallback, saying why', () => {
    const r = cli([], { UWS_USE_FALLBACK: '1', PORT: '0' });
    assert.equal(r.status, 1);
    // uWS prints its own plain-text notice about the fallback before Holdfast's fatal line.
    assert.match(fatal(r, false).msg, /native binary did not load.*refuses to run on the slow JavaScript fallback/s);
  });

  it('an unknown argument exits 2', () => {
    const r = cli(['--frobnicate']);
    assert.equal(r.status, 2);
    assert.match(fatal(r).msg, /unknown argument "--frobnicate"/);
  });

  it('--version prints the package version', () => {
    const r = cli(['--version']);
    assert.equal(r.status, 0);
    assert.equal(r.stdout.trim(), JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
  });
});
