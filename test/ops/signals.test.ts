/**
 * Signals under `npm start`: Docker and systemd setups that run `npm start` signal npm's pid.
 * npm forwards SIGTERM to its child; the start script execs the server, so that child is the
 * server itself (no shell in between to die and orphan it). The server drains its parked
 * polls and exits, npm exits with it, and no process is left behind.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { poll, until } from '../helpers/server.js';

const ROOT = new URL('../../', import.meta.url).pathname;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The parent pid from /proc/<pid>/stat (the field after the parenthesised command name). */
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

describe('npm start under a supervisor', () => {
  let serverPid = 0;
  after(() => {
    if (serverPid && alive(serverPid)) process.kill(serverPid, 'SIGKILL'); // only if the test failed
  });

  it('SIGTERM to the npm process drains the server, which exits with npm, leaving no orphan', async () => {
    const npm = spawn('npm', ['start'], {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', LP_DRAIN_MS: '3000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stderr: string[] = [];
    npm.stderr!.on('data', (d) => stderr.push(String(d)));
    let port = 0;
    // npm prints its own "> holdfast@… start" header first; the server's lines are JSON.
    for await (const line of createInterface({ input: npm.stdout! })) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line);
      if (entry.msg === 'holdfast listening') {
        port = entry.port;
        serverPid = entry.pid;
        break;
      }
    }
    npm.stdout!.resume();
    assert.ok(port > 0, `the server started (stderr: ${stderr.join('')})`);
    assert.notEqual(serverPid, npm.pid);
    assert.equal(parentOf(serverPid), npm.pid, 'the server is npm\'s own child: the start script execs it');

    const base = `http://127.0.0.1:${port}`;
    const first = await poll(base, { ch: 'npm-sig', timeout: 1000 });
    const parked = poll(base, { ch: 'npm-sig', cursor: first.body.cursor, timeout: 60_000 });
    await until(async () => (await fetch(`${base}/v1/channels/npm-sig`).then((r) => r.json())).pollers === 1, 'parked');

    const exited = once(npm, 'exit');
    process.kill(npm.pid!, 'SIGTERM');
    const answer = await parked;
    assert.equal(answer.status, 200, 'the parked poll is answered by the drain');
    assert.equal(answer.body.cursor, first.body.cursor);
    assert.equal(typeof answer.body.retryMs, 'number');
    const [code] = await exited;
    assert.equal(code, 0, 'npm exits 0 with the server');
    await until(() => !alive(serverPid), 'the server process is gone', 5000);
  });
});
