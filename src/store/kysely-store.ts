import type { CompiledQuery, Kysely, Selectable, Transaction } from 'kysely';
import type { AuditEvent } from '../domain/audit.ts';
import type { AccountRecord, PermissionGrant, Role, SigningKeyRecord, TokenInfo, TokenRecord } from '../domain/model.ts';
import type { AccountStore, AuditStore, KeyStore, RecoveryCodeStore, RoleStore, Store, TokenStore, TokenWithAccount, TotpState } from '../domain/ports.ts';
import type { AccountsTable, DB, TokensTable } from './schema.ts';

type Executor = Kysely<DB> | Transaction<DB>;

/** The domain's Store over Kysely; the same code serves SQLite and PostgreSQL. */
export class KyselyStore implements Store {
  readonly accounts: AccountStore;
  readonly roles: RoleStore;
  readonly tokens: TokenStore;
  readonly keys: KeyStore;
  readonly audit: AuditStore;
  readonly recoveryCodes: RecoveryCodeStore;
  readonly #db: Executor;

  constructor(db: Executor) {
    this.#db = db;
    this.accounts = new KyselyAccountStore(db);
    this.roles = new KyselyRoleStore(db);
    this.tokens = new KyselyTokenStore(db);
    this.keys = new KyselyKeyStore(db);
    this.audit = new KyselyAuditStore(db);
    this.recoveryCodes = new KyselyRecoveryCodeStore(db);
  }

  transaction<T>(work: (tx: Store) => Promise<T>): Promise<T> {
    if (this.#db.isTransaction) return work(this);
    return (this.#db as Kysely<DB>).transaction().execute((tx) => work(new KyselyStore(tx)));
  }
}

const ACCOUNT_COLUMNS = [
  'accounts.id',
  'accounts.username',
  'accounts.kind',
  'accounts.status',
  'accounts.password_hash',
  'accounts.totp_confirmed_at',
  'accounts.password_change_required',
  'accounts.created_at',
  'accounts.updated_at',
] as const;

type AccountRow = Pick<
  Selectable<AccountsTable>,
  'id' | 'username' | 'kind' | 'status' | 'password_hash' | 'totp_confirmed_at' | 'password_change_required' | 'created_at' | 'updated_at'
>;

function toAccount(row: AccountRow): AccountRecord {
  return {
    id: row.id,
    username: row.username,
    kind: row.kind,
    status: row.status,
    passwordHash: row.password_hash,
    totpConfirmedAt: row.totp_confirmed_at,
    passwordChangeRequired: Number(row.password_change_required) === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

class KyselyAccountStore implements AccountStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async findById(id: string): Promise<AccountRecord | undefined> {
    const row = await this.#db.selectFrom('accounts').select(ACCOUNT_COLUMNS).where('id', '=', id).executeTakeFirst();
    return row && toAccount(row);
  }

  async findByUsername(username: string): Promise<AccountRecord | undefined> {
    const row = await this.#db.selectFrom('accounts').select(ACCOUNT_COLUMNS).where('username', '=', username).executeTakeFirst();
    return row && toAccount(row);
  }

  async list(): Promise<AccountRecord[]> {
    const rows = await this.#db.selectFrom('accounts').select(ACCOUNT_COLUMNS).orderBy('username').execute();
    return rows.map(toAccount);
  }

  async count(): Promise<number> {
    const row = await this.#db.selectFrom('accounts').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async insert(a: AccountRecord): Promise<void> {
    await this.#db
      .insertInto('accounts')
      .values({
        id: a.id,
        username: a.username,
        kind: a.kind,
        status: a.status,
        password_hash: a.passwordHash,
        totp_secret: null,
        totp_confirmed_at: a.totpConfirmedAt,
        totp_last_step: null,
        password_change_required: a.passwordChangeRequired ? 1 : 0,
        created_at: a.createdAt,
        updated_at: a.updatedAt,
      })
      .execute();
  }

  async updateStatus(id: string, status: AccountRecord['status'], now: number): Promise<void> {
    await this.#db.updateTable('accounts').set({ status, updated_at: now }).where('id', '=', id).execute();
  }

  async updatePasswordHash(id: string, hash: string, now: number): Promise<void> {
    await this.#db.updateTable('accounts').set({ password_hash: hash, updated_at: now }).where('id', '=', id).execute();
  }

  async setPasswordChangeRequired(id: string, required: boolean, now: number): Promise<void> {
    await this.#db
      .updateTable('accounts')
      .set({ password_change_required: required ? 1 : 0, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('accounts').where('id', '=', id).execute();
  }

  async lock(id: string): Promise<void> {
    // A no-op write: PostgreSQL takes the row lock, SQLite the database write lock; both last until commit.
    await this.#db.updateTable('accounts').set((eb) => ({ updated_at: eb.ref('updated_at') })).where('id', '=', id).execute();
  }

  async findTotp(id: string): Promise<TotpState | undefined> {
    const row = await this.#db
      .selectFrom('accounts')
      .select(['totp_secret', 'totp_confirmed_at', 'totp_last_step'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row && { secret: row.totp_secret, confirmedAt: row.totp_confirmed_at, lastStep: row.totp_last_step };
  }

  async setPendingTotp(id: string, sealedSecret: Uint8Array, now: number): Promise<void> {
    await this.#db
      .updateTable('accounts')
      .set({ totp_secret: sealedSecret, totp_confirmed_at: null, totp_last_step: null, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async confirmTotp(id: string, step: number, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('accounts')
      .set({ totp_confirmed_at: now, totp_last_step: step, updated_at: now })
      .where('id', '=', id)
      .where('totp_secret', 'is not', null)
      .where('totp_confirmed_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async acceptTotpStep(id: string, step: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('accounts')
      .set({ totp_last_step: step })
      .where('id', '=', id)
      .where('totp_confirmed_at', 'is not', null)
      .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async clearTotp(id: string, now: number): Promise<void> {
    await this.#db
      .updateTable('accounts')
      .set({ totp_secret: null, totp_confirmed_at: null, totp_last_step: null, updated_at: now })
      .where('id', '=', id)
      .execute();
  }
}

class KyselyRecoveryCodeStore implements RecoveryCodeStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async replace(accountId: string, digests: readonly string[], now: number): Promise<void> {
    await this.deleteAll(accountId);
    if (digests.length === 0) return;
    await this.#db
      .insertInto('recovery_codes')
      .values(digests.map((code_hash) => ({ account_id: accountId, code_hash, created_at: now, used_at: null })))
      .execute();
  }

  async use(accountId: string, digest: string, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('recovery_codes')
      .set({ used_at: now })
      .where('account_id', '=', accountId)
      .where('code_hash', '=', digest)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async remaining(accountId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('recovery_codes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('account_id', '=', accountId)
      .where('used_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async deleteAll(accountId: string): Promise<void> {
    await this.#db.deleteFrom('recovery_codes').where('account_id', '=', accountId).execute();
  }
}

class KyselyRoleStore implements RoleStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async list(): Promise<Role[]> {
    const rows = await this.#db
      .selectFrom('roles')
      .leftJoin('role_permissions', 'role_permissions.role_name', 'roles.name')
      .leftJoin('permissions', 'permissions.id', 'role_permissions.permission_id')
      .select(['roles.name', 'permissions.id', 'permissions.resource', 'permissions.action'])
      .orderBy('roles.name')
      .orderBy('permissions.resource')
      .orderBy('permissions.action')
      .execute();
    const roles = new Map<string, Role['permissions'][number][]>();
    for (const row of rows) {
      const permissions = roles.get(row.name) ?? [];
      if (row.id !== null && row.resource !== null && row.action !== null) {
        permissions.push({ id: row.id, resource: row.resource, action: row.action });
      }
      roles.set(row.name, permissions);
    }
    return [...roles].map(([name, permissions]) => ({ name, permissions }));
  }

  async exists(name: string): Promise<boolean> {
    return (await this.#db.selectFrom('roles').select('name').where('name', '=', name).executeTakeFirst()) !== undefined;
  }

  async insert(name: string, now: number): Promise<void> {
    await this.#db.insertInto('roles').values({ name, created_at: now }).execute();
  }

  async delete(name: string): Promise<void> {
    await this.#db.deleteFrom('roles').where('name', '=', name).execute();
  }

  async rolesOf(accountIds: readonly string[]): Promise<Map<string, string[]>> {
    const result = new Map<string, string[]>(accountIds.map((id) => [id, []]));
    if (accountIds.length === 0) return result;
    const rows = await this.#db
      .selectFrom('account_roles')
      .select(['account_id', 'role_name'])
      .where('account_id', 'in', accountIds)
      .orderBy('role_name')
      .execute();
    for (const row of rows) result.get(row.account_id)?.push(row.role_name);
    return result;
  }

  async grant(accountId: string, role: string, now: number): Promise<void> {
    await this.#db
      .insertInto('account_roles')
      .values({ account_id: accountId, role_name: role, granted_at: now })
      .onConflict((oc) => oc.columns(['account_id', 'role_name']).doNothing())
      .execute();
  }

  async revoke(accountId: string, role: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('account_roles')
      .where('account_id', '=', accountId)
      .where('role_name', '=', role)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async lock(name: string): Promise<void> {
    // A no-op write: PostgreSQL takes the row lock, SQLite the database write lock; both last until commit.
    await this.#db
      .updateTable('roles')
      .set((eb) => ({ created_at: eb.ref('created_at') }))
      .where('name', '=', name)
      .execute();
  }
}

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

class KyselyTokenStore implements TokenStore {
  readonly #db: Executor;
  #findWithAccount: CompiledQuery<FindWithAccountRow> | undefined;
  constructor(db: Executor) {
    this.#db = db;
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
   * Compiled once: building the SQL costs more than running it on SQLite.
   */
  async findWithAccount(jti: string): Promise<TokenWithAccount | undefined> {
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

class KyselyKeyStore implements KeyStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async list(): Promise<SigningKeyRecord[]> {
    const rows = await this.#db.selectFrom('signing_keys').selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({
      kid: r.kid,
      algorithm: r.algorithm,
      publicJwk: r.public_jwk,
      privateKey: r.private_key,
      createdAt: r.created_at,
      retiredAt: r.retired_at,
    }));
  }

  async retireAll(now: number): Promise<string[]> {
    const rows = await this.#db.updateTable('signing_keys').set({ retired_at: now }).where('retired_at', 'is', null).returning('kid').execute();
    return rows.map((r) => r.kid);
  }

  async delete(kid: string): Promise<void> {
    await this.#db.deleteFrom('signing_keys').where('kid', '=', kid).execute();
  }

  async insert(k: SigningKeyRecord): Promise<void> {
    await this.#db
      .insertInto('signing_keys')
      .values({
        kid: k.kid,
        algorithm: k.algorithm,
        public_jwk: k.publicJwk,
        private_key: k.privateKey,
        created_at: k.createdAt,
        retired_at: k.retiredAt,
      })
      .execute();
  }
}

class KyselyAuditStore implements AuditStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async insert(e: AuditEvent): Promise<void> {
    await this.#db
      .insertInto('audit_events')
      .values({
        occurred_at: e.occurredAt,
        type: e.type,
        outcome: e.outcome,
        actor_id: e.actor?.id ?? null,
        actor_username: e.actor?.username ?? null,
        subject_id: e.subject?.id ?? null,
        subject_username: e.subject?.username ?? null,
        ip: e.ip ?? null,
        user_agent: e.userAgent ?? null,
        request_id: e.requestId ?? null,
        details: JSON.stringify(e.details ?? {}),
      })
      .execute();
  }

  async exists(subjectId: string, type: AuditEvent['type']): Promise<boolean> {
    const row = await this.#db
      .selectFrom('audit_events')
      .select('seq')
      .where('subject_id', '=', subjectId)
      .where('type', '=', type)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }
}
