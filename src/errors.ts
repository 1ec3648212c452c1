/**
 * Coded errors. Every failure a client can cause is a HoldfastError with a stable `code`;
 * the code decides the HTTP status in one table, so handlers never pick statuses ad hoc.
 */

export type ErrorCode =
  | 'bad_request'
  | 'bad_channel'
  | 'bad_cursor'
  | 'bad_json'
  | 'bad_msgpack'
  | 'bad_text'
  | 'unsupported_value'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'body_too_large'
  | 'unsupported_media_type'
  | 'headers_too_large'
  | 'too_many_publishes'
  | 'too_many_polls'
  | 'draining'
  | 'broker_unavailable'
  | 'auth_unavailable'
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  bad_channel: 400,
  bad_cursor: 400,
  bad_json: 400,
  bad_msgpack: 400,
  bad_text: 400,
  unsupported_value: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  body_too_large: 413,
  unsupported_media_type: 415,
  headers_too_large: 431,
  too_many_publishes: 429,
  too_many_polls: 503,
  draining: 503,
  broker_unavailable: 503,
  /** The JWKS that verifies tokens cannot be fetched: the server's problem, not the token's. */
  auth_unavailable: 503,
  internal: 500,
};

export interface ErrorExtras {
  /** Hint for the client's next attempt; also sets Retry-After. */
  retryMs?: number;
  /** For 405. */
  allow?: string;
  /** Extra fields for the error body (a failed batch's published results). */
  body?: Record<string, unknown>;
}

export class HoldfastError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extras: ErrorExtras = {},
  ) {
    super(message);
    this.status = STATUS[code];
  }
}

/** Thrown by a broker whose store cannot be reached; maps to 503 broker_unavailable. */
export class BrokerUnavailableError extends HoldfastError {
  constructor(message = 'the message broker is unavailable; retry shortly') {
    super('broker_unavailable', message, { retryMs: 1000 });
  }
}

export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Error';
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
