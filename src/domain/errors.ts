/**
 * The one error type the domain throws. Each code is stable and machine-readable; the HTTP layer maps it to a
 * status in exactly one place (src/http/problem.ts). Messages are for people and never carry secrets.
 */
export const ERROR_CODES = [
  'invalid_request',
  'invalid_credentials',
  'totp_required',
  'unauthenticated',
  'forbidden',
  'password_change_required',
  'not_found',
  'conflict',
  'payload_too_large',
  'rate_limited',
  'internal',
  'upstream_failed',
  'unavailable',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Seconds an `unavailable` answer (the database is not answering) tells the client to wait: its Retry-After. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

export class MciasError extends Error {
  readonly code: ErrorCode;
  /** Seconds a client should wait before retrying (rate_limited, unavailable): the Retry-After header. */
  readonly retryAfter: number | undefined;
  /** A finer machine-readable reason within the code, e.g. `password_too_short` under `invalid_request`. */
  readonly reason: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { retryAfter?: number; reason?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MciasError';
    this.code = code;
    this.retryAfter = options.retryAfter;
    this.reason = options.reason;
  }
}

export function fail(code: ErrorCode, message: string, reason?: string): never {
  throw new MciasError(code, message, reason === undefined ? {} : { reason });
}

export function isMciasError(error: unknown, code?: ErrorCode): error is MciasError {
  return error instanceof MciasError && (code === undefined || error.code === code);
}
