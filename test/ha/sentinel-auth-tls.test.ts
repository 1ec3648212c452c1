/**
 * Sentinel mode with passwords and with TLS, as REDIS_URL has them: the Redis nodes' password
 * (REDIS_PASSWORD) and the sentinels' own (REDIS_SENTINEL_PASSWORD), never logged; and a set
 * that speaks only TLS (REDIS_TLS to the nodes, REDIS_SENTINEL_TLS to the sentinels) with a
 * private CA given to Node by NODE_EXTRA_CA_CERTS, as for rediss://.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { makeTlsFiles, startSentinelSet, stopAllRedis } from '../helpers/redis.js';
import { http, poll, publish, until } from '../helpers/server.js';
import { startHaServer } from './harness.js';

describe('Sentinel with passwords and TLS', () => {
  after(() => stopAllRedis());

  it('REDIS_PASSWORD and REDIS_SENTINEL_PASSWORD: it serves, a wrong password is a logged failed connect, no password is ever logged', async () => {
    const set = await startSentinelSet({ password: 'node-pw-1', sentinelPassword: 'sentinel-pw-1' });
    const s = await startHaServer({ ...set.env(), LP_REDIS_PREFIX: 'auth:', REDIS_PASSWORD: 'node-pw-1', REDIS_SENTINEL_PASSWORD: 'sentinel-pw-1' });
    const wrong = await startHaServer({ ...set.env(), LP_REDIS_PREFIX: 'auth:', REDIS_PASSWORD: 'not-it', REDIS_SENTINEL_PASSWORD: 'sentinel-pw-1' }, false);
    try {
      const p = await publish(s.url, 'locked', 'in');
      assert.equal(p.status, 200);
      const r = await poll(s.url, { ch: 'locked', cursor: 'earliest' });
      assert.deepEqual(r.body.messages.map((m) => m.data), ['in']);
      await until(() => wrong.logs.some((l) => l.msg === 'redis connect failed' && /WRONGPASS|invalid/.test(l.err)), 'the wrong password is a logged failed connect');
      assert.equal((await http(`${wrong.url}/readyz`)).status, 503);
      for (const logs of [s.logs, wrong.logs]) {
        const text = JSON.stringify(logs);
        assert.ok(!text.includes('node-pw-1') && !text.includes('sentinel-pw-1') && !text.includes('not-it'), 'no password in the logs');
      }
    } finally {
      await s.close();
      await wrong.close();
    }
  });

  it('REDIS_TLS and REDIS_SENTINEL_TLS against a TLS-only set, trusting a private CA through NODE_EXTRA_CA_CERTS', async () => {
    const tls = await makeTlsFiles();
    const set = await startSentinelSet({ tls });
    // The real CLI, in a process of its own (NODE_EXTRA_CA_CERTS is read only at start-up).
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts'], {
      env: { ...process.env, ...set.env(), REDIS_TLS: '1', REDIS_SENTINEL_TLS: '1', NODE_EXTRA_CA_CERTS: tls.ca, LP_REDIS_PREFIX: 'tls:', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      let port = 0;
      for await (const line of createInterface({ input: child.stdout! })) {
        const entry = JSON.parse(line);
        if (entry.msg === 'holdfast listening') port = entry.port;
        if (entry.msg === 'holdfast ready') break;
      }
      child.stdout!.resume();
      const url = `http://127.0.0.1:${port}`;
      assert.equal((await publish(url, 'sealed', 'over tls')).status, 200);
      const r = await poll(url, { ch: 'sealed', cursor: 'earliest' });
      assert.deepEqual(r.body.messages.map((m) => m.data), ['over tls']);
      assert.equal((await http(`${url}/readyz`)).status, 200);
    } finally {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  });
});
