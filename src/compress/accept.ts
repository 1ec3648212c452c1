/**
 * Which compression a client accepts (RFC 9110 §12.5.3 Accept-Encoding): brotli when it may,
 * else gzip, else none. A coding with q=0 is refused; `*` stands for any coding not named.
 */

export type Encoding = 'br' | 'gzip';

/** The coding to answer with, from an Accept-Encoding header value ('' when absent). */
export function preferredEncoding(header: string): Encoding | undefined {
  if (header.length === 0) return undefined;
  let br: number | undefined;
  let gzip: number | undefined;
  let any: number | undefined;
  for (const part of header.split(',')) {
    const semi = part.indexOf(';');
    const name = (semi === -1 ? part : part.slice(0, semi)).trim().toLowerCase();
    const q = semi === -1 ? 1 : quality(part.slice(semi + 1));
    if (name === 'br') br = q;
    else if (name === 'gzip' || name === 'x-gzip') gzip = q;
    else if (name === '*') any = q;
  }
  const brQ = br ?? any ?? 0;
  const gzipQ = gzip ?? any ?? 0;
  if (brQ > 0 && brQ >= gzipQ) return 'br';
  if (gzipQ > 0) return 'gzip';
  return undefined;
}

/** The q of `;q=0.5` style parameters (1 when absent or unreadable). */
function quality(params: string): number {
  const m = /(?:^|;)\s*q\s*=\s*([0-9.]+)/i.exec(params);
  if (!m) return 1;
  const q = Number(m[1]);
  return Number.isFinite(q) ? Math.min(1, Math.max(0, q)) : 1;
}
