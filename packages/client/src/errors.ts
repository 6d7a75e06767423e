/**
 * Everything the SDK throws is an MciasClientError with a stable `code`; callers branch on `code`, never on the
 * message. Messages never carry the bearer token, a password or a request body.
 */
export class MciasClientError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MciasClientError';
    this.code = code;
  }
}

/** The server answered with an error (RFC 9457 problem details). `code` is the problem's `code`, e.g. `not_found`. */
export class MciasApiError extends MciasClientError {
  readonly status: number;
  /** A finer machine-readable reason within the code, e.g. `password_too_short`, when the server gives one. */
  readonly reason: string | undefined;
  /** The server's request id (problem `request_id`, else the `X-Request-Id` header): quote it when reporting. */
  readonly requestId: string | undefined;
  /** Seconds to wait before retrying, from `Retry-After` (rate_limited). */
  readonly retryAfter: number | undefined;

  constructor(init: { status: number; code: string; message: string; reason?: string; requestId?: string; retryAfter?: number }) {
    super(init.code, init.message);
    this.name = 'MciasApiError';
    this.status = init.status;
    this.reason = init.reason;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
  }
}

/** Codes of errors raised before or instead of an HTTP answer. */
export const CONNECTION_ERROR_CODES = [
  'connection_failed',
  'tls_verification_failed',
  'tls_failed',
  'timeout',
  'invalid_response',
] as const;
export type ConnectionErrorCode = (typeof CONNECTION_ERROR_CODES)[number];

/** The server could not be reached, its certificate did not verify, it was too slow, or its answer was unreadable. */
export class MciasConnectionError extends MciasClientError {
  declare readonly code: ConnectionErrorCode;

  constructor(code: ConnectionErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
    this.name = 'MciasConnectionError';
  }
}

export function isMciasApiError(error: unknown, code?: string): error is MciasApiError {
  return error instanceof MciasApiError && (code === undefined || error.code === code);
}
