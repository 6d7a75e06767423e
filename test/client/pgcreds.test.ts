import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import pg from 'pg';
import { MciasClient, pgClientConfig, type NewPgCredentials, type PgClientConfig, type PgCredentialsWithPassword } from '@mcias/client';
import { apiError, useClientFixture } from '../support/client.ts';
import { PG_CLUSTER_SKIP, usePgCluster } from '../support/pg-cluster.ts';
import { useLocalLoginRole } from '../support/pgcreds.ts';

/**
 * The SDK's pgcreds(): what a service calls to get its database credentials, and proof that what it returns really
 * connects with node-postgres, with each sslmode meaning what libpq means by it (docs/pgcreds.md).
 */

const PASSWORD = `it's a p@ss:word/with%20 spaces ${randomBytes(4).toString('hex')}`;

/** Connects with the configuration; answers who the server says we are and whether the connection is TLS. */
async function whoAmI(config: PgClientConfig): Promise<{ user: string; ssl: boolean }> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ user: string; ssl: boolean }>('select current_user as user, ssl from pg_stat_ssl where pid = pg_backend_pid()');
    return rows[0] as { user: string; ssl: boolean };
  } finally {
    await client.end();
  }
}

/** The SQLSTATE or Node error code of a failed connection. */
async function connectError(config: PgClientConfig): Promise<string> {
  const error = await whoAmI(config).then(
    () => assert.fail('the connection was expected to fail'),
    (e: unknown) => e as { code?: string },
  );
  return String(error.code);
}

describe('pgClientConfig: each sslmode as node-postgres options', () => {
  const base: PgCredentialsWithPassword = {
    host: 'db.example',
    port: 5433,
    database: 'wiki',
    username: 'wiki_a',
    group_role: 'wiki',
    password: PASSWORD,
    sslmode: 'verify-full',
    ca_cert: 'PEM',
    mode: 'alternating',
    admin: null,
    rotate_every: null,
    last_rotated_at: null,
    next_rotation_at: null,
    last_rotation_error: null,
    rotation_pending: false,
  };

  test('connection fields: the login to use is the active one', () => {
    const { ssl: _ssl, ...rest } = pgClientConfig(base);
    assert.deepEqual(rest, { host: 'db.example', port: 5433, database: 'wiki', user: 'wiki_a', password: PASSWORD });
  });

  test('disable: no TLS; require: TLS unverified; verify-ca: chain only; verify-full: chain and name', () => {
    assert.equal(pgClientConfig({ ...base, sslmode: 'disable', ca_cert: null }).ssl, false);
    assert.deepEqual(pgClientConfig({ ...base, sslmode: 'require', ca_cert: null }).ssl, { rejectUnauthorized: false });
    const verifyCa = pgClientConfig({ ...base, sslmode: 'verify-ca' }).ssl;
    assert.ok(verifyCa !== false && verifyCa.rejectUnauthorized === true && verifyCa.ca === 'PEM');
    assert.equal(verifyCa.checkServerIdentity?.('db.example', {}), undefined);
    assert.deepEqual(pgClientConfig({ ...base, sslmode: 'verify-full' }).ssl, { rejectUnauthorized: true, ca: 'PEM' });
    // Without a CA certificate, verification uses Node's roots (no `ca` key at all).
    assert.deepEqual(pgClientConfig({ ...base, sslmode: 'verify-full', ca_cert: null }).ssl, { rejectUnauthorized: true });
  });
});

describe('MciasClient.pgcreds against a real mciassrv and real PostgreSQL', () => {
  const fx = useClientFixture();
  let service: MciasClient;
  let other: MciasClient;
  const role = `mcias_sdk_${randomBytes(4).toString('hex')}`;
  // The local server trusts every connection, so the password is not checked here (the cluster below checks it).
  useLocalLoginRole(role, PASSWORD);

  before(async () => {
    for (const name of ['wiki', 'billing']) await fx.admin.createAccount({ username: name, kind: 'system' });
    service = fx.anonymous.withToken((await fx.admin.issueServiceToken('wiki')).token);
    other = fx.anonymous.withToken((await fx.admin.issueServiceToken('billing')).token);
  });

  test("the service's own token gets a configuration that connects as the stored role", async () => {
    await fx.admin.setPgCredentials('wiki', { host: '127.0.0.1', port: 5432, database: 'postgres', username: role, password: PASSWORD, sslmode: 'disable' });
    const config = await service.pgcreds('wiki');
    assert.deepEqual(config, { host: '127.0.0.1', port: 5432, database: 'postgres', user: role, password: PASSWORD, ssl: false });
    assert.deepEqual(await whoAmI(config), { user: role, ssl: false });
  });

  test("another service's token, and no token, are refused", async () => {
    await apiError(other.pgcreds('wiki'), 403, 'forbidden');
    await apiError(fx.anonymous.pgcreds('wiki'), 401, 'unauthenticated');
  });

  test('setPgCredentials answers without the password; deletePgCredentials forgets them', async () => {
    const stored = await fx.admin.setPgCredentials('billing', { host: 'db.example', database: 'billing', username: 'billing', password: PASSWORD });
    assert.equal((stored as unknown as Record<string, unknown>)['password'], undefined);
    assert.equal(stored.sslmode, 'require');
    assert.equal((await other.getPgCredentials('billing')).password, PASSWORD);
    await fx.admin.deletePgCredentials('billing');
    await apiError(other.pgcreds('billing'), 404, 'not_found');
  });

  describe('against a scram-sha-256 cluster serving TLS (the password and the certificate checks are real)', { skip: PG_CLUSTER_SKIP }, () => {
    const cluster = usePgCluster({ tls: true });
    const login = `mcias_sdk_tls_${randomBytes(4).toString('hex')}`;
    let ca: string;
    let otherCa: string;
    const store = (change: Partial<NewPgCredentials>) =>
      fx.admin.setPgCredentials('wiki', {
        host: '127.0.0.1',
        port: cluster().port,
        database: 'postgres',
        username: login,
        password: PASSWORD,
        ...change,
      });

    before(async () => {
      await cluster().query(`create role ${login} login password '${PASSWORD.replaceAll("'", "''")}'`);
      const tls = cluster().tls;
      assert.ok(tls !== undefined);
      ca = readFileSync(tls.caFile, 'utf8');
      otherCa = readFileSync(tls.otherCaFile, 'utf8');
    });

    test('verify-full with the CA and the name on the certificate connects over TLS', async () => {
      await store({ host: 'localhost', ca_cert: ca });
      const config = await service.pgcreds('wiki');
      assert.deepEqual(await whoAmI(config), { user: login, ssl: true });
    });

    test('verify-full refuses a name the certificate does not hold, and a CA that did not sign it', async () => {
      await store({ host: '127.0.0.1', ca_cert: ca });
      assert.equal(await connectError(await service.pgcreds('wiki')), 'ERR_TLS_CERT_ALTNAME_INVALID');
      await store({ host: 'localhost', ca_cert: otherCa });
      assert.match(await connectError(await service.pgcreds('wiki')), /CERT|SIGNATURE|ISSUER|SELF_SIGNED/);
    });

    test('verify-ca checks the chain but not the name', async () => {
      await store({ host: '127.0.0.1', sslmode: 'verify-ca', ca_cert: ca });
      assert.deepEqual(await whoAmI(await service.pgcreds('wiki')), { user: login, ssl: true });
      await store({ host: '127.0.0.1', sslmode: 'verify-ca', ca_cert: otherCa });
      assert.match(await connectError(await service.pgcreds('wiki')), /CERT|SIGNATURE|ISSUER|SELF_SIGNED/);
    });

    test('require encrypts without verifying; disable does not encrypt', async () => {
      await store({ sslmode: 'require' });
      assert.deepEqual(await whoAmI(await service.pgcreds('wiki')), { user: login, ssl: true });
      await store({ sslmode: 'disable' });
      assert.deepEqual(await whoAmI(await service.pgcreds('wiki')), { user: login, ssl: false });
    });

    test('the stored password is the one that logs in: a wrong one is refused by the server', async () => {
      await store({ sslmode: 'require', password: `${PASSWORD}x` });
      assert.equal(await connectError(await service.pgcreds('wiki')), '28P01');
    });
  });
});
