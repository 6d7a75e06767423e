import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { MciasError, type ErrorCode } from '../domain/errors.ts';

/**
 * HTTP's reason phrases, from node:http taken with process.getBuiltinModule rather than an ES import (import only its
 * types): an ES import of node:http makes Node read every one of its exports, and the WebSocket, CloseEvent and
 * MessageEvent getters among them load the bundled undici (fetch, WebSocket), which the server never uses and which
 * would stay resident (issue 12, idle memory). Fastify's own require('node:http') reads none of them.
 */
export const { STATUS_CODES } = process.getBuiltinModule('node:http');

/** The single place where an error code becomes an HTTP status. */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  invalid_request: 400,
  invalid_credentials: 401,
  totp_required: 401,
  unauthenticated: 401,
  forbidden: 403,
  password_change_required: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  rate_limited: 429,
  internal: 500,
  upstream_failed: 502,
  unavailable: 503,
};

export interface Problem {
  type: 'about:blank';
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  reason?: string;
  request_id: string;
}

/** Turns any error into RFC 9457 problem details; unknown errors become a bare 500 whose detail stays in the log. */
function toProblem(error: unknown, request: FastifyRequest): { problem: Problem; retryAfter?: number } {
  if (error instanceof MciasError) {
    const status = STATUS_BY_CODE[error.code];
    // An outage answers every request with this: one warning each, the driver's error under `err.cause`.
    if (error.code === 'unavailable') request.log.warn({ err: error }, 'database unavailable');
    else if (status >= 500) request.log.error({ err: error }, 'request failed');
    return {
      // A 5xx says nothing of the inside, except that the database is not answering, which is the client's to know.
      problem: problem(status, error.code, request, status >= 500 && error.code !== 'unavailable' ? undefined : error.message, error.reason),
      ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
    };
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation !== undefined) {
    const where = fastifyError.validationContext ?? 'request';
    const first = fastifyError.validation[0];
    const path = first?.instancePath ? `${where}${first.instancePath.replaceAll('/', '.')}` : where;
    const extra = first?.keyword === 'additionalProperties' ? ` (${String((first.params as { additionalProperty?: string }).additionalProperty ?? '')} is not allowed)` : '';
    return { problem: problem(400, 'invalid_request', request, `${path} ${first?.message ?? 'is not valid'}${extra}`) };
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { problem: problem(413, 'payload_too_large', request, 'the request body is too large') };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { problem: problem(415, 'invalid_request', request, 'request bodies must be application/json') };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { problem: problem(400, 'invalid_request', request, 'the JSON body is empty') };
    // The router's own errors: their messages quote the path, which is not ours to echo.
    case 'FST_ERR_BAD_URL':
      return { problem: problem(400, 'invalid_request', request, 'the URL is not valid') };
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { problem: problem(414, 'invalid_request', request, 'a path parameter is too long') };
  }
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Body parse failures (malformed JSON, prototype poisoning) and other client errors Fastify raises itself.
    const detail = status === 400 ? 'the request body is not valid JSON' : STATUS_CODES[status];
    return { problem: problem(status, status === 404 ? 'not_found' : 'invalid_request', request, detail) };
  }
  request.log.error({ err: error }, 'unexpected error');
  return { problem: problem(500, 'internal', request, undefined) };
}

function problem(status: number, code: ErrorCode, request: FastifyRequest, detail?: string, reason?: string): Problem {
  return buildProblem(status, code, request.id, detail, reason);
}

/** The problem+json body for a status and code; also used where there is no Fastify request (src/http/connections.ts). */
export function buildProblem(status: number, code: ErrorCode, requestId: string, detail?: string, reason?: string): Problem {
  return {
    type: 'about:blank',
    title: STATUS_CODES[status] ?? 'Error',
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
    ...(reason === undefined ? {} : { reason }),
    request_id: requestId,
  };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export function sendProblem(reply: FastifyReply, error: unknown): FastifyReply {
  const { problem, retryAfter } = toProblem(error, reply.request);
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}
