import { randomUUID } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { Clock } from './clock.ts';
import { MciasError } from './errors.ts';
import { TOKEN_ALGORITHM, type KeyRing } from './keys.ts';
import type { Account, Principal, TokenKind, TokenRecord } from './model.ts';
import type { Store } from './ports.ts';

export interface TokenSettings {
  readonly issuer: string;
  readonly audience: string;
  readonly userTtlMs: number;
  readonly serviceTtlMs: number;
}

export interface IssuedToken {
  readonly token: string;
  readonly record: TokenRecord;
}

/** Seconds of clock difference between instances that `nbf`/`exp` checks forgive. */
const CLOCK_TOLERANCE_S = 5;

/** Issues and verifies the JWTs (RFC 7519, RFC 8725 best practices). */
export class TokenService {
  readonly #keys: KeyRing;
  readonly #clock: Clock;
  readonly settings: TokenSettings;

  constructor(deps: { keys: KeyRing; clock: Clock; settings: TokenSettings }) {
    this.#keys = deps.keys;
    this.#clock = deps.clock;
    this.settings = deps.settings;
  }

  /**
   * Signs a new token and returns it with the row to record. It touches no database, so callers sign before their
   * transaction opens and keep the transaction short; a token whose row was never inserted authenticates nothing.
   */
  async mint(
    account: Account,
    options: { kind: TokenKind; issuedBy: string | null; sessionStartedAt?: number },
  ): Promise<IssuedToken> {
    const now = this.#clock.now();
    const ttl = account.kind === 'human' ? this.settings.userTtlMs : this.settings.serviceTtlMs;
    const { kid, privateKey } = this.#keys.signingKey();
    const record: TokenRecord = {
      jti: randomUUID(),
      accountId: account.id,
      kind: options.kind,
      kid,
      issuedAt: now,
      expiresAt: now + ttl,
      sessionStartedAt: options.sessionStartedAt ?? now,
      issuedBy: options.issuedBy,
      revokedAt: null,
    };
    const seconds = (ms: number) => Math.floor(ms / 1000);
    const token = await new SignJWT({ username: account.username, kind: account.kind, roles: [...account.roles] })
      .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT', kid })
      .setIssuer(this.settings.issuer)
      .setSubject(account.id)
      .setAudience(this.settings.audience)
      .setIssuedAt(seconds(now))
      .setNotBefore(seconds(now))
      .setExpirationTime(seconds(record.expiresAt))
      .setJti(record.jti)
      .sign(privateKey);
    return { token, record };
  }

  /** Checks signature and claims only; `authenticate` adds the database checks. Throws `unauthenticated`. */
  async verify(token: string): Promise<JWTPayload & { jti: string; sub: string }> {
    try {
      const { kid } = decodeProtectedHeader(token);
      const key = typeof kid === 'string' ? await this.#keys.verificationKey(kid) : undefined;
      if (key === undefined) throw new Error('unknown signing key');
      const { payload } = await jwtVerify(token, key, {
        algorithms: [TOKEN_ALGORITHM],
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        typ: 'JWT',
        currentDate: new Date(this.#clock.now()),
        clockTolerance: CLOCK_TOLERANCE_S,
      });
      return payload as JWTPayload & { jti: string; sub: string };
    } catch (cause) {
      throw new MciasError('unauthenticated', 'the bearer token is not valid', { cause });
    }
  }

  /**
   * Establishes the caller from a bearer token: a good signature, then the token's row (not revoked, not expired),
   * its account (active) and the account's current roles, read together in one query (security.md 17, 21).
   */
  async authenticate(store: Store, token: string): Promise<Principal> {
    const claims = await this.verify(token);
    const found = await store.tokens.findWithAccount(claims.jti);
    const now = this.#clock.now();
    if (
      found === undefined ||
      found.token.revokedAt !== null ||
      found.token.expiresAt <= now ||
      found.token.accountId !== claims.sub ||
      found.account.status !== 'active'
    ) {
      throw new MciasError('unauthenticated', 'the bearer token is not valid');
    }
    return { account: { ...found.account, roles: found.roles }, token: found.token };
  }
}
