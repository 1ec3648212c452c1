/**
 * What the server says at start-up, and in what form: an unknown LP_* variable names the
 * closest known one; an open-file limit below LP_MAX_PARKED gives the numbers and the fix
 * (checked in a child whose soft limit is lowered with `ulimit -n`); every line is JSON.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { CONFIG_VARIABLES } from '../../src/config.js';
import { FD_HEADROOM, editDistance, fdShortfall, openFileLimit, runStartupChecks, unknownVariables } from '../../src/startup-checks.js';
import { http, poll } from '../helpers/server.js';

const started: ChildProcess[] = [];
after(async () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Started {
  child: ChildProcess;
  port: number;
  /** Every line written up to 'holdfast ready', parsed (a line that is not JSON fails the test). */
  lines: Record<string, any>[];
  stop(): Promise<number | null>;
}

/** Starts the CLI (optionally with `ulimit -n` lowered first) and reads its log up to ready. */
async function startCli(env: Record<string, string>, nofile?: number): Promise<Started> {
  const node = `${JSON.stringify(process.execPath)} --import tsx src/cli.ts`;
  const child = nofile === undefined
    ? spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts'], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('bash', ['-c', `ulimit -n ${nofile} && exec ${node}`], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  const stderr: string[] = [];
  child.stderr!.on('data', (d) => stderr.push(String(d)));
  const lines: Record<string, any>[] = [];
  let port = 0;
  for await (const line of createInterface({ input: child.stdout! })) {
    let entry: Record<string, any>;
    try {
      entry = JSON.parse(line);
    } catch {
      assert.fail(`a log line that is not JSON: ${line}`);
    }
    lines.push(entry);
    if (entry.msg === 'holdfast listening') port = entry.port;
    if (entry.msg === 'holdfast ready') break;
  }
  child.stdout!.resume();
  assert.ok(port > 0, `the server started; stderr: ${stderr.join('')}`);
  const exited = once(child, 'exit');
  return {
    child,
    port,
    lines,
    async stop() {
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(stderr.join(''), '', 'nothing on stderr');
      return code as number | null;
    },
  };
}

describe('start-up checks (units)', () => {
  it('names the closest known variable for a typo, and none for a stranger', () => {
    const found = unknownVariables({ LP_HISTORY_SIZ: '10', LP_POLL_TIMEOUT: '5', LP_MAX_PARKED: '5', LP_TOTALLY_UNRELATED_THING: '1', PATH: '/bin', lp_lower: '1' });
    assert.deepEqual(found, [
      { variable: 'LP_HISTORY_SIZ', closest: 'LP_HISTORY_SIZE' },
      { variable: 'LP_POLL_TIMEOUT', closest: 'LP_POLL_TIMEOUT_MS' },
      { variable: 'LP_TOTALLY_UNRELATED_THING', closest: undefined },
    ]);
    for (const name of CONFIG_VARIABLES) assert.deepEqual(unknownVariables({ [name]: '1' }), [], `${name} is known`);
    assert.equal(editDistance('LP_DRAIN_MS', 'LP_DRIAN_MS'), 2);
    assert.equal(editDistance('', 'abc'), 3);
  });

  it('reads the soft open-file limit and computes the shortfall', () => {
    const limits = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n';
    assert.equal(openFileLimit(limits), 1024);
    assert.equal(openFileLimit('Max open files            unlimited            unlimited            files\n'), Infinity);
    assert.equal(openFileLimit('nothing here'), undefined);
    assert.ok(Number.isInteger(openFileLimit()), 'this machine has a limit');
    assert.equal(fdShortfall(1024, 100, 20), undefined);
    assert.deepEqual(fdShortfall(1024, 100_000, 20), { openFileLimit: 1024, maxParked: 100_000, openFiles: 20, needed: 100_000 + 20 + FD_HEADROOM, fits: 1024 - 20 - FD_HEADROOM });
    assert.equal(fdShortfall(undefined, 100_000, 20), undefined, 'no check where the limit is unknown');
  });

  it('logs one warning per finding', () => {
    const logged: Record<string, any>[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => logged.push(JSON.parse(s)) });
    runStartupChecks({ LP_HISTORY_SIZ: '10' }, { maxParked: 100 }, log, 1_000_000, 10);
    assert.deepEqual(logged.map((l) => [l.level, l.variable, l.closest]), [[40, 'LP_HISTORY_SIZ', 'LP_HISTORY_SIZE']]);
    assert.match(logged[0]!.msg, /unknown variable LP_HISTORY_SIZ is ignored; did you mean LP_HISTORY_SIZE\?/);
    logged.length = 0;
    runStartupChecks({}, { maxParked: 100 }, log, 1_000_000, 10);
    assert.deepEqual(logged, []);
  });
});

describe('start-up warnings from the CLI', () => {
  it('an unknown LP_ variable is named with the closest known one', async () => {
    const s = await startCli({ LP_HISTORY_SIZ: '10' });
    const warn = s.lines.find((l) => l.variable === 'LP_HISTORY_SIZ');
    assert.ok(warn, JSON.stringify(s.lines));
    assert.equal(warn.level, 40);
    assert.equal(warn.closest, 'LP_HISTORY_SIZE');
    assert.equal(await s.stop(), 0);
  });

  it('an open-file limit below LP_MAX_PARKED is a warning with the numbers and the fix', async () => {
    const s = await startCli({ LP_MAX_PARKED: '100000' }, 128);
    const warn = s.lines.find((l) => l.openFileLimit !== undefined);
    assert.ok(warn, JSON.stringify(s.lines));
    assert.equal(warn.level, 40);
    assert.equal(warn.openFileLimit, 128);
    assert.equal(warn.maxParked, 100_000);
    assert.ok(warn.fits > 0 && warn.fits < 128 && warn.needed > 100_000);
    assert.match(warn.msg, /open-file limit is 128, below LP_MAX_PARKED=100000/);
    assert.match(warn.msg, new RegExp(`ulimit -n ${warn.needed}`));
    assert.match(warn.msg, new RegExp(`LimitNOFILE=${warn.needed}`));
    assert.match(warn.msg, new RegExp(`LP_MAX_PARKED=${warn.fits}`));
    assert.equal(await s.stop(), 0);
  });

  it('with LP_MAX_PARKED at what the warning says fits, polls beyond it get 503 and /healthz still answers', async () => {
    const probe = await startCli({ LP_MAX_PARKED: '100000' }, 128);
    const fits: number = probe.lines.find((l) => l.openFileLimit !== undefined)!.fits;
    await probe.stop();

    const s = await startCli({ LP_MAX_PARKED: String(fits) }, 128);
    let parked: Promise<Awaited<ReturnType<typeof poll>>>[] = [];
    try {
      assert.equal(s.lines.find((l) => l.openFileLimit !== undefined), undefined, 'no warning once it fits');
      const base = `http://127.0.0.1:${s.port}`;
      parked = Array.from({ length: fits }, (_, i) => poll(base, { ch: `fd-${i}`, timeout: 30_000 }));
      const until = Date.now() + 20_000;
      let over: Awaited<ReturnType<typeof poll>>;
      // Parked polls are not observable from outside but through admission: poll until one is refused.
      do over = await poll(base, { ch: 'fd-over', timeout: 1000 });
      while (over.status === 200 && Date.now() < until);
      assert.equal(over.status, 503);
      assert.equal(over.body.error.code, 'too_many_polls');
      assert.equal((await http(`${base}/healthz`)).status, 200);
      const ch = await http(`${base}/v1/channels/fd-0`);
      assert.equal(ch.status, 200);
    } finally {
      assert.equal(await s.stop(), 0);
    }
    for (const r of await Promise.all(parked)) assert.equal(r.status, 200, 'each parked poll is answered by the drain');
  });
});
