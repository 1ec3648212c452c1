/**
 * The README against the code: its Configuration table lists exactly the variables
 * src/config.ts knows, with the defaults `--help` prints; its first screen gives the two
 * commands; and every metric it names is one a real server exports.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { CONFIG_VARIABLES, configHelp } from '../../src/config.js';
import { type TestServer, http, startTestServer } from '../helpers/server.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The text of one `## ` section, heading excluded. */
function section(title: string): string {
  const found = README.split(/^## /m).find((s) => s.startsWith(`${title}\n`));
  assert.ok(found, `README has a "## ${title}" section`);
  return found.slice(title.length + 1);
}

/** Rows of the first Markdown table in `text` whose header starts with `firstHeader`, as cells. */
function table(text: string, firstHeader: string): string[][] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`| ${firstHeader} |`));
  assert.ok(start >= 0, `a table headed "${firstHeader}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split(' | ').map((c) => c.trim()));
  }
  return rows;
}

const unquote = (cell: string) => cell.replace(/`/g, '');

/** `--help`'s rows: variable → default as printed ("(unset)" for none). */
function helpDefaults(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of configHelp().split('\n').slice(1)) {
    const [name, def] = line.trim().split(/\s+/);
    out.set(name!, def!);
  }
  return out;
}

describe('README: the Configuration table', () => {
  const rows = table(section('Configuration'), 'variable');
  const listed = rows.map((r) => unquote(r[0]!));

  it('lists every variable src/config.ts knows, once, in the order of --help', () => {
    assert.deepEqual(listed, [...CONFIG_VARIABLES]);
  });

  it('gives each variable the default --help prints', () => {
    const defaults = helpDefaults();
    for (const row of rows) {
      const name = unquote(row[0]!);
      assert.equal(unquote(row[1]!), defaults.get(name), `default of ${name}`);
    }
  });

  it('names no LP_ or REDIS_ variable the configuration does not know, anywhere in the README', () => {
    // The one deliberate unknown: the start-up warning's example of a typo.
    const examples = new Set(['LP_HISTORY_SIZ']);
    const named = new Set(README.match(/\b(?:LP|REDIS)_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []);
    const unknown = [...named].filter((n) => !CONFIG_VARIABLES.includes(n) && !examples.has(n));
    assert.deepEqual(unknown, []);
  });
});

describe('README: the first screen', () => {
  const firstScreen = README.split('\n').slice(0, 20).join('\n');

  it('gives exactly the two commands, in one code block', () => {
    const blocks = [...firstScreen.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
    assert.equal(blocks.length, 1, 'one code block in the first 20 lines');
    const commands = blocks[0]!.split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/\s+#.*$/, '').trim());
    assert.deepEqual(commands, ['npm ci && npm start', 'npm test']);
  });

  it('runs scripts package.json has', () => {
    const scripts = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).scripts;
    assert.ok(scripts.start && scripts.test);
    // Every `npm run <script>` the README names exists.
    const named = new Set([...README.matchAll(/npm run ([a-z:-]+)/g)].map((m) => m[1]!));
    assert.deepEqual([...named].filter((n) => !(n in scripts)), []);
  });
});

/** Names a metric-table cell lists: `a`, `b_{x,y}_c` expands to b_x_c, b_y_c. */
function metricNames(cell: string): string[] {
  const out: string[] = [];
  for (const [, name] of cell.matchAll(/`([a-z0-9_{},]+)`/g)) {
    const brace = /\{([a-z0-9_,]+)\}/.exec(name!);
    if (!brace) out.push(name!);
    else for (const part of brace[1]!.split(',')) out.push(name!.replace(brace[0], part));
  }
  return out;
}

describe('README: every metric it names is exported', () => {
  let s: TestServer;
  let exported: Set<string>;
  before(async () => {
    s = await startTestServer();
    await http(`${s.url}/nope`, { openapi: false }); // a labelled counter exports once it has a sample
    const text = ((await http(`${s.url}/metrics`)).body as Buffer).toString('utf8');
    exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  });
  after(() => s.close());

  /** Only the --procs supervisor registers this one (a worker never does). */
  const SUPERVISOR_ONLY = 'holdfast_worker_restarts_total';

  it('every name in the metrics table is exported by a server (the supervisor\'s own in src/supervisor.ts)', () => {
    const rows = table(section('Operations'), 'metric');
    const names = rows.flatMap((r) => metricNames(r[0]!));
    assert.ok(names.length >= 30, `${names.length} names in the table`);
    for (const name of names) {
      if (name === SUPERVISOR_ONLY) {
        const supervisor = readFileSync(new URL('../../src/supervisor.ts', import.meta.url), 'utf8');
        assert.match(supervisor, new RegExp(`name: '${name}'`), `${name} is registered by the supervisor`);
        continue;
      }
      assert.ok(exported.has(name), `the README lists ${name}, which the server does not export`);
    }
  });

  it('every holdfast_ metric the server exports is in the table, and the prose names no other', () => {
    const rows = table(section('Operations'), 'metric');
    const documented = new Set(rows.flatMap((r) => metricNames(r[0]!)));
    for (const name of exported) if (name.startsWith('holdfast_')) assert.ok(documented.has(name), `${name} is documented`);
    const suffix = /_(?:bucket|sum|count)$/;
    // The nginx snippet's holdfast_ names are nginx's ($holdfast_connection, @holdfast_unavailable).
    const prose = README.replace(/```nginx\n[\s\S]*?```/g, '');
    for (const [name] of prose.matchAll(/(?<![$@\w])holdfast_[a-z0-9_]*[a-z0-9]\b/g)) {
      const family = exported.has(name) || name === SUPERVISOR_ONLY ? name : name.replace(suffix, '');
      assert.ok(documented.has(family), `the README names ${name}, which is not in its metrics table`);
    }
  });
});
