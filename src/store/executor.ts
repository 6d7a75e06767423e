import type { Kysely, Transaction } from 'kysely';
import type { DB } from './schema.ts';

/** What every store runs its queries on: the database, or the transaction it was opened in. */
export type Executor = Kysely<DB> | Transaction<DB>;
