import type { PgCredentialsRecord, PgRotationMode, PgSslMode } from '../domain/model.ts';
import type { PgCredentialStore, PgCredentialsSettings } from '../domain/ports.ts';
import type { Executor } from './executor.ts';

/** One row per service account in `pg_credentials` (migration 0007). */
export class KyselyPgCredentialStore implements PgCredentialStore {
  readonly #db: Executor;
  constructor(db: Executor) {
    this.#db = db;
  }

  async find(accountId: string): Promise<PgCredentialsRecord | undefined> {
    const r = await this.#db.selectFrom('pg_credentials').selectAll().where('account_id', '=', accountId).executeTakeFirst();
    return (
      r && {
        accountId: r.account_id,
        host: r.host,
        port: r.port,
        database: r.database,
        username: r.username,
        activeLogin: r.active_login,
        password: r.password,
        sslmode: r.sslmode as PgSslMode,
        caCert: r.ca_cert,
        mode: r.mode as PgRotationMode,
        admin: r.admin,
        rotateEvery: r.rotate_every,
        nextRotationAt: r.next_rotation_at,
        lastRotatedAt: r.last_rotated_at,
        lastRotationError: r.last_rotation_error,
        rotationFailures: r.rotation_failures,
        pendingLogin: r.pending_login,
        pendingPassword: r.pending_password,
        pendingSince: r.pending_since,
        createdAt: r.created_at,
        updatedAt: r.updated_at,
      }
    );
  }

  async put(s: PgCredentialsSettings, now: number): Promise<void> {
    const settings = {
      host: s.host,
      port: s.port,
      database: s.database,
      username: s.username,
      active_login: s.activeLogin,
      password: s.password,
      sslmode: s.sslmode,
      ca_cert: s.caCert,
      mode: s.mode,
      admin: s.admin,
      rotate_every: s.rotateEvery,
      next_rotation_at: s.nextRotationAt,
      last_rotation_error: null,
      rotation_failures: 0,
      pending_login: null,
      pending_password: null,
      pending_since: null,
      updated_at: now,
    };
    await this.#db
      .insertInto('pg_credentials')
      .values({ account_id: s.accountId, created_at: now, ...settings })
      .onConflict((oc) => oc.column('account_id').doUpdateSet(settings))
      .execute();
  }

  async delete(accountId: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('pg_credentials').where('account_id', '=', accountId).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async beginRotation(accountId: string, login: string, sealedPassword: Uint8Array, now: number): Promise<void> {
    await this.#db
      .updateTable('pg_credentials')
      .set({ pending_login: login, pending_password: sealedPassword, pending_since: now, updated_at: now })
      .where('account_id', '=', accountId)
      .execute();
  }

  async completeRotation(accountId: string, now: number, nextRotationAt: number | null): Promise<void> {
    await this.#db
      .updateTable('pg_credentials')
      .set((eb) => ({
        // Guarded by the where clause below: both are set whenever an intent exists.
        active_login: eb.fn.coalesce('pending_login', 'active_login'),
        password: eb.fn.coalesce('pending_password', 'password'),
        pending_login: null,
        pending_password: null,
        pending_since: null,
        last_rotated_at: now,
        last_rotation_error: null,
        rotation_failures: 0,
        next_rotation_at: nextRotationAt,
        updated_at: now,
      }))
      .where('account_id', '=', accountId)
      .where('pending_password', 'is not', null)
      .where('pending_login', 'is not', null)
      .execute();
  }

  async failRotation(accountId: string, error: string, now: number, retryAt: number | null): Promise<void> {
    await this.#db
      .updateTable('pg_credentials')
      .set((eb) => ({
        pending_login: null,
        pending_password: null,
        pending_since: null,
        last_rotation_error: error,
        rotation_failures: eb('rotation_failures', '+', 1),
        next_rotation_at: retryAt,
        updated_at: now,
      }))
      .where('account_id', '=', accountId)
      .execute();
  }

  async recordRotationError(accountId: string, error: string, now: number, retryAt: number | null): Promise<void> {
    await this.#db
      .updateTable('pg_credentials')
      .set((eb) => ({
        last_rotation_error: error,
        rotation_failures: eb('rotation_failures', '+', 1),
        next_rotation_at: retryAt,
        updated_at: now,
      }))
      .where('account_id', '=', accountId)
      .execute();
  }

  async listDue(now: number): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('pg_credentials')
      .select('account_id')
      .where((eb) => eb.or([eb('pending_password', 'is not', null), eb('next_rotation_at', '<=', now)]))
      .orderBy('account_id')
      .execute();
    return rows.map((r) => r.account_id);
  }

  async claimLease(accountId: string, holder: string, now: number, until: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('pg_credentials')
      .set({ lease_holder: holder, lease_until: until })
      .where('account_id', '=', accountId)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now), eb('lease_holder', '=', holder)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async renewLease(accountId: string, holder: string, until: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('pg_credentials')
      .set({ lease_until: until })
      .where('account_id', '=', accountId)
      .where('lease_holder', '=', holder)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async releaseLease(accountId: string, holder: string): Promise<void> {
    await this.#db
      .updateTable('pg_credentials')
      .set({ lease_holder: null, lease_until: null })
      .where('account_id', '=', accountId)
      .where('lease_holder', '=', holder)
      .execute();
  }
}
