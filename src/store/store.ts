import type { Kysely } from 'kysely';
import type {
  AccountStore,
  AuditStore,
  CredentialStore,
  FailureCounterStore,
  KeyStore,
  LockName,
  PermissionStore,
  PgCredentialStore,
  RegistrationStore,
  RoleStore,
  SealedValueStore,
  Store,
  TokenStore,
} from '../domain/ports.ts';
import { KyselyAccountStore } from './accounts.ts';
import { KyselyAuditStore } from './audit.ts';
import { KyselyCredentialStore } from './credentials.ts';
import type { DialectCapabilities } from './dialects.ts';
import type { Executor } from './executor.ts';
import { lockRow } from './locks.ts';
import { KyselyFailureCounterStore } from './login-failures.ts';
import { KyselyPermissionStore } from './permissions.ts';
import { KyselyPgCredentialStore } from './pg-credentials.ts';
import { KyselyRegistrationStore } from './registrations.ts';
import { KyselyRoleStore } from './roles.ts';
import { KyselySealedValueStore } from './sealed-columns.ts';
import type { DB } from './schema.ts';
import { KyselyKeyStore } from './signing-keys.ts';
import { KyselyTokenStore } from './tokens.ts';

/**
 * The domain's Store over Kysely; the same code serves SQLite and PostgreSQL. One store per record kind, all over
 * one executor: the database, or inside `transaction` the transaction, so every store's writes commit together.
 */
export class KyselyStore implements Store {
  readonly accounts: AccountStore;
  readonly credentials: CredentialStore;
  readonly roles: RoleStore;
  readonly tokens: TokenStore;
  readonly keys: KeyStore;
  readonly audit: AuditStore;
  readonly pgcreds: PgCredentialStore;
  readonly failures: FailureCounterStore;
  readonly registrations: RegistrationStore;
  readonly permissions: PermissionStore;
  readonly sealed: SealedValueStore;
  readonly #db: Executor;
  readonly #caps: DialectCapabilities;

  constructor(db: Executor, caps: DialectCapabilities) {
    this.#db = db;
    this.#caps = caps;
    this.accounts = new KyselyAccountStore(db);
    this.credentials = new KyselyCredentialStore(db);
    this.roles = new KyselyRoleStore(db);
    this.tokens = new KyselyTokenStore(db);
    this.keys = new KyselyKeyStore(db);
    this.audit = new KyselyAuditStore(db);
    this.pgcreds = new KyselyPgCredentialStore(db);
    this.failures = new KyselyFailureCounterStore(db);
    this.registrations = new KyselyRegistrationStore(db);
    this.permissions = new KyselyPermissionStore(db);
    this.sealed = new KyselySealedValueStore(db, caps);
  }

  transaction<T>(work: (tx: Store) => Promise<T>): Promise<T> {
    if (this.#db.isTransaction) return work(this);
    return (this.#db as Kysely<DB>).transaction().execute((tx) => work(new KyselyStore(tx, this.#caps)));
  }

  async lock(name: LockName): Promise<void> {
    // Outside a transaction the lock would end with its own statement and hold nothing back.
    if (!this.#db.isTransaction) throw new Error(`the ${name} lock is only held inside a transaction`);
    await lockRow(this.#db, name);
  }
}
