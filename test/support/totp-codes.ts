import assert from 'node:assert/strict';
import { Secret, TOTP } from 'otpauth';
import { USER_PASSWORD, type Harness } from './harness.ts';

/**
 * TOTP codes for in-process tests on the harness's ManualClock: an authenticator app computed with `otpauth` from
 * the secret the server handed out (RFC 6238 as SECURITY.md §12 fixes it: SHA-1, 6 digits, 30 s steps).
 */

export const PERIOD_MS = 30_000;

/** The RFC 6238 time step of a moment (milliseconds). */
export function stepOf(ms: number): number {
  return Math.floor(ms / PERIOD_MS);
}

/** The 6-digit code of `base32Secret` at `atMs`. */
export function totpCode(base32Secret: string, atMs: number): string {
  return new TOTP({ secret: Secret.fromBase32(base32Secret), algorithm: 'SHA1', digits: 6, period: PERIOD_MS / 1000 }).generate({ timestamp: atMs });
}

/** A 6-digit code that none of the steps now−2 … now+2 would produce: certainly wrong. */
export function wrongCode(base32Secret: string, atMs: number): string {
  const near = new Set([-2, -1, 0, 1, 2].map((d) => totpCode(base32Secret, atMs + d * PERIOD_MS)));
  for (let n = 0; ; n += 1) {
    const candidate = String((246_802 + n * 7919) % 1_000_000).padStart(6, '0');
    if (!near.has(candidate)) return candidate;
  }
}

/** Moves the harness clock into the next time step and returns that step's code (never used before). */
export function nextCode(h: Harness, base32Secret: string): string {
  h.clock.advance(PERIOD_MS);
  return totpCode(base32Secret, h.clock.now());
}

/** `POST /v1/me/totp` with the token and the account's password (re-authentication); returns the secret and the URI. */
export async function beginTotp(h: Harness, token: string, password = USER_PASSWORD): Promise<{ secret: string; otpauth_uri: string }> {
  const response = await h.request({ method: 'POST', url: '/v1/me/totp', token, body: { password } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as { secret: string; otpauth_uri: string };
}

/**
 * Enrolls the token's account (begin, then confirm with the current code) and returns the secret and the recovery
 * codes. The confirming code's step counts as used: call `nextCode` for the next login.
 */
export async function enrollTotp(h: Harness, token: string, password = USER_PASSWORD): Promise<{ secret: string; recoveryCodes: string[] }> {
  const { secret } = await beginTotp(h, token, password);
  const response = await h.request({ method: 'POST', url: '/v1/me/totp/confirm', token, body: { code: totpCode(secret, h.clock.now()) } });
  assert.equal(response.statusCode, 200, response.body);
  return { secret, recoveryCodes: (response.json() as { recovery_codes: string[] }).recovery_codes };
}

/** The admin's reset (`DELETE /v1/accounts/{username}/totp`), as the harness's bootstrap admin. */
export async function resetTotp(h: Harness, username: string): Promise<void> {
  const response = await h.request({ method: 'DELETE', url: `/v1/accounts/${username}/totp`, token: h.adminToken });
  assert.equal(response.statusCode, 204, response.body);
}
