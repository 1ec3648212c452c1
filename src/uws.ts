/**
 * The uWebSockets.js binding, checked. The package silently falls back to a slow JavaScript
 * implementation when its native binary does not load; Holdfast refuses to run on that.
 */

import uWS from 'uWebSockets.js';

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';

/** The fallback has no SSLApp: that tells the native build apart. */
export const uwsIsNative = typeof (uWS as { SSLApp?: unknown }).SSLApp === 'function';

export function assertNativeUws(): void {
  if (!uwsIsNative) {
    throw new Error(
      'uWebSockets.js native binary did not load (or UWS_USE_FALLBACK is set): Holdfast refuses to run on the ' +
        `slow JavaScript fallback. Node ${process.versions.node} (ABI ${process.versions.modules}) on ` +
        `${process.platform}-${process.arch} needs binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node ` +
        'and glibc >= 2.27; reinstall with `npm ci` on a supported platform.',
    );
  }
}

/** LIBUS_LISTEN_EXCLUSIVE_PORT at run time (the typed enum member throws in v20.30). */
export const LISTEN_EXCLUSIVE_PORT = 1;

export default uWS;
