import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import { DIALECTS } from '../support/databases.ts';
import { ADMIN_PASSWORD, USER_PASSWORD, createHarness, type Harness } from '../support/harness.ts';
import { FakePgAdmin } from '../support/pg-admin-fake.ts';
import { PG_CREDENTIALS_BODY, storePgCredentials } from '../support/pgcreds.ts';
import { beginTotp, enrollTotp, nextCode, totpCode } from '../support/totp-codes.ts';
import {
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
 * SECURITY.md §22, §33, §34 and docs/api.md conventions: every kind of malformed request to every route gets a clean 4xx
 * problem, quickly, and leaves every table exactly as it was (a failed login's audit row excepted).
 */

const NEW_PASSWORD = 'another perfectly fine passphrase';
const MIB = 1024 * 1024;
/** In-process requests take milliseconds; this only catches a request that does real work before refusing. */
const QUICK_MS = 2_000;

type Access = 'public' | 'token' | 'human' | 'admin';

interface Fixtures {
  readonly h: Harness;
  /** A fresh human account; returns its username. */
  human(): Promise<string>;
  /** A fresh role; returns its name. */
  role(): Promise<string>;
  grant(username: string, role: string): Promise<void>;
  /** A fresh system account; returns its username. */
  system(): Promise<string>;
}

const jtiOf = (token: string) => decodeJwt(token).jti as string;

/** What a well-formed, successful request to the route looks like; each attack changes one thing in it. */
interface Valid {
  readonly params?: Record<string, string>;
  readonly body?: Record<string, unknown>;
  readonly token?: string;
  readonly status: number;
}

interface RouteSpec {
  readonly access: Access;
  readonly valid: (f: Fixtures) => Promise<Valid>;
  /** Body fields holding a username or role name (attacked with long, CR/LF and SQL values). */
  readonly nameFields?: readonly string[];
  /** Route-specific malformed values: [field, what it is, value], each sent in place of the valid one (400). */
  readonly badValues?: readonly (readonly [string, string, unknown])[];
  /** A `public` route that reads a bearer token itself (forward-auth): attacked with bad tokens too. */
  readonly readsToken?: true;
}

/** Malformed TOTP codes: each must be refused by the schema, before any code is checked or any step used. */
const BAD_TOTP_CODES: readonly (readonly [string, unknown])[] = [
  ['a 5-digit code', '12345'],
  ['a 7-digit code', '1234567'],
  ['letters', 'abcdef'],
  ['a code with a leading space', ' 123456'],
  ['a code followed by CR/LF', '123456\r\n'],
  ['non-ASCII digits', '١٢٣٤٥٦'],
  ['an SQL fragment', "1' OR '1'='1"],
  ['a NUL byte', '123456\u0000'],
  ['an empty code', ''],
];
/** A recovery code is accepted where a code may be one (login, removal): these are neither. */
const BAD_SECOND_FACTORS: readonly (readonly [string, unknown])[] = [
  ['a 5-character code', '12345'],
  ['a 33-character code', 'A'.repeat(33)],
  ['a code followed by CR/LF', 'ABCD-EFGH\r\n'],
  ['an SQL fragment', "1' OR '1'='1"],
  ['a NUL byte', '123456\u0000'],
  ['an empty code', ''],
];
const badField = (field: string, values: readonly (readonly [string, unknown])[]) =>
  values.map(([name, value]) => [field, name, value] as const);

/** A fresh registration code (each valid redemption uses one up). */
async function newCode(h: Harness): Promise<{ id: string; code: string }> {
  const response = await h.request({ method: 'POST', url: '/v1/registrations', token: h.adminToken, body: {} });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

let permissions = 0;
/** A fresh permission; returns its id. */
async function newPermission(h: Harness): Promise<string> {
  permissions += 1;
  const body = { resource: `res${permissions}`, action: 'read', description: 'made by the bad-input walk' };
  const response = await h.request({ method: 'POST', url: '/v1/permissions', token: h.adminToken, body });
  assert.equal(response.statusCode, 201, response.body);
  return response.json().id;
}

const ROUTES: Readonly<Record<string, RouteSpec>> = {
  'GET /healthz': { access: 'public', valid: async () => ({ status: 200 }) },
  'GET /readyz': { access: 'public', valid: async () => ({ status: 200 }) },
  'GET /.well-known/jwks.json': { access: 'public', valid: async () => ({ status: 200 }) },
  'GET /openapi.json': { access: 'public', valid: async () => ({ status: 200 }) },
  'POST /v1/auth/login': {
    access: 'public',
    nameFields: ['username'],
    badValues: badField('totp_code', BAD_SECOND_FACTORS),
    valid: async () => ({ body: { username: 'admin', password: ADMIN_PASSWORD }, status: 200 }),
  },
  'POST /v1/auth/logout': { access: 'token', valid: async ({ h }) => ({ token: await issueToken(h, 'admin'), status: 204 }) },
  // Renewal revokes the presented token, so it gets a token of its own rather than the harness's admin token.
  'POST /v1/auth/renew': { access: 'token', valid: async ({ h }) => ({ token: await issueToken(h, 'admin'), status: 200 }) },
  'POST /v1/token/validate': {
    access: 'public',
    valid: async (f) => ({ body: { token: await issueToken(f.h, await f.human()) }, status: 200 }),
  },
  'GET /v1/me/tokens': { access: 'human', valid: async ({ h }) => ({ token: h.adminToken, status: 200 }) },
  'DELETE /v1/me/tokens/{jti}': {
    access: 'human',
    valid: async (f) => {
      const username = await f.human();
      return { token: await issueToken(f.h, username), params: { jti: jtiOf(await issueToken(f.h, username)) }, status: 204 };
    },
  },
  'GET /v1/me': { access: 'token', valid: async ({ h }) => ({ token: h.adminToken, status: 200 }) },
  'GET /v1/auth/forward': { access: 'public', readsToken: true, valid: async ({ h }) => ({ token: h.adminToken, status: 200 }) },
  'PUT /v1/me/password': {
    access: 'human',
    valid: async (f) => ({
      token: await issueToken(f.h, await f.human()),
      body: { current_password: USER_PASSWORD, new_password: NEW_PASSWORD },
      status: 204,
    }),
  },
  // A second enrollment while TOTP is on is refused (409), so each TOTP request gets a person of its own.
  'POST /v1/me/totp': {
    access: 'human',
    valid: async (f) => ({ token: await issueToken(f.h, await f.human()), body: { password: USER_PASSWORD }, status: 200 }),
  },
  'POST /v1/me/totp/confirm': {
    access: 'human',
    badValues: badField('code', BAD_TOTP_CODES),
    valid: async (f) => {
      const token = await issueToken(f.h, await f.human());
      const { secret } = await beginTotp(f.h, token);
      return { token, body: { code: totpCode(secret, f.h.clock.now()) }, status: 200 };
    },
  },
  'DELETE /v1/me/totp': {
    access: 'human',
    badValues: badField('code', BAD_SECOND_FACTORS),
    valid: async (f) => {
      const token = await issueToken(f.h, await f.human());
      const { secret } = await enrollTotp(f.h, token);
      return { token, body: { password: USER_PASSWORD, code: nextCode(f.h, secret) }, status: 204 };
    },
  },
  'GET /v1/accounts': { access: 'admin', valid: async () => ({ status: 200 }) },
  'POST /v1/accounts': {
    access: 'admin',
    nameFields: ['username'],
    valid: async () => ({ body: { username: 'newcomer', kind: 'human', password: USER_PASSWORD }, status: 201 }),
  },
  'GET /v1/accounts/{username}': { access: 'admin', valid: async (f) => ({ params: { username: await f.human() }, status: 200 }) },
  'PATCH /v1/accounts/{username}': {
    access: 'admin',
    valid: async (f) => ({ params: { username: await f.human() }, body: { status: 'disabled' }, status: 200 }),
  },
  'DELETE /v1/accounts/{username}': { access: 'admin', valid: async (f) => ({ params: { username: await f.human() }, status: 204 }) },
  'PUT /v1/accounts/{username}/password': {
    access: 'admin',
    valid: async (f) => ({ params: { username: await f.human() }, body: { password: NEW_PASSWORD }, status: 204 }),
  },
  'POST /v1/accounts/{username}/unlock': { access: 'admin', valid: async (f) => ({ params: { username: await f.human() }, status: 200 }) },
  'DELETE /v1/accounts/{username}/totp': {
    access: 'admin',
    valid: async (f) => {
      const username = await f.human();
      await enrollTotp(f.h, await issueToken(f.h, username));
      return { params: { username }, status: 204 };
    },
  },
  'PUT /v1/accounts/{username}/roles/{role}': {
    access: 'admin',
    valid: async (f) => ({ params: { username: await f.human(), role: await f.role() }, status: 204 }),
  },
  'DELETE /v1/accounts/{username}/roles/{role}': {
    access: 'admin',
    valid: async (f) => {
      const username = await f.human();
      const role = await f.role();
      await f.grant(username, role);
      return { params: { username, role }, status: 204 };
    },
  },
  'GET /v1/roles': { access: 'admin', valid: async () => ({ status: 200 }) },
  'POST /v1/roles': { access: 'admin', nameFields: ['name'], valid: async () => ({ body: { name: 'newrole' }, status: 201 }) },
  'DELETE /v1/roles/{role}': { access: 'admin', valid: async (f) => ({ params: { role: await f.role() }, status: 204 }) },
  'GET /v1/roles/{role}': { access: 'admin', valid: async (f) => ({ params: { role: await f.role() }, status: 200 }) },
  'GET /v1/registrations': { access: 'admin', valid: async () => ({ status: 200 }) },
  'POST /v1/registrations': {
    access: 'admin',
    badValues: [
      ['uses', 'zero uses', 0],
      ['uses', 'a fraction', 1.5],
      ['expires_in', 'not a duration', 'soon'],
      ['roles', 'a role name with a space', ['a b']],
      ['allow_admin', 'a string for a flag', 'yes'],
    ],
    // Every field is optional, so the generic per-field attacks (which take each field as required) do not apply.
    valid: async () => ({ body: {}, status: 201 }),
  },
  'DELETE /v1/registrations/{id}': { access: 'admin', valid: async (f) => ({ params: { id: (await newCode(f.h)).id }, status: 204 }) },
  'POST /v1/register': {
    access: 'public',
    nameFields: ['username'],
    badValues: [
      ['code', 'an empty code', ''],
      ['code', 'a 257-character code', 'c'.repeat(257)],
      ['code', 'a number', 12345],
    ],
    valid: async (f) => ({ body: { code: (await newCode(f.h)).code, username: 'selfmade', password: USER_PASSWORD }, status: 201 }),
  },
  'GET /v1/permissions': { access: 'admin', valid: async () => ({ status: 200 }) },
  'POST /v1/permissions': {
    access: 'admin',
    badValues: [
      ['resource', 'upper case', 'Docs'],
      ['resource', 'a space', 'my docs'],
      ['action', 'a pattern other than *', 'read*'],
      ['description', 'a 513-character description', 'd'.repeat(513)],
    ],
    valid: async () => ({ body: { resource: 'docs', action: 'read', description: 'read the docs' }, status: 201 }),
  },
  'DELETE /v1/permissions/{id}': { access: 'admin', valid: async (f) => ({ params: { id: await newPermission(f.h) }, status: 204 }) },
  'PUT /v1/roles/{role}/permissions/{id}': {
    access: 'admin',
    valid: async (f) => ({ params: { role: await f.role(), id: await newPermission(f.h) }, status: 204 }),
  },
  'DELETE /v1/roles/{role}/permissions/{id}': {
    access: 'admin',
    valid: async (f) => {
      const role = await f.role();
      const id = await newPermission(f.h);
      assert.equal((await f.h.request({ method: 'PUT', url: `/v1/roles/${role}/permissions/${id}`, token: f.h.adminToken })).statusCode, 204);
      return { params: { role, id }, status: 204 };
    },
  },
  'POST /v1/authz/check': {
    access: 'token',
    badValues: [
      ['resource', 'a wildcard', '*'],
      ['action', 'a wildcard', '*'],
      ['token', 'a number', 1],
    ],
    valid: async (f) => ({ body: { token: await issueToken(f.h, await f.human()), resource: 'docs', action: 'read' }, status: 200 }),
  },
  'GET /v1/accounts/{username}/tokens': { access: 'admin', valid: async (f) => ({ params: { username: await f.human() }, status: 200 }) },
  'DELETE /v1/tokens/{jti}': {
    access: 'admin',
    valid: async (f) => ({ params: { jti: jtiOf(await issueToken(f.h, await f.human())) }, status: 204 }),
  },
  'POST /v1/accounts/{username}/token': { access: 'human', valid: async (f) => ({ params: { username: await f.system() }, status: 201 }) },
  'DELETE /v1/accounts/{username}/token': {
    access: 'admin',
    valid: async (f) => {
      const username = await f.system();
      await issueToken(f.h, username);
      return { params: { username }, status: 204 };
    },
  },
  'POST /v1/keys/rotate': { access: 'admin', valid: async () => ({ status: 200 }) },
  'GET /v1/audit': { access: 'admin', valid: async () => ({ status: 200 }) },
  'GET /v1/accounts/{username}/pgcreds': {
    access: 'token',
    valid: async (f) => {
      const username = await f.system();
      await storePgCredentials(f.h, username);
      return { params: { username }, status: 200 };
    },
  },
  'PUT /v1/accounts/{username}/pgcreds': {
    access: 'admin',
    // Required fields only: each attack changes one of them (the optional ones have their own tests).
    valid: async (f) => ({ params: { username: await f.system() }, body: { ...PG_CREDENTIALS_BODY }, status: 200 }),
    badValues: [
      ['host', 'a URL', 'postgres://db.example/app'],
      ['host', 'a host with a port', 'db.example:5432'],
      ['host', 'a host with a space', 'db example'],
      ['host', 'user@host', 'me@db.example'],
      ['database', 'a NUL byte', 'app\u0000'],
      ['database', '64 bytes', 'é'.repeat(32)],
      ['username', 'a NUL byte', 'app\u0000'],
      ['password', 'a NUL byte', 'secret\u0000'],
      ['password', 'an empty password', ''],
    ],
  },
  'DELETE /v1/accounts/{username}/pgcreds': {
    access: 'admin',
    valid: async (f) => {
      const username = await f.system();
      await storePgCredentials(f.h, username);
      return { params: { username }, status: 204 };
    },
  },
  'POST /v1/accounts/{username}/pgcreds/rotate': {
    access: 'admin',
    valid: async (f) => {
      const username = await f.system();
      await storePgCredentials(f.h, username);
      return { params: { username }, status: 200 };
    },
  },
  'POST /v1/accounts/{username}/pgcreds/provision': {
    access: 'admin',
    valid: async (f) => {
      const { password: _, ...body } = PG_CREDENTIALS_BODY;
      // Required fields only: each attack changes one of them; the optional create_database is attacked below.
      return { params: { username: await f.system() }, body: { ...body }, status: 201 };
    },
    badValues: [
      ['host', 'a URL', 'postgres://db.example/app'],
      ['database', 'a NUL byte', 'app\u0000'],
      ['username', 'a NUL byte', 'app\u0000'],
      ['create_database', 'a string', 'yes'],
      ['rotate_every', 'not a duration', 'soon'],
      ['password', 'a password (it is generated)', 'chosen-by-me'],
    ],
  },
};

/** One malformed request: what to send instead of the valid one, and the answer expected. */
interface Attack {
  readonly name: string;
  readonly status: number;
  readonly code?: string;
  readonly params?: Record<string, string>;
  /** Raw body text (sent as is) or undefined for none. */
  readonly payload?: string;
  readonly contentType?: string;
  /** `null`: no Authorization header; a string: that exact header. */
  readonly authorization?: string | null;
}

const LONG_NAME = 'a'.repeat(50_000);
const NAME_ATTACKS: readonly [string, string][] = [
  ['a 50,000-character name', LONG_NAME],
  ['a 65-character name', 'a'.repeat(65)],
  ['CR/LF in a name', 'victim\r\nX-Injected: yes'],
  ['an SQL fragment', "admin' OR '1'='1"],
  ['an SQL statement', "x'; DROP TABLE accounts; --"],
  ['a NUL byte', 'admin\u0000'],
  ['an empty name', ''],
  ['a path', '../../etc/passwd'],
];

function bodyAttacks(
  valid: Record<string, unknown>,
  nameFields: readonly string[],
  badValues: readonly (readonly [string, string, unknown])[] = [],
): Attack[] {
  const json = (value: unknown) => JSON.stringify(value);
  const withField = (field: string, value: unknown) => json({ ...valid, [field]: value });
  const validText = json(valid);
  const attacks: Attack[] = [
    { name: 'malformed JSON', status: 400, code: 'invalid_request', payload: validText.slice(0, -3) },
    { name: 'an empty body', status: 400, code: 'invalid_request', payload: '' },
    { name: 'a JSON null', status: 400, code: 'invalid_request', payload: 'null' },
    { name: 'a JSON array', status: 400, code: 'invalid_request', payload: `[${validText}]` },
    { name: 'a JSON string', status: 400, code: 'invalid_request', payload: '"text"' },
    { name: 'an unknown field', status: 400, code: 'invalid_request', payload: withField('unexpected', 'x') },
    { name: 'a mass-assigned roles field', status: 400, code: 'invalid_request', payload: withField('roles', ['admin']) },
    { name: 'a mass-assigned id field', status: 400, code: 'invalid_request', payload: withField('id', '00000000-0000-4000-8000-000000000000') },
    { name: 'a 2 MiB body', status: 413, code: 'payload_too_large', payload: withField('padding', 'x'.repeat(2 * MIB)) },
    { name: 'a bare __proto__ body', status: 400, code: 'invalid_request', payload: '{"__proto__":{"x":1}}' },
    { name: 'a bare constructor.prototype body', status: 400, code: 'invalid_request', payload: '{"constructor":{"prototype":{"x":1}}}' },
    { name: 'a __proto__ key beside valid fields', status: 400, code: 'invalid_request', payload: `{"__proto__":{"admin":true},${validText.slice(1)}` },
    {
      name: 'a constructor.prototype key beside valid fields',
      status: 400,
      code: 'invalid_request',
      payload: `{"constructor":{"prototype":{"admin":true}},${validText.slice(1)}`,
    },
    { name: 'a text/plain body', status: 415, code: 'invalid_request', payload: validText, contentType: 'text/plain' },
    { name: 'a form body', status: 415, code: 'invalid_request', payload: 'username=admin', contentType: 'application/x-www-form-urlencoded' },
  ];
  for (const [field, value] of Object.entries(valid)) {
    const without = { ...valid };
    delete without[field];
    attacks.push(
      { name: `${field} as an array`, status: 400, code: 'invalid_request', payload: withField(field, ['a']) },
      { name: `${field} as a number`, status: 400, code: 'invalid_request', payload: withField(field, 123) },
      { name: `${field} as null`, status: 400, code: 'invalid_request', payload: withField(field, null) },
      { name: `${field} as an object`, status: 400, code: 'invalid_request', payload: withField(field, { $ne: '' }) },
      { name: `${field} as a boolean`, status: 400, code: 'invalid_request', payload: withField(field, true) },
      { name: `${field} missing`, status: 400, code: 'invalid_request', payload: json(without) },
      { name: `${field} 50,000 characters long`, status: 400, code: 'invalid_request', payload: withField(field, `${String(value)}${LONG_NAME}`) },
    );
  }
  for (const field of nameFields) {
    for (const [name, value] of NAME_ATTACKS) {
      attacks.push({ name: `${field}: ${name}`, status: 400, code: 'invalid_request', payload: withField(field, value) });
    }
  }
  for (const [field, name, value] of badValues) {
    attacks.push({ name: `${field}: ${name}`, status: 400, code: 'invalid_request', payload: withField(field, value) });
  }
  return attacks;
}

function paramAttacks(params: Record<string, string>): Attack[] {
  const attacks: Attack[] = [];
  for (const name of Object.keys(params)) {
    const encoded = (value: string) => ({ ...params, [name]: encodeURIComponent(value) });
    attacks.push(
      { name: `{${name}}: 50,000 characters`, status: 414, code: 'invalid_request', params: encoded(LONG_NAME) },
      { name: `{${name}}: 65 characters`, status: 400, code: 'invalid_request', params: encoded('a'.repeat(65)) },
      { name: `{${name}}: CR/LF`, status: 400, code: 'invalid_request', params: encoded(`${params[name]}\r\nX-Injected: yes`) },
      { name: `{${name}}: an SQL fragment`, status: 400, code: 'invalid_request', params: encoded("admin' OR '1'='1") },
      { name: `{${name}}: a NUL byte`, status: 400, code: 'invalid_request', params: encoded(`${params[name]}\u0000`) },
      { name: `{${name}}: an encoded path`, status: 400, code: 'invalid_request', params: encoded('../../etc/passwd') },
      { name: `{${name}}: a broken percent-escape`, status: 400, code: 'invalid_request', params: { ...params, [name]: '%zz' } },
    );
  }
  return attacks;
}

function tokenAttacks(validToken: string): Attack[] {
  const [header, payload, signature = ''] = validToken.split('.');
  const flipped = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`;
  const unauthenticated = { status: 401, code: 'unauthenticated' } as const;
  return [
    { name: 'no Authorization header', ...unauthenticated, authorization: null },
    { name: 'an empty Bearer token', ...unauthenticated, authorization: 'Bearer ' },
    { name: 'Bearer without a token', ...unauthenticated, authorization: 'Bearer' },
    { name: 'a garbage Bearer token', ...unauthenticated, authorization: 'Bearer garbage' },
    { name: 'a three-part garbage token', ...unauthenticated, authorization: 'Bearer a.b.c' },
    { name: 'a token with a changed signature', ...unauthenticated, authorization: `Bearer ${header}.${payload}.${flipped}` },
    { name: 'a token without its signature', ...unauthenticated, authorization: `Bearer ${header}.${payload}.` },
    { name: 'a token followed by junk', ...unauthenticated, authorization: `Bearer ${validToken} junk` },
    { name: 'Basic credentials', ...unauthenticated, authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` },
    { name: 'a token without a scheme', ...unauthenticated, authorization: validToken },
    { name: 'a 20,000-character token', ...unauthenticated, authorization: `Bearer ${'a'.repeat(20_000)}` },
  ];
}

for (const dialect of DIALECTS) {
  describe(`malformed requests get a clean 4xx and change nothing [${dialect}]`, () => {
    let h: Harness;
    let fixtures: Fixtures;
    let counter = 0;

    before(async () => {
      // Rotation and provisioning reach a PostgreSQL server; here a stand-in where every role exists.
      h = await createHarness(dialect, { pgAdmin: new FakePgAdmin({ anyRole: true }) });
      fixtures = {
        h,
        human: () => h.createAccount(`person${++counter}`),
        async role() {
          const name = `role${++counter}`;
          const response = await h.request({ method: 'POST', url: '/v1/roles', token: h.adminToken, body: { name } });
          assert.equal(response.statusCode, 201, response.body);
          return name;
        },
        async grant(username, role) {
          const response = await h.request({ method: 'PUT', url: `/v1/accounts/${username}/roles/${role}`, token: h.adminToken });
          assert.equal(response.statusCode, 204, response.body);
        },
        system: () => h.createAccount(`service${++counter}`, 'system'),
      };
    });
    after(() => h.close());

    test('the table covers every route the app serves and documents, with the access each declares', async () => {
      await assertCoversEveryRoute(h, Object.keys(ROUTES));
      for (const [key, operation] of await openApiOperations(h)) {
        assert.equal(operation.access, ROUTES[key]?.access, `${key} declares access ${operation.access}`);
      }
    });

    for (const [key, spec] of Object.entries(ROUTES)) {
      const [method, path] = key.split(' ') as [HttpMethod, string];
      test(`${key}: every malformed variant is refused without touching the database, and the valid request works`, async () => {
        const valid = await spec.valid(fixtures);
        const token = valid.token ?? (spec.access === 'public' ? undefined : h.adminToken);
        const attacks: Attack[] = [];
        if (spec.access !== 'public' || spec.readsToken === true) attacks.push(...tokenAttacks(token as string));
        if (valid.body !== undefined) attacks.push(...bodyAttacks(valid.body, spec.nameFields ?? [], spec.badValues));
        else {
          attacks.push(
            { name: 'a JSON body on a route that takes none', status: 400, code: 'invalid_request', payload: '{"status":"disabled"}' },
            { name: 'an empty JSON object on a route that takes none', status: 400, code: 'invalid_request', payload: '{}' },
          );
        }
        if (valid.params !== undefined) attacks.push(...paramAttacks(valid.params));
        assert.ok(attacks.length > 0);

        const send = (attack: Partial<Attack>): Promise<LightMyRequestResponse> => {
          const headers: Record<string, string> = {};
          const authorization = attack.authorization === undefined ? (token === undefined ? null : `Bearer ${token}`) : attack.authorization;
          if (authorization !== null) headers['authorization'] = authorization;
          const payload = 'payload' in attack ? attack.payload : valid.body === undefined ? undefined : JSON.stringify(valid.body);
          if (payload !== undefined) headers['content-type'] = attack.contentType ?? 'application/json';
          return h.app.inject({
            method,
            url: fillPath(path, attack.params ?? valid.params ?? {}),
            headers,
            ...(payload === undefined ? {} : { payload }),
          });
        };

        for (const attack of attacks) {
          const before = await snapshotDatabase(h.runtime.database.db);
          const started = performance.now();
          const response = await send(attack);
          const elapsed = performance.now() - started;
          const what = `${key} with ${attack.name}`;
          assert.equal(response.statusCode, attack.status, `${what}: ${response.statusCode} ${response.body.slice(0, 200)}`);
          assertProblem(response, { status: attack.status, ...(attack.code === undefined ? {} : { code: attack.code }) });
          assert.ok(elapsed < QUICK_MS, `${what} took ${elapsed.toFixed(0)} ms`);
          // A failed login is recorded by design (a failed validation only in memory, until its interval's summary);
          // nothing else may be written.
          assertDatabaseUnchanged(before, await snapshotDatabase(h.runtime.database.db), {
            allowNewAudit: ['login_failed'],
            what,
          });
        }

        // The control: the same request, unmodified, succeeds, so each refusal above was caused by its one change.
        const control = await send({});
        assert.equal(control.statusCode, valid.status, `${key} control: ${control.body.slice(0, 300)}`);
      });
    }
  });
}
