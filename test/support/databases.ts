import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import type { StorageConfig } from '../../src/config/load.ts';
import { openMigratedDatabase, type Database } from '../../src/store/database.ts';
import { required } from './fixture.ts';

/**
 * Every storage and domain test runs once per dialect in this list; MCIAS_TEST_DIALECTS narrows it
 * (e.g. `MCIAS_TEST_DIALECTS=sqlite npm test`). PostgreSQL is the server on 127.0.0.1:5432 unless
 * MCIAS_TEST_PG_URL names another.
 */
export const ALL_DIALECTS = ['sqlite', 'postgres'] as const;
export type TestDialect = (typeof ALL_DIALECTS)[number];

export const DIALECTS: readonly TestDialect[] = (process.env['MCIAS_TEST_DIALECTS'] ?? ALL_DIALECTS.join(','))
  .split(',')
  .map((d) => d.trim())
  .filter((d): d is TestDialect => (ALL_DIALECTS as readonly string[]).includes(d));

export const PG_ADMIN_URL = process.env['MCIAS_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly dialect: TestDialect;
  readonly storage: StorageConfig;
  /** A connection URL (PostgreSQL) or file path (SQLite) for tests that look at the raw data. */
  readonly location: string;
  drop(): Promise<void>;
}

/** A fresh, empty database of the given dialect, for one test file or test. */
/** Runs one statement as the superuser of the local PostgreSQL, on a connection of its own. */
export async function asSuperuser(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

export async function createTestDatabase(dialect: TestDialect): Promise<TestDatabase> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcias-test-'));
    const file = path.join(dir, 'mcias.db');
    return {
      dialect,
      location: file,
      storage: { kind: 'sqlite', path: file, busyTimeoutMs: 5_000 },
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const name = `mcias_test_${randomBytes(6).toString('hex')}`;
  await asSuperuser(`create database ${name}`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    dialect,
    location: url.toString(),
    storage: { kind: 'postgres', url: url.toString(), caFile: undefined, poolSize: 5 },
    drop: () => asSuperuser(`drop database if exists ${name} with (force)`),
  };
}

/** For a describe block: a fresh database of the dialect, migrated and open from `before` to `after`. */
export function useMigratedDatabase(dialect: TestDialect): { readonly testDb: TestDatabase; readonly database: Database } {
  let testDb: TestDatabase | undefined;
  let database: Database | undefined;
  before(async () => {
    testDb = await createTestDatabase(dialect);
    database = await openMigratedDatabase(testDb.storage);
  });
  after(async () => {
    await database?.close();
    await testDb?.drop();
  });
  return {
    get testDb() {
      return required(testDb, 'database', 'test database');
    },
    get database() {
      return required(database, 'database', 'open database');
    },
  };
}
