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
import type { AuditEvent, AuditRecord } from '../domain/audit.ts';
import { KyselyAuditStore, appendToChain } from './audit.ts';
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
import type { TokenCheckCache } from './token-check-cache.ts';
import { KyselyTokenStore } from './tokens.ts';

/** Told of audit rows once their transaction has committed (the structured log line, SECURITY.md §30). */
export type AuditListener = (records: readonly AuditRecord[]) => void;

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
  readonly #listeners: AuditListener[];

  /**
   * `tokenCheckCache`: where the token check's read is remembered (SECURITY.md §51); the root store's only (a
   * transaction's store gets none: it reads its own writes). `pending`: inside a transaction, the audit events it
   * has written so far, appended to the chain at its end.
   */
  constructor(
    db: Executor,
    caps: DialectCapabilities,
    options: { readonly tokenCheckCache?: TokenCheckCache | undefined; readonly listeners?: AuditListener[]; readonly pending?: AuditEvent[] } = {},
  ) {
    const pending = options.pending;
    this.#db = db;
    this.#caps = caps;
    this.#listeners = options.listeners ?? [];
    this.accounts = new KyselyAccountStore(db);
    this.credentials = new KyselyCredentialStore(db);
    this.roles = new KyselyRoleStore(db);
    this.tokens = new KyselyTokenStore(db, options.tokenCheckCache);
    this.keys = new KyselyKeyStore(db);
    this.audit = new KyselyAuditStore(db, pending === undefined ? { outside: (e) => this.transaction((tx) => tx.audit.insert(e)) } : { pending });
    this.pgcreds = new KyselyPgCredentialStore(db);
    this.failures = new KyselyFailureCounterStore(db);
    this.registrations = new KyselyRegistrationStore(db);
    this.permissions = new KyselyPermissionStore(db);
    this.sealed = new KyselySealedValueStore(db, caps);
  }

  async transaction<T>(work: (tx: Store) => Promise<T>): Promise<T> {
    if (this.#db.isTransaction) return work(this);
    const pending: AuditEvent[] = [];
    let appended: AuditRecord[] = [];
    const result = await (this.#db as Kysely<DB>).transaction().execute(async (tx) => {
      const value = await work(new KyselyStore(tx, this.#caps, { listeners: this.#listeners, pending }));
      // Last, so the audit lock is the last one a transaction takes (no lock-order deadlock) and is held only to commit.
      appended = await appendToChain(tx, pending);
      return value;
    });
    // Only now: an event whose transaction rolled back never happened. A listener that fails (a log that cannot be
    // written) must not turn a committed change into an error for its caller: the row is the record.
    if (appended.length > 0) {
      for (const listener of this.#listeners) {
        try {
          listener(appended);
        } catch {
          // the committed rows stand; `mciassrv audit verify` and GET /v1/audit still show them
        }
      }
    }
    return result;
  }

  /** Calls `listener` with every batch of audit rows after its transaction commits. */
  onAuditCommitted(listener: AuditListener): void {
    this.#listeners.push(listener);
  }

  async lock(name: LockName): Promise<void> {
    // Outside a transaction the lock would end with its own statement and hold nothing back.
    if (!this.#db.isTransaction) throw new Error(`the ${name} lock is only held inside a transaction`);
    await lockRow(this.#db, name);
  }
}
