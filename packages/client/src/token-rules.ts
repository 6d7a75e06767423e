import type { JWTPayload } from 'jose';
// jose's narrow entry points: its root module loads every JOSE feature (JWE, JWKS fetching, ...), which stays resident
// in the server and in every service that verifies tokens.
import { decodeProtectedHeader } from 'jose/decode/protected_header';
import { jwtVerify } from 'jose/jwt/verify';
import type { KeyObject } from 'node:crypto';

/**
 * The one statement of what makes an MCIAS token valid by itself (SECURITY.md §16, §40, §53): the server's token
 * service and the SDK's offline `verify` both call `checkTokenRules`, so they cannot drift apart. What it cannot see
 * is the server's database: revocation, a disabled account, changed roles (the server checks those after it).
 */

/** The only signing algorithm; `alg` is pinned, never read from the token to choose a key type. */
export const TOKEN_ALGORITHM = 'EdDSA';
/** Seconds of clock difference between machines that the `nbf`/`exp` checks forgive. */
export const CLOCK_TOLERANCE_S = 5;
/** How far ahead of the verifier's clock a token's `iat` may be (SECURITY.md §40): none is issued from the future. */
export const MAX_IAT_AHEAD_MS = 60_000;
/**
 * The one spelling of a token accepted (SECURITY.md §40): three base64url segments without padding, and the signature
 * exactly an Ed25519 signature's 64 bytes. 64 bytes are 86 characters whose last one carries 4 unused bits; only
 * A, Q, g and w leave them zero. Without this, 16 spellings of one token (and `token==`) would all verify.
 * The header and payload need no such check: the signature covers their characters, not their decoded bytes.
 */
const CANONICAL_TOKEN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{85}[AQgw]$/;

/** Why a token fails the rules. */
export type TokenRuleFailure = 'malformed' | 'bad_signature' | 'unknown_key' | 'invalid_claims' | 'expired' | 'iat_in_future';

/** The claims every valid token has (docs/api.md, Token claims). */
export type TokenClaims = JWTPayload & { jti: string; sub: string; exp: number; iat: number };

export type TokenRuleResult = { readonly ok: true; readonly claims: TokenClaims } | { readonly ok: false; readonly reason: TokenRuleFailure };

export interface TokenExpectations {
  readonly issuer: string;
  readonly audience: string;
  /** The verifier's clock, milliseconds since the epoch. */
  readonly now: number;
}

/** Whether `token` is spelled as the server writes it: checked first, before any cache or key lookup. */
export function isCanonicalToken(token: unknown): token is string {
  return typeof token === 'string' && CANONICAL_TOKEN.test(token);
}

/** The audit reason for a jose error: a genuine signature over claims we refuse is not a bad signature. */
function failureOf(code: string | undefined): TokenRuleFailure {
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return 'invalid_claims';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'malformed';
    default:
      return 'bad_signature';
  }
}

/**
 * Signature and claims: the canonical spelling; the key chosen by `kid` from the verifier's own keys (`keyFor`: the
 * server's key ring, or the SDK's copy of its JWKS), never from the token's `jwk`, `jku` or `x5u` headers;
 * `alg: EdDSA` only; `typ: JWT`; our issuer and audience; `exp`, `iat`, `jti` and `sub` present; not expired, not
 * before `nbf` (5 s tolerance); `iat` at most a minute ahead.
 */
export async function checkTokenRules(
  token: string,
  keyFor: (kid: string) => Promise<KeyObject | undefined>,
  expect: TokenExpectations,
): Promise<TokenRuleResult> {
  if (!isCanonicalToken(token)) return { ok: false, reason: 'malformed' };
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const key = typeof kid === 'string' ? await keyFor(kid) : undefined;
  if (key === undefined) return { ok: false, reason: 'unknown_key' };
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: [TOKEN_ALGORITHM],
      issuer: expect.issuer,
      audience: expect.audience,
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      typ: 'JWT',
      currentDate: new Date(expect.now),
      clockTolerance: CLOCK_TOLERANCE_S,
    });
    const claims = payload as TokenClaims;
    // jose checks `iat` only against a maxTokenAge; a token "issued" in the future was not issued by the server.
    if (claims.iat * 1000 > expect.now + MAX_IAT_AHEAD_MS) return { ok: false, reason: 'iat_in_future' };
    return { ok: true, claims };
  } catch (error) {
    return { ok: false, reason: failureOf((error as { code?: string }).code) };
  }
}

/** Whether remembered claims are still within their expiry (with the same tolerance as `checkTokenRules`). */
export function stillUnexpired(claims: Pick<TokenClaims, 'exp'>, now: number): boolean {
  return claims.exp * 1000 + CLOCK_TOLERANCE_S * 1000 > now;
}
