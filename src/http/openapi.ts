/**
 * GET /v1/openapi.json — the API as an OpenAPI 3.1 document (src/assets/openapi.json, copied
 * to dist/assets/ by the build). The test suites validate every answer they receive against
 * it, so it describes what the server does. Read once, on the first request.
 */

import { readFileSync } from 'node:fs';
import { send } from '../respond.js';
import type { Res } from '../respond.js';
import type { ServerContext } from './context.js';

/** assets/ beside this module's parent: dist/assets in the package, src/assets under tsx. */
const DOCUMENT = new URL('../assets/openapi.json', import.meta.url);

let cached: Buffer | undefined;

/** The document's bytes; throws (a logged 500) if the build did not copy it. */
export function openapiDocument(): Buffer {
  return (cached ??= readFileSync(DOCUMENT));
}

export function openapi(_ctx: ServerContext) {
  return (res: Res): void => {
    send(res, 200, 'application/json', openapiDocument(), { headers: ['Cache-Control', 'no-cache'] });
  };
}
