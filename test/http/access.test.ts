import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { DIALECTS } from '../support/databases.ts';
import { USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { FakePgAdmin } from '../support/pg-admin-fake.ts';
import { storePgCredentials, PG_CREDENTIALS_BODY } from '../support/pgcreds.ts';
import { beginTotp, enrollTotp, nextCode, resetTotp, totpCode } from '../support/totp-codes.ts';
import {
  appRoutes,
  assertCoversEveryRoute,
  assertDatabaseUnchanged,
  assertProblem,
  fillPath,
  issueToken,
  openApiOperations,
  snapshotDatabase,
  type HttpMethod,
} from '../support/inspect.ts';

/**
 * SECURITY.md §20 (deny by default: every route walked with every kind of caller) and 21 (role changes take effect
 * on the next request).
 */

const CALLERS = ['anonymous', 'human', 'member', 'delegate', 'system', 'admin'] as const;
type Caller = (typeof CALLERS)[number];

/** Who may call each route, written out per caller so that the table itself is the specification. */
const EVERYONE: Readonly<Record<Caller, boolean>> = { anonymous: true, human: true, member: true, delegate: true, system: true, admin: true };
const ANY_TOKEN: Readonly<Record<Caller, boolean>> = { ...EVERYONE, anonymous: false };
const HUMANS: Readonly<Record<Caller, boolean>> = { ...ANY_TOKEN, system: false };
const ADMINS: Readonly<Record<Caller, boolean>> = { anonymous: false, human: false, member: false, delegate: false, system: false, admin: true };
/** Issuing a service's token: the admin, or the delegate (a human holding the role named after the service). */
const ADMIN_OR_DELEGATE: Readonly<Record<Caller, boolean>> = { ...ADMINS, delegate: true };
/** Reading a service's PostgreSQL credentials: the service itself, the admin, or the delegate (SECURITY.md §45). */
const SERVICE_ADMIN_OR_DELEGATE: Readonly<Record<Caller, boolean>> = { ...ADMIN_OR_DELEGATE, system: true };

/** The system account the delegate caller holds the role of. */
const SERVICE = 'svc';
const jtiOf = (token: string) => decodeJwt(token).jti as string;

interface Call {
  readonly params?: Record<string, string>;
  readonly body?: Record<string, unknown>;
}

interface Fixtures {
  readonly h: Harness;
  /** The username of the caller, for routes about oneself. */
  readonly self: string | undefined;
  /** A name no other fixture has used. */
  unique(prefix: string): string;
  human(): Promise<string>;
  role(): Promise<string>;
  grant(username: string, role: string): Promise<void>;
  /** A fresh system account; returns its username. */
  system(): Promise<string>;
  /** A live token of the account, issued directly (not through a route). */
  token(username: string): Promise<string>;
  /** The caller's own account if the caller is a person, else a fresh human account. */
  person(): Promise<string>;
}

/** A fresh registration code made by the admin (a code is used up by the call that redeems it). */
async function newCode(h: Harness): Promise<{ id: string; code: string }> {
  const response = await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body: {} });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

async function newPermission(f: Fixtures): Promise<string> {
  const response = await f.h.request({
    method: 'POST',
    url: '/v1/permissions',
    token: f.h.adminToken,
    body: { resource: f.unique('res'), action: 'write', description: 'made by the access walk' },
  });
  assert.equal(response.statusCode, 201, response.body);
  return response.json().id;
}

interface RouteRule {
  /** The access level the route must declare in its OpenAPI operation (`x-mcias-access`). */
  readonly declared: 'public' | 'token' | 'human' | 'admin';
  readonly allowed: Readonly<Record<Caller, boolean>>;
  /** A request that succeeds with `status` when the caller is allowed. */
  readonly call: (f: Fixtures) => Promise<Call>;
  readonly status: number;
  /** Audit rows a denied request writes by design (a refused credentials read is recorded: SECURITY.md §30). */
  readonly deniedAudit?: readonly string[];
}

const ROUTES: Readonly<Record<string, RouteRule>> = {
  'GET /healthz': { declared: 'public', allowed: EVERYONE, call: async () => ({}), status: 200 },
  'GET /readyz': { declared: 'public', allowed: EVERYONE, call: async () => ({}), status: 200 },
  'GET /.well-known/jwks.json': { declared: 'public', allowed: EVERYONE, call: async () => ({}), status: 200 },
  'GET /openapi.json': { declared: 'public', allowed: EVERYONE, call: async () => ({}), status: 200 },
  'POST /v1/auth/login': {
    declared: 'public',
    allowed: EVERYONE,
    call: async (f) => ({ body: { username: await f.human(), password: USER_PASSWORD } }),
    status: 200,
  },
  'POST /v1/token/validate': {
    declared: 'public',
    allowed: EVERYONE,
    call: async (f) => ({ body: { token: await f.token(await f.human()) } }),
    status: 200,
  },
  // Public, since it reads the token itself (a bearer header or the login page's cookie): any valid token passes,
  // no token is 401 (SECURITY.md §54).
  'GET /v1/auth/forward': { declared: 'public', allowed: ANY_TOKEN, call: async () => ({}), status: 200 },
  'POST /v1/auth/renew': { declared: 'token', allowed: ANY_TOKEN, call: async () => ({}), status: 200 },
  'POST /v1/auth/logout': { declared: 'token', allowed: ANY_TOKEN, call: async () => ({}), status: 204 },
  'GET /v1/me': { declared: 'token', allowed: ANY_TOKEN, call: async () => ({}), status: 200 },
  'PUT /v1/me/password': {
    declared: 'human',
    allowed: HUMANS,
    call: async () => ({ body: { current_password: USER_PASSWORD, new_password: USER_PASSWORD } }),
    status: 204,
  },
  'GET /v1/me/tokens': { declared: 'human', allowed: HUMANS, call: async () => ({}), status: 200 },
  'DELETE /v1/me/tokens/{jti}': {
    declared: 'human',
    allowed: HUMANS,
    // The caller's own token (anyone else's is a 404 even for the admin: this route is about oneself).
    call: async (f) => ({ params: { jti: jtiOf(await f.token(f.self ?? (await f.human()))) } }),
    status: 204,
  },
  // TOTP routes are about oneself: the caller's own account when it is a person, else a fresh person's (the request
  // is refused before it matters). Each call first puts that account in the state the request needs.
  'POST /v1/me/totp': {
    declared: 'human',
    allowed: HUMANS,
    call: async (f) => {
      await resetTotp(f.h, await f.person());
      return { body: { password: USER_PASSWORD } };
    },
    status: 200,
  },
  'POST /v1/me/totp/confirm': {
    declared: 'human',
    allowed: HUMANS,
    call: async (f) => {
      const username = await f.person();
      await resetTotp(f.h, username);
      const { secret } = await beginTotp(f.h, await f.token(username));
      return { body: { code: totpCode(secret, f.h.clock.now()) } };
    },
    status: 200,
  },
  'DELETE /v1/me/totp': {
    declared: 'human',
    allowed: HUMANS,
    call: async (f) => {
      const username = await f.person();
      await resetTotp(f.h, username);
      const { secret } = await enrollTotp(f.h, await f.token(username));
      return { body: { password: USER_PASSWORD, code: nextCode(f.h, secret) } };
    },
    status: 204,
  },
  'GET /v1/accounts': { declared: 'admin', allowed: ADMINS, call: async () => ({}), status: 200 },
  'POST /v1/accounts': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ body: { username: f.unique('made'), kind: 'system' } }),
    status: 201,
  },
  'GET /v1/accounts/{username}': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ params: { username: await f.human() } }), status: 200 },
  'PATCH /v1/accounts/{username}': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ params: { username: await f.human() }, body: { status: 'disabled' } }),
    status: 200,
  },
  'DELETE /v1/accounts/{username}': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ params: { username: await f.human() } }), status: 204 },
  'PUT /v1/accounts/{username}/password': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ params: { username: await f.human() }, body: { password: 'a brand new passphrase for you' } }),
    status: 204,
  },
  'POST /v1/accounts/{username}/unlock': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ params: { username: await f.human() } }),
    status: 200,
  },
  'DELETE /v1/accounts/{username}/totp': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const username = await f.human();
      await enrollTotp(f.h, await f.token(username));
      return { params: { username } };
    },
    status: 204,
  },
  'PUT /v1/accounts/{username}/roles/{role}': {
    declared: 'admin',
    allowed: ADMINS,
    // The caller granting itself admin is the escalation this must stop.
    call: async (f) => ({ params: { username: f.self ?? (await f.human()), role: 'admin' } }),
    status: 204,
  },
  'DELETE /v1/accounts/{username}/roles/{role}': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const username = await f.human();
      const role = await f.role();
      await f.grant(username, role);
      return { params: { username, role } };
    },
    status: 204,
  },
  'GET /v1/roles': { declared: 'admin', allowed: ADMINS, call: async () => ({}), status: 200 },
  'GET /v1/roles/{role}': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ params: { role: await f.role() } }), status: 200 },
  'GET /v1/registrations': { declared: 'admin', allowed: ADMINS, call: async () => ({}), status: 200 },
  'POST /v1/registrations': { declared: 'admin', allowed: ADMINS, call: async () => ({ body: {} }), status: 201 },
  'DELETE /v1/registrations/{id}': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ params: { id: (await newCode(f.h)).id } }), status: 204 },
  'POST /v1/register': {
    declared: 'public',
    allowed: EVERYONE,
    call: async (f) => ({ body: { code: (await newCode(f.h)).code, username: f.unique('signup'), password: USER_PASSWORD } }),
    status: 201,
  },
  'GET /v1/permissions': { declared: 'admin', allowed: ADMINS, call: async () => ({}), status: 200 },
  'POST /v1/permissions': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ body: { resource: f.unique('res'), action: 'read', description: 'made by the access walk' } }),
    status: 201,
  },
  'DELETE /v1/permissions/{id}': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ params: { id: await newPermission(f) } }), status: 204 },
  'PUT /v1/roles/{role}/permissions/{id}': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ params: { role: await f.role(), id: await newPermission(f) } }),
    status: 204,
  },
  'DELETE /v1/roles/{role}/permissions/{id}': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const role = await f.role();
      const id = await newPermission(f);
      const response = await f.h.request({ method: 'PUT', url: `/v1/roles/${role}/permissions/${id}`, token: f.h.adminToken });
      assert.equal(response.statusCode, 204, response.body);
      return { params: { role, id } };
    },
    status: 204,
  },
  'POST /v1/authz/check': {
    declared: 'token',
    allowed: ANY_TOKEN,
    call: async (f) => ({ body: { token: await f.token(await f.human()), resource: 'docs', action: 'read' } }),
    status: 200,
  },

  'POST /v1/roles': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ body: { name: f.unique('made') } }), status: 201 },
  'DELETE /v1/roles/{role}': { declared: 'admin', allowed: ADMINS, call: async (f) => ({ params: { role: await f.role() } }), status: 204 },
  'GET /v1/accounts/{username}/tokens': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const username = await f.human();
      await f.token(username);
      return { params: { username } };
    },
    status: 200,
  },
  'DELETE /v1/tokens/{jti}': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ params: { jti: jtiOf(await f.token(await f.human())) } }),
    status: 204,
  },
  'POST /v1/accounts/{username}/token': {
    // The route admits human callers; the domain then requires the admin role or the service's own role.
    declared: 'human',
    allowed: ADMIN_OR_DELEGATE,
    call: async () => ({ params: { username: SERVICE } }),
    status: 201,
  },
  'DELETE /v1/accounts/{username}/token': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const username = await f.system();
      await f.token(username);
      return { params: { username } };
    },
    status: 204,
  },
  'POST /v1/keys/rotate': { declared: 'admin', allowed: ADMINS, call: async () => ({}), status: 200 },
  'GET /v1/audit': { declared: 'admin', allowed: ADMINS, call: async () => ({}), status: 200 },
  'GET /v1/accounts/{username}/pgcreds': {
    // The route admits any token; the domain then requires the service's own token, the admin role or its role.
    declared: 'token',
    allowed: SERVICE_ADMIN_OR_DELEGATE,
    call: async (f) => {
      await storePgCredentials(f.h, SERVICE);
      return { params: { username: SERVICE } };
    },
    status: 200,
    deniedAudit: ['pg_credentials_read'],
  },
  'PUT /v1/accounts/{username}/pgcreds': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => ({ params: { username: await f.system() }, body: { ...PG_CREDENTIALS_BODY } }),
    status: 200,
  },
  'DELETE /v1/accounts/{username}/pgcreds': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const username = await f.system();
      await storePgCredentials(f.h, username);
      return { params: { username } };
    },
    status: 204,
  },
  'POST /v1/accounts/{username}/pgcreds/rotate': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const username = await f.system();
      await storePgCredentials(f.h, username);
      return { params: { username } };
    },
    status: 200,
  },
  'POST /v1/accounts/{username}/pgcreds/provision': {
    declared: 'admin',
    allowed: ADMINS,
    call: async (f) => {
      const { password: _, ...body } = PG_CREDENTIALS_BODY;
      return { params: { username: await f.system() }, body: { ...body, create_database: true } };
    },
    status: 201,
  },
};

for (const dialect of DIALECTS) {
  describe(`every route allows exactly the callers it should [${dialect}]`, () => {
    let h: Harness;
    let counter = 0;
    /** The account each caller kind uses; every request gets a fresh token of it. */
    const callerAccount: Partial<Record<Caller, string>> = {};

    const grant = async (username: string, role: string) => {
      const response = await h.request({ method: 'PUT', url: `/v1/accounts/${username}/roles/${role}`, token: h.adminToken });
      assert.equal(response.statusCode, 204, response.body);
    };
    const createRole = async (name: string) => {
      const response = await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name } });
      assert.equal(response.statusCode, 201, response.body);
      return name;
    };

    before(async () => {
      // Rotation and provisioning reach a PostgreSQL server; here a stand-in where every role exists.
      h = await createHarness(dialect, { pgAdmin: new FakePgAdmin({ anyRole: true }) });
      callerAccount.human = await h.createAccount('hank');
      callerAccount.member = await h.createAccount('mona');
      await grant('mona', await createRole('staff'));
      callerAccount.system = await h.createAccount(SERVICE, 'system');
      // A delegate holds the role named after a system account (docs/api.md, "Service tokens").
      callerAccount.delegate = await h.createAccount('dora');
      await grant('dora', await createRole(SERVICE));
      callerAccount.admin = await h.createAccount('ada');
      await grant('ada', 'admin');
    });
    after(() => h.close());

    test('the table covers every route, and each route declares the access the table expects', async () => {
      await assertCoversEveryRoute(h, Object.keys(ROUTES));
      const operations = await openApiOperations(h);
      for (const [key, rule] of Object.entries(ROUTES)) assert.equal(operations.get(key)?.access, rule.declared, key);
    });

    const walk = (key: string, rule: RouteRule, method: HttpMethod, path: string) => {
      for (const caller of CALLERS) {
        const allowed = rule.allowed[caller];
        test(`${method} ${path} ${allowed ? 'allows' : 'denies'} ${caller === 'anonymous' ? 'an anonymous caller' : `a ${caller} caller`}`, async () => {
          const self = callerAccount[caller as Exclude<Caller, 'anonymous'>];
          const call = await rule.call({
            h,
            self,
            unique: (prefix) => `${prefix}${++counter}`,
            human: () => h.createAccount(`target${++counter}`),
            role: () => createRole(`role${++counter}`),
            grant,
            system: () => h.createAccount(`service${++counter}`, 'system'),
            token: (username) => issueToken(h, username),
            person: async () => (self !== undefined && caller !== 'system' ? self : h.createAccount(`person${++counter}`)),
          });
          const token = self === undefined ? undefined : await issueToken(h, self);
          const snapshot = await snapshotDatabase(h.runtime.database.db);
          const response = await h.request({
            method: method as 'GET',
            url: fillPath(path, call.params ?? {}),
            token,
            ...(call.body === undefined ? {} : { body: call.body }),
          });
          if (allowed) {
            assert.equal(response.statusCode, method === 'HEAD' && rule.status === 200 ? 200 : rule.status, `${key} as ${caller}: ${response.body}`);
            return;
          }
          const denial = caller === 'anonymous' ? { status: 401, code: 'unauthenticated' } : { status: 403, code: 'forbidden' };
          if (method === 'HEAD') {
            // A HEAD answer has no body to read the code from.
            assert.equal(response.statusCode, denial.status, `${key} as ${caller}`);
            assert.equal(response.body, '');
          } else {
            assertProblem(response, denial);
          }
          // A denied request leaves no trace but (at most) its own audit row.
          assertDatabaseUnchanged(snapshot, await snapshotDatabase(h.runtime.database.db), {
            what: `${key} as ${caller}`,
            ...(rule.deniedAudit === undefined || caller === 'anonymous' ? {} : { allowNewAudit: rule.deniedAudit }),
          });
        });
      }
    };

    for (const [key, rule] of Object.entries(ROUTES)) {
      const [method, path] = key.split(' ') as [HttpMethod, string];
      walk(key, rule, method, path);
      // Fastify answers HEAD for every GET route: the same rule must hold there.
      if (method === 'GET') walk(key, rule, 'HEAD', path);
    }

    test('every HEAD route the app serves belongs to a GET route the table walks', () => {
      for (const route of appRoutes(h.app)) {
        if (route.startsWith('HEAD ')) assert.ok(ROUTES[route.replace(/^HEAD /, 'GET ')], route);
      }
    });
  });

  describe(`role changes take effect on the next request [${dialect}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(dialect);
      await h.createAccount('rex');
    });
    after(() => h.close());

    test('a token issued before the admin role was granted gains admin access at once, and loses it when revoked', async () => {
      const token = await h.login('rex', USER_PASSWORD);
      const list = () => h.request({ method: 'GET', url: '/v1/accounts', token });
      assertProblem(await list(), { status: 403, code: 'forbidden' });

      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/rex/roles/admin', token: h.adminToken })).statusCode, 204);
      assert.equal((await list()).statusCode, 200);
      assert.deepEqual((await h.request({ method: 'GET', url: '/v1/me', token })).json().roles, ['admin']);

      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/rex/roles/admin', token: h.adminToken })).statusCode, 204);
      assertProblem(await list(), { status: 403, code: 'forbidden' });
    });

    test('a token whose claims say admin is refused once the admin role is revoked', async () => {
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/rex/roles/admin', token: h.adminToken })).statusCode, 204);
      const token = await h.login('rex', USER_PASSWORD);
      const claims = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as { roles: string[] };
      assert.deepEqual(claims.roles, ['admin']);
      assert.equal((await h.request({ method: 'GET', url: '/v1/accounts', token })).statusCode, 200);

      assert.equal((await h.request({ method: 'DELETE', url: '/v1/accounts/rex/roles/admin', token: h.adminToken })).statusCode, 204);
      assertProblem(await h.request({ method: 'GET', url: '/v1/accounts', token }), { status: 403, code: 'forbidden' });
      assertProblem(await h.request({ method: 'POST', url: '/v1/roles', token, body: { name: 'sneaky' } }), { status: 403, code: 'forbidden' });
    });

    test('deleting a role takes its access away from every holder at once', async () => {
      assert.equal((await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name: 'ops' } })).statusCode, 201);
      assert.equal((await h.request({ method: 'PUT', url: '/v1/accounts/rex/roles/ops', token: h.adminToken })).statusCode, 204);
      const token = await h.login('rex', USER_PASSWORD);
      assert.deepEqual((await h.request({ method: 'GET', url: '/v1/me', token })).json().roles, ['ops']);
      assert.equal((await h.request({ method: 'DELETE', url: '/v1/roles/ops', token: h.adminToken })).statusCode, 204);
      assert.deepEqual((await h.request({ method: 'GET', url: '/v1/me', token })).json().roles, []);
    });
  });
}
