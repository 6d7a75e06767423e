import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { generateSelfSignedCertificate } from '../../src/cli/certificate.ts';
import { assertAuditHasNoSecrets, auditRows, lastAuditSeq } from '../support/audit.ts';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { assertDatabaseUnchanged, assertProblem, issueToken, snapshotDatabase } from '../support/inspect.ts';
import { loggingApp } from '../support/log-capture.ts';
import { PG_CREDENTIALS_BODY, storePgCredentials } from '../support/pgcreds.ts';

/**
 * Services' PostgreSQL credentials over HTTP: who may read them (SECURITY.md §45), that a refusal tells nothing,
 * that bad input changes nothing (§34), that the password is sealed to its row (§23) and reaches neither the audit
 * trail (§30), the log (§19) nor the database in clear.
 */

const SECRET = PG_CREDENTIALS_BODY.password;
const OTHER_SECRET = 'the billing service\'s own pg password';
const DAY = 86_400_000;

for (const dialect of DIALECTS) {
  describe(`PostgreSQL credentials [${dialect}]`, () => {
    let h: Harness;
    let app: FastifyInstance;
    const lines: string[] = [];
    const tokens: string[] = [];
    const keep = (token: string) => {
      tokens.push(token);
      return token;
    };
    /** Tokens of: the service wiki, another service billing, a delegate of wiki, a person without the role, a
     * delegate of billing who lacks a role billing holds. */
    let wiki: string;
    let billing: string;
    let dora: string;
    let hank: string;
    let ben: string;

    const send = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, token: string | undefined, payload?: object): Promise<LightMyRequestResponse> =>
      app.inject({ method, url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
    const read = (service: string, token: string | undefined) => send('GET', `/v1/accounts/${service}/pgcreds`, token);
    const ok = async (response: Promise<LightMyRequestResponse>, status: number) => {
      const answer = await response;
      assert.equal(answer.statusCode, status, answer.body);
      return answer;
    };

    before(async () => {
      h = await createHarness(dialect, { config: { pg_admin: { main: { url: 'postgres://mcias_admin@db.internal.example/postgres' } } } });
      app = await loggingApp(h, lines);
      for (const name of ['wiki', 'billing', 'spare', 'quiet']) await h.createAccount(name, 'system');
      for (const name of ['dora', 'hank', 'ben']) await h.createAccount(name);
      for (const role of ['wiki', 'billing', 'finance']) await ok(send('POST', '/v1/roles', h.adminToken, { name: role }), 201);
      await ok(send('PUT', '/v1/accounts/dora/roles/wiki', h.adminToken), 204);
      await ok(send('PUT', '/v1/accounts/ben/roles/billing', h.adminToken), 204);
      // billing holds finance, which its delegate ben lacks: §38 refuses ben.
      await ok(send('PUT', '/v1/accounts/billing/roles/finance', h.adminToken), 204);
      await storePgCredentials(h, 'wiki');
      await storePgCredentials(h, 'billing', { username: 'billing', password: OTHER_SECRET });
      wiki = keep(await issueToken(h, 'wiki'));
      billing = keep(await issueToken(h, 'billing'));
      dora = keep(await h.login('dora', USER_PASSWORD));
      hank = keep(await h.login('hank', USER_PASSWORD));
      ben = keep(await h.login('ben', USER_PASSWORD));
      keep(h.adminToken);
    });
    after(async () => {
      await app.close();
      await h.close();
    });

    test('the service itself, its delegate and an admin read the credentials, with the password and no-store', async () => {
      for (const [token, as] of [
        [wiki, 'self'],
        [dora, 'delegate'],
        [h.adminToken, 'admin'],
      ] as const) {
        const since = await lastAuditSeq(h);
        const response = await ok(read('wiki', token), 200);
        assert.equal(response.headers['cache-control'], 'no-store');
        assert.deepEqual(response.json(), {
          host: 'db.internal.example',
          port: 5432,
          database: 'app',
          username: 'app_user',
          group_role: null,
          password: SECRET,
          sslmode: 'require',
          ca_cert: null,
          mode: 'single',
          admin: null,
          rotate_every: null,
          last_rotated_at: null,
          next_rotation_at: null,
          last_rotation_error: null,
          rotation_pending: false,
        });
        const rows = await auditRows(h, { after: since });
        assert.deepEqual(
          rows.map((r) => [r.type, r.outcome, r.subject_username, r.details['as']]),
          [['pg_credentials_read', 'success', 'wiki', as]],
          as,
        );
      }
      // The name is matched case-insensitively, like every username.
      assert.equal((await ok(read('WIKI', wiki), 200)).json().password, SECRET);
    });

    test('another service, a person without the role and anyone anonymous are refused, and learn nothing', async () => {
      const before = await snapshotDatabase(h.runtime.database.db);
      const since = await lastAuditSeq(h);
      const answers: string[] = [];
      // An existing service with credentials, one without, a person's account, and a name nobody has: one answer.
      for (const target of ['wiki', 'quiet', 'dora', 'nosuchservice']) {
        for (const token of [billing, hank]) {
          const response = await read(target, token);
          const problem = assertProblem(response, { status: 403, code: 'forbidden' });
          assert.equal(problem['reason'], undefined);
          assert.ok(!response.body.includes(SECRET));
          answers.push(String(problem['detail']).replaceAll(target, 'NAME'));
        }
        assertProblem(await read(target, undefined), { status: 401, code: 'unauthenticated' });
      }
      assert.equal(new Set(answers).size, 1, `the refusals differ: ${[...new Set(answers)].join(' / ')}`);
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { allowNewAudit: ['pg_credentials_read'], what: 'refused reads' });
      // Each refused (authenticated) read is recorded; the anonymous ones never reached the service.
      const rows = await auditRows(h, { after: since });
      assert.equal(rows.length, 8);
      for (const row of rows) {
        assert.equal(row.type, 'pg_credentials_read');
        assert.equal(row.outcome, 'failure');
        assert.equal(row.details['reason'], 'not_delegate');
      }
      assert.deepEqual(rows.filter((r) => r.details['service'] === 'wiki').map((r) => [r.actor_username, r.subject_username]), [
        ['billing', 'wiki'],
        ['hank', 'wiki'],
      ]);
    });

    test('a delegate of a service holding a role the delegate lacks is refused (SECURITY.md §38), and it is recorded', async () => {
      const since = await lastAuditSeq(h);
      const response = await read('billing', ben);
      const problem = assertProblem(response, { status: 403, code: 'forbidden' });
      assert.equal(problem['reason'], 'delegation_exceeds_roles');
      assert.ok(!response.body.includes(OTHER_SECRET));
      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => [r.type, r.outcome, r.actor_username, r.subject_username, r.details['reason'], r.details['missing_roles']]), [
        ['pg_credentials_read', 'failure', 'ben', 'billing', 'delegation_exceeds_roles', 'finance'],
      ]);
      // Once ben holds finance too, the same request works.
      await ok(send('PUT', '/v1/accounts/ben/roles/finance', h.adminToken), 204);
      assert.equal((await ok(read('billing', ben), 200)).json().password, OTHER_SECRET);
      await ok(send('DELETE', '/v1/accounts/ben/roles/finance', h.adminToken), 204);
      assertProblem(await read('billing', ben), { status: 403, code: 'forbidden' });
    });

    test('only an admin stores or deletes credentials: the service, its delegate and others get 403 and change nothing', async () => {
      const before = await snapshotDatabase(h.runtime.database.db);
      for (const token of [wiki, dora, hank, billing]) {
        assertProblem(await send('PUT', '/v1/accounts/wiki/pgcreds', token, { ...PG_CREDENTIALS_BODY, password: 'taken over' }), { status: 403, code: 'forbidden' });
        assertProblem(await send('DELETE', '/v1/accounts/wiki/pgcreds', token), { status: 403, code: 'forbidden' });
      }
      assertProblem(await send('PUT', '/v1/accounts/wiki/pgcreds', undefined, { ...PG_CREDENTIALS_BODY }), { status: 401, code: 'unauthenticated' });
      assertProblem(await send('DELETE', '/v1/accounts/wiki/pgcreds', undefined), { status: 401, code: 'unauthenticated' });
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: 'refused writes' });
    });

    test('an admin reading a service without credentials, an unknown name, a person or a disabled service gets a clear error', async () => {
      assert.equal(assertProblem(await read('quiet', h.adminToken), { status: 404, code: 'not_found' })['reason'], undefined);
      assertProblem(await read('nosuchservice', h.adminToken), { status: 404, code: 'not_found' });
      assert.equal(assertProblem(await read('dora', h.adminToken), { status: 400, code: 'invalid_request' })['reason'], 'not_a_service');
      const rows = await auditRows(h, { type: 'pg_credentials_read' });
      assert.equal(rows.at(-1)?.details['reason'], 'none_stored', 'the last audited read is the one for quiet (the others found no service)');
      await storePgCredentials(h, 'spare');
      await ok(send('PATCH', '/v1/accounts/spare', h.adminToken, { status: 'disabled' }), 200);
      assertProblem(await read('spare', h.adminToken), { status: 409, code: 'conflict' });
      await ok(send('PATCH', '/v1/accounts/spare', h.adminToken, { status: 'active' }), 200);
      await ok(read('spare', h.adminToken), 200);
    });

    test('PUT fills in the defaults, answers the view without the password, and is audited without it', async () => {
      const since = await lastAuditSeq(h);
      const { certPem } = await generateSelfSignedCertificate(['db.internal.example']);
      const response = await ok(
        send('PUT', '/v1/accounts/spare/pgcreds', h.adminToken, {
          ...PG_CREDENTIALS_BODY,
          username: 'spare',
          port: 6543,
          ca_cert: certPem,
          mode: 'alternating',
          admin: 'main',
          rotate_every: '30d',
        }),
        200,
      );
      assert.ok(!response.body.includes(SECRET));
      const view = response.json() as Record<string, unknown>;
      assert.equal(view['password'], undefined);
      assert.deepEqual(
        { ...view, ca_cert: view['ca_cert'] === certPem },
        {
          host: 'db.internal.example',
          port: 6543,
          database: 'app',
          username: 'spare_a',
          group_role: 'spare',
          sslmode: 'verify-full',
          ca_cert: true,
          mode: 'alternating',
          admin: 'main',
          rotate_every: '30d',
          last_rotated_at: null,
          next_rotation_at: new Date(h.clock.now() + 30 * DAY).toISOString().replace(/\.\d{3}Z$/, 'Z'),
          last_rotation_error: null,
          rotation_pending: false,
        },
      );
      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => [r.type, r.outcome, r.actor_username, r.subject_username, r.details['created'], r.details['login']]), [
        ['pg_credentials_set', 'success', 'admin', 'spare', false, 'spare_a'],
      ]);
      // sslmode given explicitly wins over the default; rotate_every in hours reads back the same.
      const again = await ok(send('PUT', '/v1/accounts/spare/pgcreds', h.adminToken, { ...PG_CREDENTIALS_BODY, sslmode: 'verify-ca', ca_cert: certPem, rotate_every: '36h' }), 200);
      assert.deepEqual([again.json().sslmode, again.json().rotate_every, again.json().mode, again.json().username], ['verify-ca', '36h', 'single', 'app_user']);
    });

    test('bad input is refused with a clear reason and changes nothing', async () => {
      const { certPem } = await generateSelfSignedCertificate(['db.internal.example']);
      const cases: [string, string, Record<string, unknown>, number, string | undefined][] = [
        ['an unknown admin connection', 'wiki', { admin: 'nosuch' }, 400, 'unknown_pg_admin'],
        ['rotate_every under an hour', 'wiki', { rotate_every: '59m' }, 400, 'rotate_every_out_of_range'],
        ['rotate_every over ten years', 'wiki', { rotate_every: '3651d' }, 400, 'rotate_every_out_of_range'],
        ['rotate_every that is not a duration', 'wiki', { rotate_every: 'monthly' }, 400, undefined],
        ['a CA certificate that does not parse', 'wiki', { ca_cert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }, 400, 'ca_cert_invalid'],
        ['a private key as CA certificate', 'wiki', { ca_cert: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }, 400, 'ca_cert_invalid'],
        ['a CA certificate with sslmode require', 'wiki', { ca_cert: certPem, sslmode: 'require' }, 400, 'ca_cert_unused'],
        ['a CA certificate with sslmode disable', 'wiki', { ca_cert: certPem, sslmode: 'disable' }, 400, 'ca_cert_unused'],
        ['sslmode prefer (falls back to clear)', 'wiki', { sslmode: 'prefer' }, 400, undefined],
        ['an unknown mode', 'wiki', { mode: 'triple' }, 400, undefined],
        ['a 62-byte group role in alternating mode', 'wiki', { mode: 'alternating', username: 'g'.repeat(62) }, 400, undefined],
        ['a 64-byte database', 'wiki', { database: 'ü'.repeat(32) }, 400, undefined],
        ['a 1,025-character password', 'wiki', { password: 'p'.repeat(1025) }, 400, undefined],
        ['port 0', 'wiki', { port: 0 }, 400, undefined],
        ['port 65536', 'wiki', { port: 65536 }, 400, undefined],
        ['an IPv6 address with a port', 'wiki', { host: '[::1]:5432' }, 400, undefined],
        ['an unknown field', 'wiki', { options: '-c search_path=evil' }, 400, undefined],
        ["a person's account", 'dora', {}, 400, 'not_a_service'],
        ['an unknown account', 'nosuchservice', {}, 404, undefined],
      ];
      for (const [what, service, change, status, reason] of cases) {
        const before = await snapshotDatabase(h.runtime.database.db);
        const response = await send('PUT', `/v1/accounts/${service}/pgcreds`, h.adminToken, { ...PG_CREDENTIALS_BODY, ...change });
        const problem = assertProblem(response, { status });
        assert.equal(problem['reason'], reason, what);
        assert.ok(!response.body.includes(SECRET), what);
        assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what });
      }
      // The limits themselves are accepted: 61 bytes in alternating mode, an IPv6 address, 1h.
      for (const change of [{ mode: 'alternating', username: 'g'.repeat(61) }, { host: '::1' }, { host: '10.0.0.5', rotate_every: '1h' }]) {
        await ok(send('PUT', '/v1/accounts/quiet/pgcreds', h.adminToken, { ...PG_CREDENTIALS_BODY, ...change }), 200);
      }
    });

    test('PUT waits for a rotation under way: 409 rotation_in_progress while one holds the lease or has written its intent', async () => {
      const store = h.runtime.database.store.pgcreds;
      const spare = await h.runtime.services.accounts.get('spare');
      const now = h.clock.now();
      const put = () => send('PUT', '/v1/accounts/spare/pgcreds', h.adminToken, { ...PG_CREDENTIALS_BODY, password: 'replaced meanwhile' });
      assert.ok(await store.claimLease(spare.id, 'another instance', now, now + 60_000));
      let before = await snapshotDatabase(h.runtime.database.db);
      assert.equal(assertProblem(await put(), { status: 409, code: 'conflict' })['reason'], 'rotation_in_progress');
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: 'a PUT during a rotation' });
      // The rotation wrote its intent and lost its lease (a crash): the intent still stops the PUT.
      await store.beginRotation(spare.id, 'app_user', Buffer.from('sealed new password stand-in'), now);
      await store.releaseLease(spare.id, 'another instance');
      before = await snapshotDatabase(h.runtime.database.db);
      assert.equal(assertProblem(await put(), { status: 409, code: 'conflict' })['reason'], 'rotation_in_progress');
      assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), { what: 'a PUT over an intent' });
      assert.equal((await ok(read('spare', h.adminToken), 200)).json().rotation_pending, true);
      // Once it has finished (here: failed, so the old password stays), the PUT goes through and leaves no lease.
      await store.failRotation(spare.id, 'pg_unreachable', now, null);
      await ok(put(), 200);
      assert.equal((await ok(read('spare', h.adminToken), 200)).json().password, 'replaced meanwhile');
      const row = await h.runtime.database.db.selectFrom('pg_credentials').select(['lease_holder', 'lease_until']).where('account_id', '=', spare.id).executeTakeFirstOrThrow();
      assert.deepEqual({ ...row, lease_until: row.lease_until === null ? null : Number(row.lease_until) }, { lease_holder: null, lease_until: null });
    });

    test('DELETE forgets them (audited); then GET and DELETE are 404', async () => {
      await storePgCredentials(h, 'quiet');
      const since = await lastAuditSeq(h);
      await ok(send('DELETE', '/v1/accounts/quiet/pgcreds', h.adminToken), 204);
      assertProblem(await read('quiet', h.adminToken), { status: 404, code: 'not_found' });
      assertProblem(await send('DELETE', '/v1/accounts/quiet/pgcreds', h.adminToken), { status: 404, code: 'not_found' });
      const rows = await auditRows(h, { after: since });
      assert.deepEqual(rows.map((r) => [r.type, r.outcome, r.subject_username]), [
        ['pg_credentials_deleted', 'success', 'quiet'],
        ['pg_credentials_read', 'failure', 'quiet'],
      ]);
    });

    test('the database holds no plaintext password: every row of every table, and the SQLite file itself', async () => {
      const dump = JSON.stringify([...(await snapshotDatabase(h.runtime.database.db)).entries()]);
      assert.ok(dump.includes('pg_credentials'), 'the dump holds the pg_credentials table');
      for (const secret of [SECRET, OTHER_SECRET]) {
        assert.ok(!dump.includes(secret), 'a table holds a password in clear');
        assert.ok(!dump.includes(Buffer.from(secret).toString('hex')), 'a table holds a password as bytes');
      }
      if (dialect === 'sqlite') {
        for (const file of [h.db.location, `${h.db.location}-wal`].filter((f) => existsSync(f))) {
          const bytes = readFileSync(file);
          for (const secret of [SECRET, OTHER_SECRET]) assert.equal(bytes.indexOf(Buffer.from(secret)), -1, `${file} holds a password in clear`);
        }
      }
    });

    test("a sealed password copied into another service's row does not open: 500 without data, the log names the row", async () => {
      const db = h.runtime.database.db;
      const wikiAccount = await h.runtime.services.accounts.get('wiki');
      const billingAccount = await h.runtime.services.accounts.get('billing');
      const sealed = await db.selectFrom('pg_credentials').select('password').where('account_id', '=', wikiAccount.id).executeTakeFirstOrThrow();
      const original = await db.selectFrom('pg_credentials').select('password').where('account_id', '=', billingAccount.id).executeTakeFirstOrThrow();
      await db.updateTable('pg_credentials').set({ password: sealed.password }).where('account_id', '=', billingAccount.id).execute();
      try {
        const logged = lines.length;
        const since = await lastAuditSeq(h);
        const response = await read('billing', h.adminToken);
        const problem = assertProblem(response, { status: 500, code: 'internal' });
        assert.equal(problem['detail'], undefined);
        assert.ok(!response.body.includes(SECRET) && !response.body.includes(OTHER_SECRET));
        const newLines = lines.slice(logged).join('\n');
        assert.match(newLines, new RegExp(`sealed pg_credentials\\.password of ${billingAccount.id} failed authentication`));
        assert.ok(!newLines.includes(SECRET) && !newLines.includes(OTHER_SECRET));
        const rows = await auditRows(h, { after: since });
        assert.deepEqual(rows.map((r) => [r.type, r.outcome, r.details['reason']]), [['pg_credentials_read', 'failure', 'unreadable']]);
      } finally {
        await db.updateTable('pg_credentials').set({ password: original.password }).where('account_id', '=', billingAccount.id).execute();
      }
      assert.equal((await ok(read('billing', h.adminToken), 200)).json().password, OTHER_SECRET);
    });

    test('no audit row and no log line holds a password or a token', async () => {
      const secrets = [SECRET, OTHER_SECRET, 'taken over', USER_PASSWORD, ADMIN_PASSWORD];
      await assertAuditHasNoSecrets(h, tokens, secrets);
      assert.ok(lines.length > 20, 'requests were logged');
      for (const line of lines) {
        for (const secret of secrets) assert.ok(!line.includes(secret), `a log line holds a password: ${line.slice(0, 200)}`);
        for (const token of tokens) assert.ok(!line.includes(token.split('.')[2] as string), 'a log line holds a token');
      }
    });
  });
}
