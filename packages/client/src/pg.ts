import type { PgClientConfig, PgCredentialsWithPassword, PgTlsOptions } from './types.ts';

/**
 * A service's PostgreSQL credentials as a node-postgres client configuration, each libpq sslmode mapped to what it
 * means there (docs/pgcreds.md):
 * - `disable`: `ssl: false`, no TLS;
 * - `require`: TLS without verifying the server (`rejectUnauthorized: false`), as libpq's `require`: it keeps out
 *   passive listeners, not an active man in the middle;
 * - `verify-ca`: TLS, the chain verified against `ca_cert` (or Node's roots), the host name not checked;
 * - `verify-full`: TLS, the chain and the host name verified (node-postgres sends the host as SNI and Node checks it).
 */
export function pgClientConfig(credentials: PgCredentialsWithPassword): PgClientConfig {
  return {
    host: credentials.host,
    port: credentials.port,
    database: credentials.database,
    user: credentials.username,
    password: credentials.password,
    ssl: tlsOptions(credentials),
  };
}

function tlsOptions(credentials: PgCredentialsWithPassword): false | PgTlsOptions {
  const ca = credentials.ca_cert === null ? {} : { ca: credentials.ca_cert };
  switch (credentials.sslmode) {
    case 'disable':
      return false;
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      return { rejectUnauthorized: true, ...ca, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { rejectUnauthorized: true, ...ca };
  }
}
