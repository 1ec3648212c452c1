/**
 * LP_DEMO=1: serves the demo page, its script and the client library (its ES modules under
 * /client/), and publishes a ticker on the conflated channel `demo:ticker` once a second.
 */

import { readFileSync } from 'node:fs';
import type { Broker } from '../broker/broker.js';
import type { TemplatedApp } from '../uws.js';
import type { Res } from '../respond.js';
import { send, sendJson } from '../respond.js';

const dist = new URL('../', import.meta.url); // dist/ (or src/ under tsx, where the .js files do not exist)

const FILES: Record<string, [file: string, type: string]> = {
  '/demo/': ['demo/index.html', 'text/html; charset=utf-8'],
  '/demo/index.html': ['demo/index.html', 'text/html; charset=utf-8'],
  '/demo/app.js': ['demo/app.js', 'text/javascript; charset=utf-8'],
  '/demo/favicon.svg': ['demo/favicon.svg', 'image/svg+xml'],
};

/** holdfast/client's modules (index.js imports its siblings): /client/<name>.js. */
const CLIENT_MODULE = /^[a-z][a-z0-9-]*\.js$/;

export const TICKER_CHANNEL = 'demo:ticker';

function load(file: string): Buffer | undefined {
  for (const base of [dist, new URL('../../dist/', import.meta.url)]) {
    try {
      return readFileSync(new URL(file, base));
    } catch {
      /* try the next place */
    }
  }
  return undefined;
}

export function registerDemo(app: TemplatedApp, broker: Broker): () => void {
  for (const [path, [file, type]] of Object.entries(FILES)) {
    app.get(path, (res: Res) => {
      const body = load(file);
      if (body) send(res, 200, type, body, { headers: ['Cache-Control', 'no-cache'] });
      else sendJson(res, 404, { error: { code: 'not_found', message: `${file} is not built: run npm run build` } }, { noStore: true });
    });
  }
  app.get('/client/:module', (res: Res, req) => {
    const name = req.getParameter(0);
    const body = CLIENT_MODULE.test(name) ? load(`client/${name}`) : undefined;
    if (body) send(res, 200, 'text/javascript; charset=utf-8', body, { headers: ['Cache-Control', 'no-cache'] });
    else sendJson(res, 404, { error: { code: 'not_found', message: `no client module ${JSON.stringify(name.slice(0, 60))} (is it built? npm run build)` } }, { noStore: true });
  });
  app.get('/demo', (res: Res) => {
    res.cork(() => res.writeStatus('301 Moved Permanently').writeHeader('Location', '/demo/').end());
  });
  let px = 100;
  const ticker = setInterval(() => {
    px = Math.max(1, Math.round((px + (Math.random() - 0.5) * 2) * 100) / 100);
    broker.publish({ ch: TICKER_CHANNEL, json: JSON.stringify({ px }) }).catch(() => undefined);
  }, 1000);
  ticker.unref();
  return () => clearInterval(ticker);
}
