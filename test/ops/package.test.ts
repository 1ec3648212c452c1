/**
 * The package as users install it: `npm pack` of this tree (in a copy, so the shared dist/ is
 * not touched), installed from the tarball into a scratch project, must give a runnable
 * `holdfast` (help, then a real server that serves the API document and drains on SIGTERM)
 * and an importable `holdfast/client`.
 *
 * The install needs the registry only for Holdfast's dependencies: it runs with --offline
 * (npm's cache, filled by `npm ci`, usually has everything: ~3 s here) and falls back to
 * --prefer-offline (which may fetch package metadata) when the cache lacks something.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { http, poll, publish } from '../helpers/server.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const PACKED = ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'src'];

function run(cmd: string, args: string[], cwd: string, timeout = 120_000) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
  return r;
}

describe('npm pack → npm install → holdfast and holdfast/client', () => {
  let dir: string;
  let app: string;
  let files: string[];
  const timings: Record<string, number> = {};

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hf-pack-'));
    const pkg = join(dir, 'pkg');
    app = join(dir, 'app');
    mkdirSync(pkg);
    mkdirSync(app);
    for (const f of PACKED) cpSync(join(ROOT, f), join(pkg, f), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));

    let t = Date.now();
    const packed = run('npm', ['pack', '--json', '--pack-destination', dir], pkg); // prepack cleans, prepare builds
    timings.pack = Date.now() - t;
    assert.equal(packed.status, 0, packed.stderr);
    const info = JSON.parse(packed.stdout)[0];
    files = info.files.map((f: { path: string }) => f.path);

    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', version: '1.0.0', private: true, type: 'module' }));
    t = Date.now();
    let installed = run('npm', ['install', '--offline', join(dir, info.filename)], app);
    if (installed.status !== 0) installed = run('npm', ['install', '--prefer-offline', join(dir, info.filename)], app);
    timings.install = Date.now() - t;
    assert.equal(installed.status, 0, installed.stderr);
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the tarball holds the build with its non-TypeScript assets, and nothing of the repository\'s tests or tools', (t) => {
    t.diagnostic(`npm pack ${timings.pack} ms, npm install ${timings.install} ms`);
    for (const f of [
      'dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'dist/client/index.js', 'dist/client/index.d.ts',
      'dist/assets/openapi.json', 'dist/assets/grafana-dashboard.json', 'dist/broker/redis/lua/publish.lua',
      'dist/demo/index.html', 'dist/demo/app.js', 'dist/demo/favicon.svg', 'LICENSE', 'CHANGELOG.md', 'README.md',
    ]) assert.ok(files.includes(f), `${f} is in the package`);
    for (const f of files) assert.ok(!/^(test|native-bench|\.ci)\//.test(f), `${f} should not be in the package`);
  });

  it('npx holdfast --help runs the installed bin', () => {
    assert.ok(existsSync(join(app, 'node_modules/.bin/holdfast')));
    const r = run('npx', ['--no-install', 'holdfast', '--help'], app, 30_000);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Usage: holdfast \[--procs N\|auto\]/m);
    assert.match(r.stdout, /LP_MAX_PARKED/);
  });

  it("import('holdfast/client') gives subscribe and publish, and holdfast/openapi.json resolves", () => {
    const r = run(process.execPath, ['--input-type=module', '-e', `
      const c = await import('holdfast/client');
      const { createRequire } = await import('node:module');
      const doc = createRequire(import.meta.url)('holdfast/openapi.json');
      console.log(typeof c.subscribe, typeof c.publish, typeof c.publishBatch, doc.openapi);
    `], app, 30_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'function function function 3.1.0');
  });

  it('the installed holdfast serves, publishes, polls and drains on SIGTERM', async () => {
    const child = spawn(join(app, 'node_modules/.bin/holdfast'), [], {
      cwd: app,
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    let port = 0;
    for await (const line of createInterface({ input: child.stdout! })) {
      if (JSON.parse(line).msg === 'holdfast listening') {
        port = JSON.parse(line).port;
        break;
      }
    }
    child.stdout!.resume();
    child.stderr!.resume();
    try {
      const base = `http://127.0.0.1:${port}`;
      const doc = await http(`${base}/v1/openapi.json`);
      assert.equal(doc.status, 200);
      assert.equal(doc.body.openapi, '3.1.0');
      assert.equal((await publish(base, 'pkg', 'installed')).status, 200);
      const r = await poll(base, { ch: 'pkg', cursor: 'earliest' });
      assert.deepEqual(r.body.messages.map((m) => m.data), ['installed']);
    } finally {
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
    }
  });
});
