import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { decodeJwt } from 'jose';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { apiClient, type ApiResponse } from '../support/api-routes.ts';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { waitFor } from '../support/process-tools.ts';
import { MCIASSRV, run, serveDataDir, startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * A crash loses no acknowledged write and leaves none half-done (SECURITY.md §30: each change commits with its audit
 * rows in one transaction). Writers hammer a real mciassrv over TLS with every kind of write (registrations that
 * grant a role with the account, accounts, roles, grants, service tokens, revocations, PostgreSQL credentials); the
 * process is SIGKILLed mid-stream and started again on the same data. Then: every write a client saw acknowledged
 * is there; in the database, every row has the audit event of its transaction and every such event its row (in
 * flight at the kill: both or neither); every registered account holds its code's role; the audit chain verifies
 * (`mciassrv audit verify`); SQLite's `integrity_check` passes. On each dialect.
 */

const WRITERS = 6;
/** Acknowledged writes before the kill: enough to be mid-stream on every writer. */
const KILL_AFTER_ACKS = 150;
/** Throttle and request limit are not what this is about: one address sends everything. */
const ENV = { MCIAS_RATE_LIMIT_REQUESTS: '1000000' };

interface Acknowledged {
  registered: Set<string>;
  systems: Set<string>;
  roles: Set<string>;
  /** `username role` */
  grants: Set<string>;
  /** jti -> service */
  tokens: Map<string, string>;
  tokenText: Map<string, string>;
  revoked: Set<string>;
  /** Sent (maybe committed, maybe not): a revocation whose answer the kill cut off. */
  revocationsSent: Set<string>;
  pgcreds: Set<string>;
}

const json = (response: ApiResponse) => JSON.parse(response.body) as Record<string, unknown>;

for (const dialect of DIALECTS) {
  describe(`SIGKILL mid-stream loses no acknowledged write [${dialect}]`, () => {
    let testDb: TestDatabase | undefined;
    let server: ServerProcess;
    let restarted: ServerProcess | undefined;

    before(async () => {
      if (dialect === 'postgres') testDb = await createTestDatabase('postgres');
      server = await startServerProcess({ ...(testDb === undefined ? {} : { storageUrl: testDb.location }), env: ENV });
    });
    after(async () => {
      await restarted?.stop();
      await server.dispose();
      await testDb?.drop();
    });

    test('every acknowledged write is there after the restart, and nothing is half-done', async () => {
      let api = apiClient(server.url, server.caCertFile, WRITERS * 2);
      const login = await api.send({ method: 'POST', path: '/v1/auth/login', body: { username: 'admin', password: server.adminPassword } });
      const admin = json(login)['token'] as string;
      const put = async (method: string, url: string, body: unknown, expect: number): Promise<ApiResponse> => {
        const response = await api.send({ method, path: url, token: admin, ...(body === undefined ? {} : { body }) });
        if (response.status !== expect) throw new Error(`${method} ${url}: ${response.status} ${response.body}`);
        return response;
      };
      await put('POST', '/v1/roles', { name: 'crew' }, 201);
      const code = json(await put('POST', '/v1/registrations', { roles: ['crew'], uses: 10_000 }, 201))['code'] as string;

      const ack: Acknowledged = {
        registered: new Set(),
        systems: new Set(),
        roles: new Set(),
        grants: new Set(),
        tokens: new Map(),
        tokenText: new Map(),
        revoked: new Set(),
        revocationsSent: new Set(),
        pgcreds: new Set(),
      };
      let acks = 0;
      const failures: string[] = [];
      let killed = false;
      const writer = async (w: number) => {
        for (let i = 0; ; i++) {
          const id = `w${w}n${i}`;
          const person = `p.${id}`;
          const service = `s.${id}`;
          const role = `r.${id}`;
          let jti: string | undefined;
          try {
            await api.send({ method: 'POST', path: '/v1/register', body: { code, username: person, password: USER_PASSWORD } }).then((r) => {
              if (r.status !== 201) throw new Error(`register: ${r.status} ${r.body}`);
            });
            ack.registered.add(person);
            acks++;
            await put('POST', '/v1/accounts', { username: service, kind: 'system' }, 201);
            ack.systems.add(service);
            acks++;
            const token = json(await put('POST', `/v1/accounts/${service}/token`, undefined, 201))['token'] as string;
            jti = decodeJwt(token).jti as string;
            ack.tokens.set(jti, service), ack.tokenText.set(jti, token);
            acks++;
            await put('PUT', `/v1/accounts/${service}/pgcreds`, { host: `${service}.db.example`, database: 'app', username: 'app', password: 'pw' }, 200);
            ack.pgcreds.add(service);
            acks++;
            await put('POST', '/v1/roles', { name: role }, 201);
            ack.roles.add(role);
            acks++;
            await put('PUT', `/v1/accounts/${person}/roles/${role}`, undefined, 204);
            ack.grants.add(`${person} ${role}`);
            acks++;
            if (i % 2 === 1) {
              ack.revocationsSent.add(jti);
              await put('DELETE', `/v1/tokens/${jti}`, undefined, 204);
              ack.revoked.add(jti);
            acks++;
            }
          } catch (error) {
            // After the kill every request fails; before it, any failure is a bug.
            if (!killed) failures.push(String(error));
            return;
          }
        }
      };
      const writing = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
      await waitFor(() => acks >= KILL_AFTER_ACKS || failures.length > 0, `${KILL_AFTER_ACKS} acknowledged writes`, 60_000);
      killed = true;
      assert.equal(await server.stop('SIGKILL'), null, 'the server was not killed');
      assert.equal(server.child.signalCode, 'SIGKILL');
      await writing;
      api.close();
      assert.deepEqual(failures, [], 'writes failed before the kill');

      // SQLite: the file as the crash left it (its WAL replayed on open) is sound.
      if (dialect === 'sqlite') {
        const file = new BetterSqlite3(path.join(server.dataDir, 'mcias.db'));
        try {
          assert.deepEqual(file.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
          assert.deepEqual(file.pragma('foreign_key_check'), []);
        } finally {
          file.close();
        }
      }

      restarted = await serveDataDir(server.dataDir, ENV);
      api = apiClient(restarted.url, restarted.caCertFile, 4);
      try {
        // The admin's session, acknowledged before the kill, still works.
        const accounts = json(await put('GET', '/v1/accounts', undefined, 200))['accounts'] as { username: string; kind: string; roles: string[] }[];
        const byName = new Map(accounts.map((a) => [a.username, a]));
        for (const person of ack.registered) assert.ok(byName.get(person)?.roles.includes('crew'), `${person} lost, or without its code's role`);
        for (const service of ack.systems) assert.equal(byName.get(service)?.kind, 'system', `${service} lost`);
        const roles = new Set((json(await put('GET', '/v1/roles', undefined, 200))['roles'] as { name: string }[]).map((r) => r.name));
        for (const role of ack.roles) assert.ok(roles.has(role), `role ${role} lost`);
        for (const grant of ack.grants) {
          const [person, role] = grant.split(' ') as [string, string];
          assert.ok(byName.get(person)?.roles.includes(role), `grant ${grant} lost`);
        }
        for (const [jti, token] of ack.tokenText) {
          const active = json(await api.send({ method: 'POST', path: '/v1/token/validate', body: { token } }))['active'];
          if (ack.revoked.has(jti)) assert.equal(active, false, `revocation of ${jti} lost`);
          else if (!ack.revocationsSent.has(jti)) assert.equal(active, true, `token ${jti} of ${ack.tokens.get(jti)} lost`);
        }
        for (const service of ack.pgcreds) {
          const creds = json(await put('GET', `/v1/accounts/${service}/pgcreds`, undefined, 200));
          assert.equal(creds['host'], `${service}.db.example`);
        }
      } finally {
        api.close();
      }

      // Nothing half-done: every row written by these transactions has its audit event, and every event its row.
      const database: Database = openDatabase(
        dialect === 'sqlite' ? { kind: 'sqlite', path: path.join(server.dataDir, 'mcias.db'), busyTimeoutMs: 5_000 } : testDb!.storage,
      );
      try {
        await assertNothingHalfDone(database);
      } finally {
        await database.close();
      }
      const verified = await run(MCIASSRV, ['audit', 'verify', '--data-dir', server.dataDir]);
      assert.equal(verified.code, 0, verified.stderr);
      assert.match(verified.stdout, /^audit chain OK: \d+ rows verified/);
      assert.ok(acks >= KILL_AFTER_ACKS);
    });
  });
}

/** Each write's rows and its audit event were committed together: both are there, or neither. */
async function assertNothingHalfDone(database: Database): Promise<void> {
  const { db } = database;
  const events = await db.selectFrom('audit_events').select(['type', 'outcome', 'subject_id', 'details']).where('outcome', '=', 'success').execute();
  const of = (type: string) => events.filter((e) => e.type === type).map((e) => ({ subject: e.subject_id, details: JSON.parse(e.details) as Record<string, unknown> }));
  const set = (values: Iterable<unknown>) => new Set([...values].map(String));
  const same = (rows: Set<string>, audited: Set<string>, what: string) => {
    assert.deepEqual([...rows].filter((r) => !audited.has(r)), [], `${what}: rows without their audit event`);
    assert.deepEqual([...audited].filter((r) => !rows.has(r)), [], `${what}: audit events without their rows`);
  };

  const accounts = await db.selectFrom('accounts').select(['id', 'username', 'kind']).execute();
  const people = accounts.filter((a) => a.username.startsWith('p.'));
  const systems = accounts.filter((a) => a.username.startsWith('s.'));
  same(set(people.map((a) => a.id)), set(of('account_registered').map((e) => e.subject)), 'registered accounts');
  // POST /v1/accounts creates only the system accounts here (the administrator was bootstrapped, the people registered).
  same(set(systems.map((a) => a.id)), set(of('account_created').map((e) => e.subject)), 'system accounts');
  // The code's role came with each registered account, in its transaction.
  const grants = await db.selectFrom('account_roles').select(['account_id', 'role_name']).execute();
  for (const person of people) assert.ok(grants.some((g) => g.account_id === person.id && g.role_name === 'crew'), `${person.username} without its code's role`);
  same(
    set(grants.filter((g) => g.role_name.startsWith('r.')).map((g) => `${g.account_id} ${g.role_name}`)),
    set(of('role_granted').map((e) => `${e.subject} ${String(e.details['role'])}`)),
    'role grants',
  );
  const roles = await db.selectFrom('roles').select('name').where('name', 'like', 'r.%').execute();
  same(set(roles.map((r) => r.name)), set(of('role_created').map((e) => e.details['role']).filter((r) => String(r).startsWith('r.'))), 'roles');
  const tokens = await db.selectFrom('tokens').select(['jti', 'revoked_at']).where('kind', '=', 'service').execute();
  same(set(tokens.map((t) => t.jti)), set(of('token_issued').filter((e) => e.details['kind'] === 'service').map((e) => e.details['jti'])), 'service tokens');
  same(
    set(tokens.filter((t) => t.revoked_at !== null).map((t) => t.jti)),
    set(of('token_revoked').map((e) => e.details['jti'])),
    'revocations',
  );
  const creds = await db.selectFrom('pg_credentials').select('account_id').execute();
  same(set(creds.map((c) => c.account_id)), set(of('pg_credentials_set').map((e) => e.subject)), 'PostgreSQL credentials');
}
