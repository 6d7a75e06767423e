import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { MciasError } from '../domain/errors.ts';

/**
 * SCRAM-SHA-256 verifiers exactly as PostgreSQL stores them in `pg_authid.rolpassword` (RFC 5802 and RFC 7677):
 *
 *     SCRAM-SHA-256$<iterations>:<salt, base64>$<StoredKey, base64>:<ServerKey, base64>
 *
 * where SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations), StoredKey = SHA-256(HMAC(SaltedPassword,
 * "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"). `ALTER ROLE ... PASSWORD '<verifier>'` stores
 * it as is, so the server never sees the password (what psql's `\password` and libpq's PQencryptPasswordConn do).
 *
 * Passwords are printable ASCII only. PostgreSQL runs the password through SASLprep (RFC 4013) before hashing and
 * falls back to the raw bytes when SASLprep rejects it; for printable ASCII SASLprep is the identity, so the raw
 * bytes are exactly what the server and every client hash. Beyond ASCII the result depends on the client: libpq
 * applies SASLprep, node-postgres does not, so a non-ASCII password could work for one service and not another.
 * MCIAS generates its passwords in ASCII, so refusing the rest costs nothing and keeps every stored password
 * working for every client (a SASLprep library, such as @mongodb-js/saslprep, was considered and left out for that
 * reason).
 */

/** libpq's default (PQencryptPasswordConn) and PostgreSQL's `scram_iterations` default. */
export const SCRAM_ITERATIONS = 4096;
const SALT_BYTES = 16;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

const pbkdf2Async = promisify(pbkdf2);

export interface ScramOptions {
  readonly iterations?: number;
  /** Only for tests that need a fixed value; normally 16 random bytes. */
  readonly salt?: Buffer;
}

/** The verifier PostgreSQL would store for `password`. Throws `invalid_request` for a password outside printable ASCII. */
export async function scramVerifier(password: string, options: ScramOptions = {}): Promise<string> {
  if (!PRINTABLE_ASCII.test(password)) {
    throw new MciasError('invalid_request', 'PostgreSQL passwords set by MCIAS must be printable ASCII', { reason: 'pg_password_unsupported' });
  }
  const iterations = options.iterations ?? SCRAM_ITERATIONS;
  const salt = options.salt ?? randomBytes(SALT_BYTES);
  const salted = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
