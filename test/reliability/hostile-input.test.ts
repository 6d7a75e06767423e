import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { openDatabase, type Database } from '../../src/store/database.ts';
import { apiClient, type ApiClient, type ApiOperation, type ApiResponse } from '../support/api-routes.ts';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { USER_PASSWORD } from '../support/harness.ts';
import { fillPath, snapshotDatabase, type DatabaseSnapshot } from '../support/inspect.ts';
import { startServerProcess, type ServerProcess } from '../support/server-process.ts';

/**
 * Hostile input to every route of a real mciassrv over TLS (SECURITY.md §22, §33): fast-check sends arbitrary JSON,
 * wrong types for each documented field, huge strings, deep nesting, odd Unicode, odd path segments, content types,
 * query strings and header values, with no token, a garbage one, a person's, a service's or the administrator's
 * (so authorised paths are fuzzed too). The routes are read from the server's own /openapi.json, so a new route is
 * fuzzed without touching this file. Every answer must be below 500 (errors as problem+json), the process must live,
 * and no 4xx may change the database: every table is dumped before and after each request that is refused, and must
 * be equal except for exactly this, which the contract itself writes on a refusal:
 *   - new `audit_events` rows whose outcome is `failure` (a failed login, a refused read of credentials, a bad
 *     registration code, the `failures_summarized` rows of SECURITY.md §41, written on a timer): existing rows never
 *     change;
 *   - `login_failures`, only when the answer was 401 `invalid_credentials` (the failed-login counter, SECURITY.md §9).
 * A 2xx (the fuzzer may guess a valid request) is allowed to change things; the next comparison starts from it.
 * Every route gets nine well-formed requests (each signed-in principal, naming a fixture and nothing) and then
 * MCIAS_FUZZ_RUNS random ones (default 20): about 1,500 requests per dialect.
 */

const RUNS_PER_ROUTE = Number(process.env['MCIAS_FUZZ_RUNS'] ?? 20);
const ENV = { MCIAS_RATE_LIMIT_REQUESTS: '1000000' };
const KNOWN_NAMES = ['admin', 'alice', 'svc', 'crew', 'nobody', 'ALICE', 'svc.', '00000000-0000-0000-0000-000000000000'];
const BODY_LIMIT = 64 * 1024;

type Principal = 'none' | 'garbage' | 'person' | 'service' | 'admin';

/** Header values Node's client can send (no CR/LF or controls): visible ASCII and Latin-1. */
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 300 });

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value) ?? '').toString('base64url');

/** Bearer tokens shaped like a JWT whose header and claims are anything (a `kid` that is an object, `alg: none`, ...). */
const tokenish = fc
  .tuple(
    fc.oneof(fc.record({ alg: fc.constantFrom('EdDSA', 'none', 'HS256', 'RS256'), kid: jsonishLeaf(), typ: fc.constant('JWT') }), fc.jsonValue()),
    fc.oneof(fc.record({ sub: jsonishLeaf(), jti: jsonishLeaf(), exp: jsonishLeaf(), iat: jsonishLeaf(), aud: jsonishLeaf() }, { requiredKeys: [] }), fc.jsonValue()),
    fc.string({ maxLength: 90 }),
    fc.constantFrom('Bearer ', 'bearer ', 'Bearer  ', 'Basic ', 'Bearer'),
  )
  .map(([header, claims, signature, scheme]) => `${scheme}${b64url(header)}.${b64url(claims)}.${b64url(signature)}`);

function jsonishLeaf(): fc.Arbitrary<unknown> {
  return fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double(), fc.constantFrom(null, true, [], {}, { kid: 'x' }, 'x'.repeat(9_000)));
}

/** Text meant to hurt: odd Unicode, control characters, traversal, SQL, huge. */
const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom('', ' ', '\u0000', '\r\n', '../../etc/passwd', "' OR 1=1 --", '\u202e', '\ud800', '\uffff', 'ǅ', 'ＡＤＭＩＮ', 'admin\u0000', '%00', '__proto__', 'constructor'),
  fc.integer({ min: 1, max: 70_000 }).map((n) => 'x'.repeat(n)),
);

const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  { depthSize: 'small' },
  fc.jsonValue(),
  nastyString,
  fc.constantFrom(null, true, 0, -1, 1e308, 2 ** 53 + 1, [], {}),
);

/** Deeply nested arrays or objects, as raw JSON text (JSON.stringify would be the one to blow its stack). */
const deep = fc.tuple(fc.integer({ min: 100, max: 20_000 }), fc.boolean()).map(([n, arrays]) => (arrays ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n)));

/** A body for `op`: its documented fields with any value (wrong types mostly), arbitrary JSON, or raw text. */
function bodyFor(op: ApiOperation): fc.Arbitrary<{ json?: unknown; raw?: string }> {
  const fields = Object.keys((op.bodySchema?.['properties'] as Record<string, unknown> | undefined) ?? {});
  const documented = fields.length === 0 ? fc.dictionary(fc.string({ maxLength: 10 }), jsonish, { maxKeys: 4 }) : fc.dictionary(fc.constantFrom(...fields), jsonish, { maxKeys: fields.length + 1 });
  return fc.oneof(
    fc.constant({}),
    documented.map((json) => ({ json })),
    jsonish.map((json) => ({ json })),
    deep.map((raw) => ({ raw })),
    fc.constantFrom('{', '{"a":1,"a":2}', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"x":1}}}', 'null', '"\\ud800"', '\u0000', '{"username":"a"} trailing').map((raw) => ({ raw })),
    fc.integer({ min: BODY_LIMIT - 10, max: BODY_LIMIT + 10 }).map((n) => ({ raw: JSON.stringify({ username: 'y'.repeat(n) }) })),
  );
}

/** A path segment: a known name (to reach deeper), or nasty text; percent-encoded, or a raw escape sequence. */
const segment = fc.oneof(
  { arbitrary: fc.constantFrom(...KNOWN_NAMES).map(encodeURIComponent), weight: 3 },
  nastyString.map((s) => encodeURIComponent(s.slice(0, 3_000).toWellFormed())),
  fc.constantFrom('%2e%2e', '..%2f..%2f', '%ff', '%c0%af', '%', '%zz', '%00', '%E2%80%AE', ';', '*'),
);

interface Attack {
  readonly op: ApiOperation;
  readonly principal: Principal;
  readonly params: string[];
  readonly body: { json?: unknown; raw?: string } | undefined;
  readonly contentType: string | undefined;
  readonly headers: Record<string, string>;
  readonly query: string | undefined;
}

for (const dialect of DIALECTS) {
  describe(`hostile input to every route [${dialect}]`, () => {
    let testDb: TestDatabase | undefined;
    let server: ServerProcess;
    let api: ApiClient;
    let database: Database;
    const tokens = new Map<Principal, string>();

    before(async () => {
      if (dialect === 'postgres') testDb = await createTestDatabase('postgres');
      server = await startServerProcess({ ...(testDb === undefined ? {} : { storageUrl: testDb.location }), env: ENV });
      api = apiClient(server.url, server.caCertFile, 4);
      database = openDatabase(dialect === 'sqlite' ? { kind: 'sqlite', path: path.join(server.dataDir, 'mcias.db'), busyTimeoutMs: 5_000 } : testDb!.storage);
      tokens.set('garbage', 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln');
    });
    after(async () => {
      api?.close();
      await database?.close();
      await server?.dispose();
      await testDb?.drop();
    });

    const admin = async (method: string, url: string, body?: unknown): Promise<ApiResponse> =>
      api.send({ method, path: url, token: tokens.get('admin')!, ...(body === undefined ? {} : { body }) });
    const active = async (principal: Principal): Promise<boolean> => {
      const token = tokens.get(principal);
      if (token === undefined) return false;
      const response = await api.send({ method: 'POST', path: '/v1/token/validate', body: { token } });
      return (JSON.parse(response.body) as { active?: boolean }).active === true;
    };
    /** The fixtures a fuzzed success may have spoiled (a logout, a disabled or deleted account): made good again. */
    const restoreFixtures = async () => {
      if (!(await active('admin'))) {
        const login = await api.send({ method: 'POST', path: '/v1/auth/login', body: { username: 'admin', password: server.adminPassword } });
        assert.equal(login.status, 200, `the administrator cannot log in again: ${login.body}`);
        tokens.set('admin', (JSON.parse(login.body) as { token: string }).token);
      }
      if ((await admin('GET', '/v1/roles/crew')).status === 404) await admin('POST', '/v1/roles', { name: 'crew' });
      if (!(await active('person'))) {
        if ((await admin('GET', '/v1/accounts/alice')).status === 404) await admin('POST', '/v1/accounts', { username: 'alice', kind: 'human', password: USER_PASSWORD, temporary: false });
        await admin('PATCH', '/v1/accounts/alice', { status: 'active' });
        await admin('PUT', '/v1/accounts/alice/password', { password: USER_PASSWORD, temporary: false });
        await admin('PUT', '/v1/accounts/alice/roles/crew');
        const login = await api.send({ method: 'POST', path: '/v1/auth/login', body: { username: 'alice', password: USER_PASSWORD } });
        assert.equal(login.status, 200, `alice cannot log in again: ${login.body}`);
        tokens.set('person', (JSON.parse(login.body) as { token: string }).token);
      }
      if (!(await active('service'))) {
        if ((await admin('GET', '/v1/accounts/svc')).status === 404) await admin('POST', '/v1/accounts', { username: 'svc', kind: 'system' });
        await admin('PATCH', '/v1/accounts/svc', { status: 'active' });
        const issued = await admin('POST', '/v1/accounts/svc/token');
        assert.equal(issued.status, 201, issued.body);
        tokens.set('service', (JSON.parse(issued.body) as { token: string }).token);
        await admin('PUT', '/v1/accounts/svc/pgcreds', { host: 'db.example', database: 'app', username: 'app', password: 'pw' });
      }
    };

    test('no 5xx, no crash, and no refused request changes the database', async (t) => {
      await restoreFixtures();
      const operations = await api.operations();
      assert.ok(operations.length > 30, `only ${operations.length} operations documented`);
      const seen = new Map<string, Set<number>>();
      let baseline: DatabaseSnapshot = await snapshotDatabase(database.db);

      const attackOn = (op: ApiOperation): fc.Arbitrary<Attack> =>
        fc.record({
          op: fc.constant(op),
          principal: fc.constantFrom<Principal>('none', 'garbage', 'person', 'service', 'admin', 'admin', 'admin', 'admin'),
          params: fc.array(segment, { minLength: op.parameters.length, maxLength: op.parameters.length }),
          // A route without a body mostly gets none, so that its other parts are what is tried.
          body: fc.oneof(
            { weight: op.bodySchema === undefined ? 3 : 1, arbitrary: fc.constant(undefined) },
            { weight: op.bodySchema === undefined ? 1 : 4, arbitrary: bodyFor(op) },
          ),
          contentType: fc.option(fc.constantFrom('application/json', 'application/json; charset=utf-16', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json;;', ''), { nil: undefined }),
          headers: fc.oneof(
            { weight: 4, arbitrary: fc.dictionary(fc.constantFrom('x-forwarded-for', 'accept', 'accept-encoding', 'user-agent', 'x-request-id', 'origin', 'cookie', 'if-none-match', 'authorization'), headerValue, { maxKeys: 3 }) },
            fc.oneof(tokenish, fc.integer({ min: 8_000, max: 16_000 }).map((n) => `Bearer ${'a'.repeat(n)}`)).map((authorization) => ({ authorization })),
          ),
          query: fc.option(fc.oneof(fc.constantFrom('limit=-1', 'limit=99999999999999999999', 'since=yesterday', 'type=__proto__', 'cursor=%ff', 'a=1&a=2', 'outcome[]=x'), fc.string({ maxLength: 50 }).map((s) => encodeURIComponent(s.toWellFormed()))), { nil: undefined, freq: 3 }),
        });

      for (const route of operations) {
        await fc.assert(
          fc.asyncProperty(attackOn(route), async ({ op, principal, params, body, contentType, headers, query }) => {
            const url = fillPath(op.path, Object.fromEntries(op.parameters.map((name, i) => [name, params[i]!]))) + (query === undefined ? '' : `?${query}`);
            const token = tokens.get(principal);
            const sent = {
              method: op.method,
              path: url,
              ...(body?.raw !== undefined ? { rawBody: body.raw } : body?.json !== undefined ? { body: body.json } : {}),
              headers: {
                ...(token === undefined || 'authorization' in headers ? {} : { authorization: `Bearer ${token}` }),
                ...headers,
                ...(contentType === undefined ? {} : { 'content-type': contentType }),
              },
            };
            const bodyBytes = Buffer.byteLength(body?.raw ?? JSON.stringify(body?.json ?? '') ?? '');
            let response: ApiResponse;
            try {
              response = await api.send(sent);
            } catch (error) {
              // A body over the limit may be cut off by the server's 413 before it was all sent; nothing else may.
              assert.equal(server.child.exitCode ?? server.child.signalCode, null, `the server died on ${op.key}`);
              assert.ok(bodyBytes > BODY_LIMIT, `${op.key} ${url}: no answer (${String(error)})`);
              return;
            }
            const where = `${op.key} as ${principal}: ${url.slice(0, 200)} -> ${response.status} ${response.body.slice(0, 300)}`;
            (seen.get(op.key) ?? seen.set(op.key, new Set()).get(op.key)!).add(response.status);
            assert.ok(response.status < 500, where);
            assert.equal(server.child.exitCode ?? server.child.signalCode, null, `the server died: ${where}`);
            const after = await snapshotDatabase(database.db);
            if (response.status >= 400) {
              assert.match(String(response.headers['content-type']), /^application\/problem\+json/, where);
              const code = (JSON.parse(response.body) as { code: string }).code;
              assertOnlyAllowedChanges(baseline, after, code === 'invalid_credentials', where);
            } else {
              await restoreFixtures();
            }
            baseline = response.status >= 400 ? after : await snapshotDatabase(database.db);
          }),
          {
            numRuns: RUNS_PER_ROUTE,
            endOnFailure: true,
            // First, for certain, the well-formed request with no body as each signed-in principal, naming a fixture
            // and a name that exists nowhere: the way in to every route's own refusals (404, 409, 403).
            examples: (['admin', 'person', 'service'] as const).flatMap((principal) =>
              ['alice', 'svc', 'nobody'].map((name): [Attack] => [
                { op: route, principal, params: route.parameters.map(() => name), body: undefined, contentType: undefined, headers: {}, query: undefined },
              ]),
            ),
          },
        );
      }

      // The run went past the door of some routes: the fuzzer is not only knocking.
      const statuses = new Set([...seen.values()].flatMap((s) => [...s]));
      t.diagnostic(`${RUNS_PER_ROUTE} requests to each of ${operations.length} routes; statuses ${[...statuses].sort().join(' ')}`);
      for (const status of [400, 401, 404]) assert.ok(statuses.has(status), `never answered ${status}: ${[...statuses].join(' ')}`);
    });
  });
}

/** Every table equal, except new failure rows in the audit trail, and the failed-login counter on a failed login. */
function assertOnlyAllowedChanges(before: DatabaseSnapshot, after: DatabaseSnapshot, failedLogin: boolean, where: string): void {
  assert.deepEqual([...after.keys()], [...before.keys()], `tables changed: ${where}`);
  for (const [table, rows] of before) {
    const now = after.get(table) ?? [];
    if (table === 'login_failures' && failedLogin) continue;
    if (table !== 'audit_events') {
      assert.deepEqual(now, rows, `table ${table} changed: ${where}`);
      continue;
    }
    const old = new Set(rows);
    for (const row of rows) assert.ok(now.includes(row), `an audit row changed or vanished: ${where}`);
    for (const row of now.filter((r) => !old.has(r))) {
      const outcome = (JSON.parse(row) as [string, unknown][]).find(([k]) => k === 'outcome')?.[1];
      assert.equal(outcome, 'failure', `a refused request wrote a success audit row ${row.slice(0, 300)}: ${where}`);
    }
  }
}
