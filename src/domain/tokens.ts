import { hash, randomUUID } from 'node:crypto';
import { checkTokenRules, isCanonicalToken, stillUnexpired, type TokenClaims } from '@mcias/client/token-rules';
import { SignJWT } from 'jose/jwt/sign';
import { LRUCache } from 'lru-cache';
import { epochSeconds, type Clock } from './clock.ts';
import { MciasError } from './errors.ts';
import { TOKEN_ALGORITHM, type KeyRing } from './keys.ts';
import type { Account, Principal, TokenKind, TokenRecord } from './model.ts';
import type { Store } from './ports.ts';

export interface TokenSettings {
  readonly issuer: string;
  readonly audience: string;
  readonly userTtlMs: number;
  readonly serviceTtlMs: number;
  /** Humans renew up to this long after their password login; then they must log in again. */
  readonly maxSessionAgeMs: number;
}

export interface IssuedToken {
  readonly token: string;
  readonly record: TokenRecord;
}

/** Why a token was refused; recorded in the audit trail, never shown to the presenter. */
export const TOKEN_FAILURES = [
  'malformed',
  'bad_signature',
  'unknown_key',
  'invalid_claims',
  'expired',
  'iat_in_future',
  'revoked',
  'unknown_token',
  'account_inactive',
] as const;
export type TokenFailure = (typeof TOKEN_FAILURES)[number];

export type TokenCheck = { readonly ok: true; readonly principal: Principal } | { readonly ok: false; readonly reason: TokenFailure };

type VerifiedClaims = TokenClaims;

/** Signature checks remembered, by SHA-256 of the token: apps present the same token on every request. */
const VERIFIED_CACHE_SIZE = 10_000;

/** Issues and checks the JWTs (RFC 7519, RFC 8725). */
export class TokenService {
  readonly #store: Store;
  readonly #keys: KeyRing;
  readonly #clock: Clock;
  readonly settings: TokenSettings;
  readonly #verified = new LRUCache<string, VerifiedClaims>({ max: VERIFIED_CACHE_SIZE });

  constructor(deps: { store: Store; keys: KeyRing; clock: Clock; settings: TokenSettings }) {
    this.#store = deps.store;
    this.#keys = deps.keys;
    this.#clock = deps.clock;
    this.settings = deps.settings;
  }

  /**
   * Signs a new token and returns it with the row to record. It touches no database, so callers sign before their
   * transaction opens and keep the transaction short; a token whose row was never inserted authenticates nothing.
   * A person's token never outlives their session: it expires at most `maxSessionAgeMs` after the password login.
   * Never call it inside a transaction: on SQLite a signing-key refresh would wait for that transaction forever.
   */
  async mint(account: Account, options: { kind: TokenKind; issuedBy: string | null; sessionStartedAt?: number }): Promise<IssuedToken> {
    const now = this.#clock.now();
    const sessionStartedAt = options.sessionStartedAt ?? now;
    const expiresAt =
      account.kind === 'human'
        ? Math.min(now + this.settings.userTtlMs, sessionStartedAt + this.settings.maxSessionAgeMs)
        : now + this.settings.serviceTtlMs;
    const { kid, privateKey } = await this.#keys.signingKey();
    const record: TokenRecord = {
      jti: randomUUID(),
      accountId: account.id,
      kind: options.kind,
      kid,
      issuedAt: now,
      expiresAt,
      sessionStartedAt,
      issuedBy: options.issuedBy,
      revokedAt: null,
    };
    const token = await new SignJWT({ username: account.username, kind: account.kind, roles: [...account.roles] })
      .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT', kid })
      .setIssuer(this.settings.issuer)
      .setSubject(account.id)
      .setAudience(this.settings.audience)
      .setIssuedAt(epochSeconds(now))
      .setNotBefore(epochSeconds(now))
      .setExpirationTime(epochSeconds(record.expiresAt))
      .setJti(record.jti)
      .sign(privateKey);
    return { token, record };
  }

  /**
   * Signature and claims (SECURITY.md §16): EdDSA only, our issuer and audience, exp/iat/jti/sub required, the key
   * from our own key ring by `kid` (never from the token's headers). A token that passed once is remembered by its
   * hash until it expires, so the common case costs one hash instead of one signature check. Only the canonical
   * spelling gets that far, so the cache cannot vouch for another spelling of a token it has seen.
   */
  async verify(token: string): Promise<{ ok: true; claims: VerifiedClaims } | { ok: false; reason: TokenFailure }> {
    if (!isCanonicalToken(token)) return { ok: false, reason: 'malformed' };
    const now = this.#clock.now();
    const digest = hash('sha256', token, 'base64url');
    const cached = this.#verified.get(digest);
    if (cached !== undefined) return stillUnexpired(cached, now) ? { ok: true, claims: cached } : { ok: false, reason: 'expired' };
    // The rules the SDK's offline verify applies too (SECURITY.md §53): one module, so they cannot drift apart.
    const result = await checkTokenRules(token, (kid) => this.#keys.verificationKey(kid), {
      issuer: this.settings.issuer,
      audience: this.settings.audience,
      now,
    });
    if (result.ok) this.#verified.set(digest, result.claims);
    return result;
  }

  /**
   * The full check behind every authenticated request and every validation (SECURITY.md §16, §17, §21): the
   * signature, then the token's row (not revoked, not expired, key not deleted), its account (active), and the
   * account's current roles and permissions, read in one query.
   */
  async check(token: string): Promise<TokenCheck> {
    const verified = await this.verify(token);
    if (!verified.ok) return verified;
    const found = await this.#store.tokens.findWithAccount(verified.claims.jti);
    if (found === undefined || found.token.accountId !== verified.claims.sub) return { ok: false, reason: 'unknown_token' };
    if (found.token.revokedAt !== null) return { ok: false, reason: 'revoked' };
    if (found.token.expiresAt <= this.#clock.now()) return { ok: false, reason: 'expired' };
    if (found.account.status !== 'active') return { ok: false, reason: 'account_inactive' };
    return {
      ok: true,
      principal: { account: { ...found.account, roles: found.roles }, token: found.token, permissions: found.permissions },
    };
  }

  /** `check`, for routes: the caller, or a 401 that says nothing about why. */
  async authenticate(token: string): Promise<Principal> {
    const result = await this.check(token);
    if (!result.ok) throw new MciasError('unauthenticated', 'the bearer token is not valid');
    return result.principal;
  }
}
