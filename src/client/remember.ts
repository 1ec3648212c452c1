/**
 * Which transport worked for a server, so `transport: "auto"` starts there next time instead
 * of failing through WebSocket and SSE again behind a proxy that blocks them. Per base URL, in
 * memory (every subscription of this page or process), and in sessionStorage when there is one
 * (a reload of the tab starts where the last one ended up; a new tab tries again from the top).
 */

import { TRANSPORT_ORDER, type TransportName } from './types.js';

const PREFIX = 'holdfast:transport:';
const worked = new Map<string, TransportName>();

function session(): Storage | undefined {
  try {
    return typeof sessionStorage === 'undefined' ? undefined : sessionStorage;
  } catch {
    return undefined; // storage disabled (privacy settings, sandboxed frames)
  }
}

export function rememberedTransport(base: string): TransportName | undefined {
  const known = worked.get(base);
  if (known) return known;
  try {
    const stored = session()?.getItem(PREFIX + base);
    return (TRANSPORT_ORDER as readonly string[]).includes(stored ?? '') ? (stored as TransportName) : undefined;
  } catch {
    return undefined;
  }
}

export function rememberTransport(base: string, transport: TransportName): void {
  worked.set(base, transport);
  try {
    session()?.setItem(PREFIX + base, transport);
  } catch {
    /* full or disabled: memory is enough */
  }
}

/** Forgets every remembered transport (tests). */
export function forgetTransports(): void {
  worked.clear();
}
