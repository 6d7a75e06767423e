import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { loadMasterKey } from '../config/files.ts';
import { readConfig, type Config, type PgAdminConnection } from '../config/load.ts';
import { isMciasError } from '../domain/errors.ts';
import { checkMasterKey } from '../domain/master-key.ts';
import { PostgresAdmin } from '../pgadmin/admin.ts';
import { readTlsCertificate, readTlsKey } from '../config/tls.ts';
import { openDatabase } from '../store/database.ts';

export interface CheckResult {
  /** Empty: ready to serve. */
  readonly problems: string[];
  /** What an operator should know that does not stop the server: each admin connection's role and warnings. */
  readonly notes: string[];
}

/**
 * Checks everything `serve` needs and reports every problem at once (no problems means ready to serve): the
 * settings, then, even when some settings are wrong, the master key, the TLS files, the database (and whether the
 * master key is the database's: the one it was sealed with, or rotated to) and each `[pg_admin.NAME]` connection
 * (connected to, its role's privileges reported; never its URL).
 */
export async function checkConfig(file: string, env: Readonly<Record<string, string | undefined>>, now = Date.now()): Promise<CheckResult> {
  const { config: valid, problems, draft } = readConfig({ file, env });
  const config = valid ?? draft;
  const notes: string[] = [];
  if (config === undefined) return { problems, notes };
  const found = [...problems];
  const attempt = async <T>(work: () => T | Promise<T>): Promise<T | undefined> => {
    try {
      return await work();
    } catch (error) {
      found.push((error as Error).message);
      return undefined;
    }
  };
  const masterKey = await attempt(() => loadMasterKey(config));
  const key = await attempt(() => readTlsKey(config.tls));
  const certificate = await attempt(() => readCertificate(config.tls, now));
  if (key !== undefined && certificate !== undefined) await attempt(() => checkKeyPair(config.tls, key, certificate));
  // With a broken storage setting there is nothing sensible to connect to; that problem is already reported.
  if (!problems.some((p) => p.startsWith('storage.'))) await attempt(() => checkDatabase(config.storage, masterKey));
  for (const entry of config.pgAdmin) {
    if (problems.some((p) => p.startsWith(`pg_admin.${entry.name}`))) continue;
    await attempt(async () => notes.push(...(await checkPgAdmin(entry))));
  }
  return { problems: found, notes };
}

/**
 * Connects with one admin entry and describes its role. Throws (a problem) when it cannot connect or the role
 * cannot change passwords; a superuser role or a connection without TLS works, so it is a warning, not a problem.
 */
async function checkPgAdmin(entry: PgAdminConnection): Promise<string[]> {
  let privileges;
  try {
    privileges = await new PostgresAdmin([entry]).privileges(entry.name);
  } catch (error) {
    // The adapter's messages name the entry, host and port, never the URL.
    if (isMciasError(error)) throw new Error(`${error.message} (${error.reason ?? error.code})`);
    throw error;
  }
  const { label, role, superuser, createRole, createDb, sslmode, serverVersion } = privileges;
  if (!superuser && !createRole) throw new Error(`${label}: role ${role} lacks CREATEROLE: it cannot change or create roles (docs/pg-admin.md)`);
  const yes = (flag: boolean) => (flag ? 'yes' : 'no');
  const version = `${Math.floor(serverVersion / 10000)}.${serverVersion % 10000}`;
  const notes = [`${label}: role ${role}, CREATEROLE ${yes(createRole || superuser)}, CREATEDB ${yes(createDb || superuser)}, sslmode ${sslmode}, PostgreSQL ${version}`];
  if (superuser) notes.push(`warning: ${label}: role ${role} is a superuser; a dedicated role with CREATEROLE is enough (docs/pg-admin.md)`);
  if (sslmode === 'disable') notes.push(`warning: ${label}: sslmode=disable: statements and verifiers cross the network in clear`);
  else if (sslmode !== 'verify-full') notes.push(`warning: ${label}: sslmode=${sslmode} does not check the server's host name; use verify-full with ca_file`);
  return notes;
}

function readCertificate(tls: Config['tls'], now: number): X509Certificate {
  const pem = readTlsCertificate(tls);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch {
    throw new Error(`TLS certificate file ${tls.certFile}: not a PEM certificate`);
  }
  if (Date.parse(certificate.validTo) < now) throw new Error(`TLS certificate ${tls.certFile} expired on ${certificate.validTo}`);
  return certificate;
}

function checkKeyPair(tls: Config['tls'], key: Buffer, certificate: X509Certificate): void {
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new Error(`TLS key file ${tls.keyFile}: not a PEM private key`);
  }
  if (!certificate.checkPrivateKey(privateKey)) throw new Error(`TLS key file ${tls.keyFile} does not belong to the certificate ${tls.certFile}`);
}

async function checkDatabase(storage: Config['storage'], masterKey: Buffer | undefined): Promise<void> {
  // A check only looks: it must not create an empty SQLite database where the real one is missing.
  if (storage.kind === 'sqlite' && storage.path !== ':memory:' && !existsSync(storage.path)) {
    throw new Error(`storage: no SQLite database at ${storage.path} (mciassrv init creates it)`);
  }
  const database = openDatabase(storage);
  try {
    try {
      await database.ping();
    } catch (error) {
      // Name the failure, not the connection string (it may hold a password): the driver's own error, which the store
      // carries as the cause of its `unavailable`.
      const cause = (isMciasError(error) && error.code === 'unavailable' ? error.cause : error) as NodeJS.ErrnoException;
      throw new Error(`storage: cannot reach the database: ${cause.code ?? cause.message}`);
    }
    // A database not migrated yet (no digest_keys) has nothing to check the key against until serve migrates it.
    const tables = await database.db.introspection.getTables();
    if (masterKey !== undefined && tables.some((t) => t.name === 'digest_keys')) await checkMasterKey(database.store, masterKey);
  } finally {
    await database.close();
  }
}
