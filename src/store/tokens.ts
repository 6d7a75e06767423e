import type { CompiledQuery, Selectable } from 'kysely';
import type { PermissionGrant, TokenInfo, TokenRecord } from '../domain/model.ts';
import type { TokenStore, TokenWithAccount } from '../domain/ports.ts';
import { ACCOUNT_COLUMNS, toAccount, type AccountRow } from './accounts.ts';
import type { Executor } from './executor.ts';
import type { TokensTable } from './schema.ts';
import type { TokenCheckCache } from './token-check-cache.ts';

function toToken(row: Selectable<TokensTable>): TokenRecord {
  return {
    jti: row.jti,
    accountId: row.account_id,
    kind: row.kind,
    kid: row.kid,
    issuedAt: row.issued_at,
    expiresAt: row.expires_at,
    sessionStartedAt: row.session_started_at,
    issuedBy: row.issued_by,
    revokedAt: row.revoked_at,
  };
}

type FindWithAccountRow = AccountRow &
  Omit<Selectable<TokensTable>, 'kind'> & {
    token_kind: TokensTable['kind'];
    role_name: string | null;
    resource: string | null;
    action: string | null;
  };

/** Stands for the token id in the compiled lookup; replaced by the real id at each execution. */
const JTI_PLACEHOLDER = '\u0000jti';

function toTokenInfo(row: Selectable<TokensTable> & { username: string; issued_by_username: string | null }): TokenInfo {
  return { ...toToken(row), username: row.username, issuedByUsername: row.issued_by_username };
}

export class KyselyTokenStore implements TokenStore {
  readonly #db: Executor;
  readonly #cache: TokenCheckCache | undefined;
  #findWithAccount: CompiledQuery<FindWithAccountRow> | undefined;
  /** `cache`: remember `findWithAccount` reads there (SECURITY.md §51); never inside a transaction. */
  constructor(db: Executor, cache?: TokenCheckCache) {
    this.#db = db;
    this.#cache = cache;
  }

  async insert(t: TokenRecord): Promise<void> {
    await this.#db
      .insertInto('tokens')
      .values({
        jti: t.jti,
        account_id: t.accountId,
        kind: t.kind,
        kid: t.kid,
        issued_at: t.issuedAt,
        expires_at: t.expiresAt,
        session_started_at: t.sessionStartedAt,
        issued_by: t.issuedBy,
        revoked_at: t.revokedAt,
        revoked_reason: null,
      })
      .execute();
  }

  /**
   * The hot path of every authenticated request and every validation: one query by primary key, joined to the
   * account, its roles and their permissions, and to the signing key (a token whose key was deleted finds nothing).
   * Compiled once: building the SQL costs more than running it on SQLite. With a cache, a read of the last moment
   * may answer instead (SECURITY.md §51): emptied by every write this instance commits, at most its TTL old otherwise.
   */
  findWithAccount(jti: string): Promise<TokenWithAccount | undefined> {
    return this.#cache === undefined ? this.#readWithAccount(jti) : this.#cache.read(jti, (id) => this.#readWithAccount(id));
  }

  async #readWithAccount(jti: string): Promise<TokenWithAccount | undefined> {
    this.#findWithAccount ??= this.#db
      .selectFrom('tokens')
      .innerJoin('accounts', 'accounts.id', 'tokens.account_id')
      .innerJoin('signing_keys', 'signing_keys.kid', 'tokens.kid')
      .leftJoin('account_roles', 'account_roles.account_id', 'accounts.id')
      .leftJoin('role_permissions', 'role_permissions.role_name', 'account_roles.role_name')
      .leftJoin('permissions', 'permissions.id', 'role_permissions.permission_id')
      .select(ACCOUNT_COLUMNS)
      .select([
        'tokens.jti',
        'tokens.account_id',
        'tokens.kind as token_kind',
        'tokens.kid',
        'tokens.issued_at',
        'tokens.expires_at',
        'tokens.session_started_at',
        'tokens.issued_by',
        'tokens.revoked_at',
        'tokens.revoked_reason',
        'account_roles.role_name',
        'permissions.resource',
        'permissions.action',
      ])
      .where('tokens.jti', '=', JTI_PLACEHOLDER)
      .compile();
    const compiled = this.#findWithAccount;
    const { rows } = await this.#db.executeQuery<FindWithAccountRow>({
      ...compiled,
      parameters: compiled.parameters.map((p) => (p === JTI_PLACEHOLDER ? jti : p)),
    });
    const first = rows[0];
    if (first === undefined) return undefined;
    const roles = new Set<string>();
    const permissions = new Map<string, PermissionGrant>();
    for (const row of rows) {
      if (row.role_name !== null) roles.add(row.role_name);
      if (row.resource !== null && row.action !== null) {
        permissions.set(JSON.stringify([row.resource, row.action]), { resource: row.resource, action: row.action });
      }
    }
    return {
      token: toToken({ ...first, kind: first.token_kind }),
      account: toAccount(first),
      roles: [...roles].sort(),
      permissions: [...permissions.values()].sort((a, b) => a.resource.localeCompare(b.resource) || a.action.localeCompare(b.action)),
    };
  }

  async find(jti: string): Promise<TokenInfo | undefined> {
    const row = await this.#infos().where('tokens.jti', '=', jti).executeTakeFirst();
    return row && toTokenInfo(row);
  }

  async listLive(accountId: string, now: number): Promise<TokenInfo[]> {
    const rows = await this.#infos()
      .where('tokens.account_id', '=', accountId)
      .where('tokens.revoked_at', 'is', null)
      .where('tokens.expires_at', '>', now)
      .orderBy('tokens.issued_at')
      .orderBy('tokens.jti')
      .execute();
    return rows.map(toTokenInfo);
  }

  async keyInUse(kid: string, now: number): Promise<boolean> {
    const row = await this.#db
      .selectFrom('tokens')
      .select('jti')
      .where('kid', '=', kid)
      .where('expires_at', '>', now)
      .where('revoked_at', 'is', null)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  #infos() {
    return this.#db
      .selectFrom('tokens')
      .innerJoin('accounts as owner', 'owner.id', 'tokens.account_id')
      .leftJoin('accounts as issuer', 'issuer.id', 'tokens.issued_by')
      .selectAll('tokens')
      .select(['owner.username as username', 'issuer.username as issued_by_username']);
  }

  async revoke(jti: string, now: number, reason: string): Promise<boolean> {
    const result = await this.#db
      .updateTable('tokens')
      .set({ revoked_at: now, revoked_reason: reason })
      .where('jti', '=', jti)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async revokeAllOf(accountId: string, now: number, reason: string, exceptJti?: string): Promise<number> {
    let query = this.#db
      .updateTable('tokens')
      .set({ revoked_at: now, revoked_reason: reason })
      .where('account_id', '=', accountId)
      .where('revoked_at', 'is', null);
    if (exceptJti !== undefined) query = query.where('jti', '!=', exceptJti);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }
}
