/**
 * HTTP/1.1 at the byte level, for what fetch cannot send or hides: HEAD on a keep-alive
 * connection, duplicate framing headers, odd methods, HTTP/1.0, PROXY protocol preambles.
 */

import net from 'node:net';

export interface RawAnswer {
  status: number;
  /** Header lines in order, names lowercase (duplicates kept). */
  headers: [string, string][];
  body: Buffer;
  header(name: string): string | undefined;
}

export interface Exchange {
  answers: RawAnswer[];
  /** Bytes after the last complete answer (should be none). */
  rest: Buffer;
  /** The server closed the connection. */
  closed: boolean;
}

/**
 * Parses the answers in `data`; `heads` says which of them answer HEAD requests (no body
 * whatever Content-Length says).
 */
export function parseAnswers(data: Buffer, heads: boolean[] = []): { answers: RawAnswer[]; rest: Buffer } {
  const answers: RawAnswer[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const lines = data.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(lines[0]!)?.[1]);
    if (!status) throw new Error(`not an HTTP answer: ${JSON.stringify(lines[0])}`);
    const headers = lines.slice(1).map((l) => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()] as [string, string];
    });
    const header = (name: string) => headers.find(([n]) => n === name)?.[1];
    const isHead = heads[answers.length] === true;
    const length = isHead || status === 204 || status === 304 ? 0 : Number(header('content-length') ?? 0);
    if (data.length < end + 4 + length) break;
    answers.push({ status, headers, body: data.subarray(end + 4, end + 4 + length), header });
    at = end + 4 + length;
  }
  return { answers, rest: data.subarray(at) };
}

/**
 * Writes `request` in one write and collects what comes back until `expect` answers are
 * complete, or (`waitForClose`) until the server closes; bounded by `limitMs`.
 */
export function exchange(
  port: number,
  request: string | Buffer,
  options: { expect?: number; heads?: boolean[]; limitMs?: number; waitForClose?: boolean } = {},
): Promise<Exchange> {
  const { expect = 1, heads = [], limitMs = 5000, waitForClose = false } = options;
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let closed = false;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const { answers, rest } = parseAnswers(data, heads);
      sock.destroy();
      resolve({ answers, rest, closed });
    };
    const timer = setTimeout(() => (waitForClose ? reject(new Error(`the server did not close the connection in ${limitMs} ms`)) : finish()), limitMs);
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      data = Buffer.concat([data, d]);
      if (!waitForClose && parseAnswers(data, heads).answers.length >= expect) finish();
    });
    sock.on('close', () => {
      closed = true;
      finish();
    });
    sock.once('connect', () => sock.write(request));
  });
}
