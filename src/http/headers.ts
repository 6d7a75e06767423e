export const HSTS = 'max-age=63072000; includeSubDomains';

/**
 * Headers on every response: Fastify's (src/http/app.ts) and the ones the server answers before Fastify sees a
 * request (src/http/connections.ts, SECURITY.md §42). Routes may override `cache-control` (JWKS, OpenAPI).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'strict-transport-security': HSTS,
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
});
